//! A simulated pool: water whose pH and chlorine drift, two dosing pumps that move them back,
//! and probes that read it with noise and a bias that calibration corrects.
//!
//! [`Pool`] gives a [`SensorReader`] ([`Pool::sensors`]) and a [`CommandHandler`]
//! ([`Pool::controller`]) that share one body of water, so that a `set_pump` command shows in
//! the next telemetry. `dese simulate`, the desktop reference device and the quickstart all run
//! this model. The station's logic (the pumps, the targets they follow, calibration, the
//! refusals) and the water are `dese-station`'s, the same the ESP32-C3 firmware runs: a
//! simulated device behaves as the firmware does.
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
use dese_protocol::{Action, JsonObject, Sensor};
pub use dese_station::{ACID_PUMP, CHLORINE_PUMP, PoolModel};
use dese_station::{Controls, Water};

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

/// The water, and the station that reads and doses it.
#[derive(Debug)]
struct Station {
    water: Water,
    controls: Controls,
    reboots: u32,
    resets: u32,
}

impl Station {
    /// Moves the water on to `now` with the pumps as the station runs them, second by second
    /// (a timed run ends on time).
    fn advance(&mut self, now: Instant) {
        let Self {
            water, controls, ..
        } = self;
        water.advance(now, |at| controls.pumps_at(at));
    }
}

/// One simulated pool with its probes and pumps. Cloning shares the same water.
#[derive(Debug, Clone)]
pub struct Pool {
    station: Arc<Mutex<Station>>,
}

impl Pool {
    /// A pool behaving as `model`; `seed` makes its noise reproducible (give each device its
    /// own).
    pub fn new(model: PoolModel, seed: u64) -> Self {
        let station = Station {
            water: Water::new(model, seed),
            controls: Controls::new(),
            reboots: 0,
            resets: 0,
        };
        Self {
            station: Arc::new(Mutex::new(station)),
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
        let s = self.lock();
        let pumps = s.controls.pumps();
        PoolState {
            ph: s.water.ph(),
            chlorine: s.water.chlorine(),
            temperature: s.water.temperature(),
            acid_pump: pumps.acid,
            chlorine_pump: pumps.chlorine,
            ph_target: s.controls.ph_target(),
            chlorine_target: s.controls.chlorine_target(),
            calibration: s.controls.offsets().to_vec(),
            reboots: s.reboots,
            resets: s.resets,
        }
    }

    /// Changes how the water behaves from now on (a storm, a swimmer-heavy afternoon).
    pub fn set_model(&self, model: PoolModel) {
        self.lock().water.set_model(model);
    }

    fn lock(&self) -> MutexGuard<'_, Station> {
        // The model holds plain numbers: a panic elsewhere cannot leave them inconsistent.
        self.station.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The pool's probes: a [`SensorReader`]. Each reading also decides the pumps, as the
/// firmware's does.
#[derive(Debug, Clone)]
pub struct PoolSensors {
    pool: Pool,
}

impl SensorReader for PoolSensors {
    fn read(&mut self, now: Instant) -> Option<Readings> {
        let mut s = self.pool.lock();
        s.advance(now);
        let raw = s.water.read();
        let reading = s.controls.calibrated(&raw);
        s.controls.regulate(now, Some(&reading));
        Some(reading)
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
        let mut s = self.pool.lock();
        s.advance(now);
        match action {
            Action::Reboot => {
                // Simulated as the firmware restarts: the pumps stop, and the station's targets
                // and calibration, held in RAM, are gone.
                s.reboots += 1;
                s.controls = Controls::new();
                let mut data = JsonObject::new();
                data.insert("reboots".into(), s.reboots.into());
                Ok(Some(data))
            }
            Action::ResetConfig => {
                s.resets += 1;
                let resets = s.resets;
                let mut data = s.controls.run(action, now, None)?.unwrap_or_default();
                data.insert("resets".into(), resets.into());
                Ok(Some(data))
            }
            _ => {
                let raw = s.water.read();
                s.controls.run(action, now, Some(&raw))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dese_protocol::{Finite, Ph, PumpState, serde_json};

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

    // The station decides from its readings, as the firmware does: a reading every 10 s keeps
    // the (biased, uncalibrated) reading within the band, so the true pH about 0.08 under it.
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
        assert!(sensors.read(Instant::from_millis(1)).is_some());
        assert!(pool.snapshot().acid_pump, "7.38 read against a 7.0 target");
        for tick in 1..=60 {
            sensors.read(Instant::from_millis(tick * 10_000));
        }
        let ph = pool.snapshot().ph;
        assert!((6.85..=7.0).contains(&ph), "regulated just under 7.0: {ph}");
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
        let turbidity = Action::CalibrateSensor {
            sensor_type: Sensor::parse("turbidity").unwrap(),
            value: Finite::new(1.0).unwrap(),
        };
        let err = controller.run(&turbidity, minutes(0)).unwrap_err();
        assert!(
            err.contains("ph, chlorine, temperature, orp, tds, flow_rate can"),
            "{err}"
        );
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
        controller.run(&Action::ResetConfig, minutes(1)).unwrap();
        let state = pool.snapshot();
        assert_eq!((state.ph_target, state.resets), (None, 1));
        assert!(!state.chlorine_pump, "reset_config stops the pumps");
        controller.run(&on, minutes(2)).unwrap();
        controller
            .run(
                &Action::SetPhTarget {
                    target_ph: Ph::new(7.2).unwrap(),
                },
                minutes(2),
            )
            .unwrap();
        controller.run(&Action::Reboot, minutes(3)).unwrap();
        let state = pool.snapshot();
        assert!(!state.chlorine_pump && state.reboots == 1);
        assert_eq!(state.ph_target, None, "held in RAM, as on the firmware");
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
