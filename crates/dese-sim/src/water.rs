//! A simulated pool: water whose pH and chlorine drift, two dosing pumps that move them back,
//! and probes that read it with noise and a bias that calibration corrects.
//!
//! [`Pool`] gives a [`SensorReader`] ([`Pool::sensors`]) and a [`CommandHandler`]
//! ([`Pool::controller`]) that share one body of water, so that a `set_pump` command shows in
//! the next telemetry. `dese simulate`, the desktop reference device and the quickstart all run
//! this model.
//!
//! ```
//! use dese_device::{CommandHandler, Instant, SensorReader};
//! use dese_protocol::{Action, PumpState};
//! use dese_sim::water::{Pool, PoolModel};
//!
//! let pool = Pool::new(PoolModel::default(), 7);
//! let (mut sensors, mut controller) = (pool.sensors(), pool.controller());
//! let before = sensors.read(Instant::ZERO).unwrap().ph;
//! let acid = Action::SetPump { pump_id: 1, state: PumpState::On, duration: None };
//! controller.run(&acid, Instant::ZERO).unwrap();
//! let after = sensors.read(Instant::from_millis(120_000)).unwrap().ph;
//! assert!(after < before - 0.5, "two minutes of acid lower the pH: {before} -> {after}");
//! ```

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use dese_device::{CommandHandler, Instant, Readings, SensorReader};
use dese_protocol::{Action, Battery, JsonObject, PumpState, Sensor, SignalStrength, serde_json};

/// The pump that doses acid (lowers the pH).
pub const ACID_PUMP: u32 = 1;
/// The pump that doses chlorine.
pub const CHLORINE_PUMP: u32 = 2;

/// How the water behaves. Rates are per minute of the device's clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolModel {
    /// pH at the start.
    pub ph: f64,
    /// Free chlorine at the start, ppm.
    pub chlorine: f64,
    /// Water temperature at the start, °C.
    pub temperature: f64,
    /// How fast the pH rises by itself (aeration, fresh water), per minute.
    pub ph_drift: f64,
    /// How fast chlorine is consumed, ppm per minute.
    pub chlorine_decay: f64,
    /// How fast the acid pump lowers the pH while on, per minute.
    pub acid_rate: f64,
    /// How fast the chlorine pump raises chlorine while on, ppm per minute.
    pub chlorine_rate: f64,
    /// How far the pH probe reads above the truth until calibrated.
    pub ph_probe_bias: f64,
    /// Standard deviation of the pH probe's noise.
    pub ph_noise: f64,
    /// Standard deviation of the chlorine probe's noise, ppm.
    pub chlorine_noise: f64,
}

impl Default for PoolModel {
    /// A pool that needs attention within minutes, so that a short run shows the pumps working.
    fn default() -> Self {
        Self {
            ph: 7.3,
            chlorine: 2.0,
            temperature: 26.0,
            ph_drift: 0.05,
            chlorine_decay: 0.02,
            acid_rate: 0.5,
            chlorine_rate: 0.5,
            ph_probe_bias: 0.08,
            ph_noise: 0.01,
            chlorine_noise: 0.02,
        }
    }
}

/// The state of the water and the device, as [`Pool::snapshot`] reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolState {
    /// The true pH (what a perfect probe would read).
    pub ph: f64,
    /// The true free chlorine, ppm.
    pub chlorine: f64,
    /// The true temperature, °C.
    pub temperature: f64,
    /// Whether the acid pump runs.
    pub acid_pump: bool,
    /// Whether the chlorine pump runs.
    pub chlorine_pump: bool,
    /// The pH target, when one was set (the device then doses acid by itself).
    pub ph_target: Option<f64>,
    /// The chlorine target, when one was set (the device then doses chlorine by itself).
    pub chlorine_target: Option<f64>,
    /// Offsets added to each probe by `calibrate_sensor`.
    pub calibration: Vec<(Sensor, f64)>,
    /// Simulated reboots.
    pub reboots: u32,
    /// Simulated configuration resets.
    pub resets: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Off unless a target asks for it.
    Auto,
    /// Set by a command, until `until` (or for good).
    Manual { on: bool, until: Option<Instant> },
}

#[derive(Debug)]
struct Water {
    model: PoolModel,
    ph: f64,
    chlorine: f64,
    temperature: f64,
    tds: f64,
    acid: Mode,
    dosing: Mode,
    acid_on: bool,
    chlorine_on: bool,
    ph_target: Option<f64>,
    chlorine_target: Option<f64>,
    calibration: Vec<(Sensor, f64)>,
    reboots: u32,
    resets: u32,
    last: Option<Instant>,
    rng: u64,
}

/// One simulated pool with its probes and pumps. Cloning shares the same water.
#[derive(Debug, Clone)]
pub struct Pool {
    water: Arc<Mutex<Water>>,
}

impl Pool {
    /// A pool behaving as `model`; `seed` makes its noise reproducible (give each device its
    /// own).
    pub fn new(model: PoolModel, seed: u64) -> Self {
        let water = Water {
            model,
            ph: model.ph,
            chlorine: model.chlorine,
            temperature: model.temperature,
            tds: 850.0,
            acid: Mode::Auto,
            dosing: Mode::Auto,
            acid_on: false,
            chlorine_on: false,
            ph_target: None,
            chlorine_target: None,
            calibration: Vec::new(),
            reboots: 0,
            resets: 0,
            last: None,
            // xorshift must not start at zero.
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        };
        Self {
            water: Arc::new(Mutex::new(water)),
        }
    }

    /// The probes, for [`dese_device`]'s engine.
    pub fn sensors(&self) -> PoolSensors {
        PoolSensors { pool: self.clone() }
    }

    /// The pumps and the device's commands, for [`dese_device`]'s engine.
    pub fn controller(&self) -> PoolController {
        PoolController { pool: self.clone() }
    }

    /// The water and the device as they are now.
    pub fn snapshot(&self) -> PoolState {
        let w = self.lock();
        PoolState {
            ph: w.ph,
            chlorine: w.chlorine,
            temperature: w.temperature,
            acid_pump: w.acid_on,
            chlorine_pump: w.chlorine_on,
            ph_target: w.ph_target,
            chlorine_target: w.chlorine_target,
            calibration: w.calibration.clone(),
            reboots: w.reboots,
            resets: w.resets,
        }
    }

    /// Changes how the water behaves from now on (a storm, a swimmer-heavy afternoon).
    pub fn set_model(&self, model: PoolModel) {
        self.lock().model = model;
    }

    fn lock(&self) -> MutexGuard<'_, Water> {
        // The model holds plain numbers: a panic elsewhere cannot leave them inconsistent.
        self.water.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The pool's probes: a [`SensorReader`].
#[derive(Debug, Clone)]
pub struct PoolSensors {
    pool: Pool,
}

impl SensorReader for PoolSensors {
    fn read(&mut self, now: Instant) -> Option<Readings> {
        let mut w = self.pool.lock();
        w.advance(now);
        Some(w.readings())
    }
}

/// The pool's pumps and the device's command handling: a [`CommandHandler`] for all six
/// commands.
#[derive(Debug, Clone)]
pub struct PoolController {
    pool: Pool,
}

impl CommandHandler for PoolController {
    fn run(&mut self, action: &Action, now: Instant) -> Result<Option<JsonObject>, String> {
        let mut w = self.pool.lock();
        w.advance(now);
        w.run(action, now)
    }
}

impl Water {
    /// Moves the water forward to `now`, in steps of a second (longer for long gaps), each with
    /// the pumps as they were at its start.
    fn advance(&mut self, now: Instant) {
        let Some(mut t) = self.last.replace(now) else {
            return;
        };
        let gap = now.as_millis().saturating_sub(t.as_millis());
        let step = (gap / 10_000).max(1_000);
        while t < now {
            let dt = step.min(now.as_millis() - t.as_millis());
            self.step(t, dt as f64 / 60_000.0);
            t = Instant::from_millis(t.as_millis() + dt);
        }
    }

    fn step(&mut self, at: Instant, minutes: f64) {
        self.acid_on = match self.acid {
            Mode::Manual { on, until } if until.is_none_or(|end| at < end) => on,
            _ => {
                self.acid = Mode::Auto;
                self.ph_target.is_some_and(|target| self.ph > target + 0.05)
            }
        };
        self.chlorine_on = match self.dosing {
            Mode::Manual { on, until } if until.is_none_or(|end| at < end) => on,
            _ => {
                self.dosing = Mode::Auto;
                self.chlorine_target
                    .is_some_and(|target| self.chlorine < target - 0.1)
            }
        };
        let m = self.model;
        self.ph += m.ph_drift * minutes;
        if self.acid_on {
            self.ph -= m.acid_rate * minutes;
        }
        self.chlorine -= m.chlorine_decay * minutes;
        if self.chlorine_on {
            self.chlorine += m.chlorine_rate * minutes;
        }
        self.ph = self.ph.clamp(5.5, 9.5);
        self.chlorine = self.chlorine.clamp(0.0, 10.0);
        // The temperature and dissolved solids wander slowly.
        self.temperature += self.gaussian() * 0.05 * minutes.sqrt();
        self.temperature = self.temperature.clamp(5.0, 40.0);
        self.tds = (self.tds + self.gaussian() * 2.0 * minutes.sqrt()).clamp(100.0, 3000.0);
    }

    fn readings(&mut self) -> Readings {
        let m = self.model;
        let ph = self.ph + m.ph_probe_bias + self.gaussian() * m.ph_noise;
        let chlorine = (self.chlorine + self.gaussian() * m.chlorine_noise).max(0.0);
        let temperature = self.temperature + self.gaussian() * 0.05;
        // ORP rises with chlorine and falls as the pH rises.
        let orp = 650.0 + 120.0 * (self.chlorine.max(0.05) / 2.0).log10() - 60.0 * (self.ph - 7.2)
            + self.gaussian() * 3.0;
        let flow = 120.0 + self.gaussian() * 1.5;
        let rssi = -55 - i64::from(self.next() % 10);
        Readings {
            ph: self.calibrated(&Sensor::Ph, ph).clamp(0.0, 14.0),
            chlorine: self.calibrated(&Sensor::Chlorine, chlorine).max(0.0),
            temperature: self.calibrated(&Sensor::Temperature, temperature),
            orp: Some(self.calibrated(&Sensor::Orp, orp).round()),
            tds: Some(self.calibrated(&Sensor::Tds, self.tds).round().max(0.0)),
            flow_rate: Some(self.calibrated(&Sensor::FlowRate, flow).max(0.0)),
            battery: Battery::new(100).ok(),
            signal_strength: SignalStrength::new(rssi).ok(),
        }
    }

    fn calibrated(&self, sensor: &Sensor, value: f64) -> f64 {
        let offset = self
            .calibration
            .iter()
            .find(|(s, _)| s == sensor)
            .map_or(0.0, |(_, offset)| *offset);
        value + offset
    }

    /// What the probe of `sensor` reads without noise, before calibration.
    fn probe(&self, sensor: &Sensor) -> Option<f64> {
        Some(match sensor {
            Sensor::Ph => self.ph + self.model.ph_probe_bias,
            Sensor::Chlorine => self.chlorine,
            Sensor::Temperature => self.temperature,
            Sensor::Tds => self.tds,
            _ => return None,
        })
    }

    fn run(&mut self, action: &Action, now: Instant) -> Result<Option<JsonObject>, String> {
        let mut data = JsonObject::new();
        match action {
            Action::SetPump {
                pump_id,
                state,
                duration,
            } => {
                let on = *state == PumpState::On;
                let mode = Mode::Manual {
                    on,
                    until: duration.map(|s| now + core::time::Duration::from_secs(u64::from(s))),
                };
                match *pump_id {
                    ACID_PUMP => (self.acid, self.acid_on) = (mode, on),
                    CHLORINE_PUMP => (self.dosing, self.chlorine_on) = (mode, on),
                    other => {
                        return Err(format!(
                            "pump {other} does not exist: this device has pump {ACID_PUMP} \
                             (acid) and pump {CHLORINE_PUMP} (chlorine)"
                        ));
                    }
                }
                data.insert("pump_id".into(), (*pump_id).into());
                data.insert("state".into(), state.as_str().into());
                if let Some(seconds) = duration {
                    data.insert("duration".into(), (*seconds).into());
                }
            }
            Action::SetPhTarget { target_ph } => {
                self.ph_target = Some(target_ph.get());
                self.acid = Mode::Auto;
                data.insert("target_ph".into(), json_number(target_ph.get()));
            }
            Action::SetChlorineTarget { target_chlorine } => {
                self.chlorine_target = Some(target_chlorine.get());
                self.dosing = Mode::Auto;
                data.insert("target_chlorine".into(), json_number(target_chlorine.get()));
            }
            Action::Reboot => {
                // Simulated: the pumps stop, targets and calibration survive (they are saved).
                self.reboots += 1;
                self.acid = Mode::Auto;
                self.dosing = Mode::Auto;
                self.acid_on = false;
                self.chlorine_on = false;
                data.insert("reboots".into(), self.reboots.into());
            }
            Action::ResetConfig => {
                self.resets += 1;
                self.ph_target = None;
                self.chlorine_target = None;
                self.calibration.clear();
                self.acid = Mode::Auto;
                self.dosing = Mode::Auto;
                data.insert("resets".into(), self.resets.into());
            }
            Action::CalibrateSensor { sensor_type, value } => {
                let Some(raw) = self.probe(sensor_type) else {
                    return Err(format!(
                        "sensor {sensor_type} cannot be calibrated on this device \
                         (ph, chlorine, temperature, tds can)"
                    ));
                };
                let offset = value.get() - raw;
                self.calibration.retain(|(s, _)| s != sensor_type);
                self.calibration.push((sensor_type.clone(), offset));
                data.insert("sensor_type".into(), sensor_type.as_str().into());
                data.insert(
                    "offset".into(),
                    json_number((offset * 1000.0).round() / 1000.0),
                );
            }
            other => return Err(format!("command {} is not supported", other.name())),
        }
        Ok(Some(data))
    }

    /// Roughly normal noise (the sum of four uniforms), mean 0, standard deviation about 1.
    fn gaussian(&mut self) -> f64 {
        let sum: f64 = (0..4)
            .map(|_| f64::from(self.next()) / f64::from(u32::MAX))
            .sum();
        (sum - 2.0) * 1.732
    }

    /// xorshift64*: the model needs no RNG crate.
    fn next(&mut self) -> u32 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    }
}

fn json_number(value: f64) -> serde_json::Value {
    serde_json::Number::from_f64(value).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dese_protocol::{Finite, Ph};

    fn minutes(m: u64) -> Instant {
        Instant::from_millis(m * 60_000)
    }

    #[test]
    fn ph_rises_by_itself_and_the_acid_pump_brings_it_down() {
        let pool = Pool::new(PoolModel::default(), 1);
        let mut sensors = pool.sensors();
        sensors.read(minutes(0));
        sensors.read(minutes(10));
        let drifted = pool.snapshot().ph;
        assert!((drifted - 7.8).abs() < 1e-6, "7.3 + 10 × 0.05: {drifted}");
        let mut controller = pool.controller();
        let acid = Action::SetPump {
            pump_id: ACID_PUMP,
            state: PumpState::On,
            duration: Some(60),
        };
        controller.run(&acid, minutes(10)).unwrap();
        assert!(pool.snapshot().acid_pump);
        sensors.read(minutes(11));
        let dosed = pool.snapshot();
        assert!((dosed.ph - (7.8 + 0.05 - 0.5)).abs() < 1e-6, "{dosed:?}");
        // The minute is over: the pump stops by itself.
        sensors.read(minutes(12));
        assert!(!pool.snapshot().acid_pump);
    }

    #[test]
    fn a_ph_target_doses_acid_until_reached() {
        let pool = Pool::new(PoolModel::default(), 2);
        let mut sensors = pool.sensors();
        let mut controller = pool.controller();
        sensors.read(minutes(0));
        let target = Action::SetPhTarget {
            target_ph: Ph::new(7.0).unwrap(),
        };
        controller.run(&target, minutes(0)).unwrap();
        for m in 1..=10 {
            sensors.read(minutes(m));
        }
        let ph = pool.snapshot().ph;
        assert!((6.95..=7.1).contains(&ph), "regulated near 7.0: {ph}");
    }

    #[test]
    fn calibration_removes_the_probe_bias() {
        let pool = Pool::new(
            PoolModel {
                ph_noise: 0.0,
                ph_drift: 0.0,
                ..PoolModel::default()
            },
            3,
        );
        let mut sensors = pool.sensors();
        let before = sensors.read(minutes(0)).unwrap().ph;
        assert!((before - 7.38).abs() < 1e-9, "biased by +0.08: {before}");
        let calibrate = Action::CalibrateSensor {
            sensor_type: Sensor::Ph,
            value: Finite::new(7.3).unwrap(),
        };
        let data = pool.controller().run(&calibrate, minutes(0)).unwrap();
        assert_eq!(data.unwrap()["offset"], serde_json::json!(-0.08));
        let after = sensors.read(minutes(1)).unwrap().ph;
        assert!((after - 7.3).abs() < 1e-9, "calibrated: {after}");
    }

    #[test]
    fn unknown_pumps_and_commands_are_refused_with_a_reason() {
        let pool = Pool::new(PoolModel::default(), 4);
        let mut controller = pool.controller();
        let pump = Action::SetPump {
            pump_id: 9,
            state: PumpState::On,
            duration: None,
        };
        let err = controller.run(&pump, minutes(0)).unwrap_err();
        assert!(err.contains("pump 9 does not exist"), "{err}");
        let dance = Action::Unknown {
            name: "dance".into(),
            parameters: None,
        };
        let err = controller.run(&dance, minutes(0)).unwrap_err();
        assert_eq!(err, "command dance is not supported");
        let orp = Action::CalibrateSensor {
            sensor_type: Sensor::Orp,
            value: Finite::new(650.0).unwrap(),
        };
        assert!(controller.run(&orp, minutes(0)).is_err());
    }

    #[test]
    fn reboot_stops_the_pumps_and_reset_clears_targets_and_calibration() {
        let pool = Pool::new(PoolModel::default(), 5);
        let mut controller = pool.controller();
        let on = Action::SetPump {
            pump_id: CHLORINE_PUMP,
            state: PumpState::On,
            duration: None,
        };
        controller.run(&on, minutes(0)).unwrap();
        controller
            .run(
                &Action::SetPhTarget {
                    target_ph: Ph::new(7.2).unwrap(),
                },
                minutes(0),
            )
            .unwrap();
        controller.run(&Action::Reboot, minutes(1)).unwrap();
        let state = pool.snapshot();
        assert!(!state.chlorine_pump && state.reboots == 1 && state.ph_target == Some(7.2));
        controller.run(&Action::ResetConfig, minutes(2)).unwrap();
        let state = pool.snapshot();
        assert_eq!((state.ph_target, state.resets), (None, 1));
    }

    #[test]
    fn every_reading_is_within_the_protocols_ranges() {
        let pool = Pool::new(PoolModel::default(), 6);
        let mut sensors = pool.sensors();
        // Twelve hours without care: the pH saturates, the chlorine runs out.
        for m in 0..720 {
            let r = sensors.read(minutes(m)).unwrap();
            assert!((0.0..=14.0).contains(&r.ph), "{r:?}");
            assert!(r.chlorine >= 0.0 && r.tds.unwrap() >= 0.0, "{r:?}");
        }
    }
}
