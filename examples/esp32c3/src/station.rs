//! The pool station: probes, pumps, targets and calibration, behind the engine's
//! [`SensorReader`] and [`CommandHandler`].

use alloc::format;
use alloc::string::String;
use core::time::Duration;

use dese_device::{CommandHandler, Instant, Readings, SensorReader, Stats};
use dese_protocol::serde_json::{self, Value};
use dese_protocol::{Action, JsonObject, PumpState, Sensor};

use crate::sensors::{Probes, PumpStates};

/// Pump 1 doses acid (lowers pH).
pub const ACID_PUMP: u32 = 1;
/// Pump 2 doses chlorine.
pub const CHLORINE_PUMP: u32 = 2;

/// How long a `reboot` waits for its response to be delivered before restarting anyway.
pub const REBOOT_GRACE: Duration = Duration::from_secs(3);

/// The hardware a station drives besides its probes.
pub trait Outputs {
    /// Switches a pump's relay; `pump` is [`ACID_PUMP`] or [`CHLORINE_PUMP`].
    fn set_pump(&mut self, pump: u32, on: bool);
    /// Restarts the device (on the chip this does not return).
    fn restart(&mut self);
}

/// Lets the application act between the engine's inputs: the run loop calls it after each
/// turn.
pub trait Application: SensorReader + CommandHandler {
    /// Acts on what is due at `now` (a timed pump run ending, a requested reboot once the
    /// engine has nothing left to deliver) and answers when it wants to be called next.
    fn tick(&mut self, now: Instant, stats: &Stats) -> Option<Instant>;
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// The pump follows the target, if there is one.
    Auto,
    /// A `set_pump` command decides, until `until` if set.
    Manual { on: bool, until: Option<Instant> },
}

/// Calibration offsets set by `calibrate_sensor`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Offsets {
    ph: f64,
    chlorine: f64,
    temperature: f64,
}

/// Probes, pumps and the settings commands change. Targets and calibration live in RAM: a
/// restart returns to the defaults.
#[derive(Debug)]
pub struct Station<P, O> {
    probes: P,
    outputs: O,
    acid: Mode,
    dosing: Mode,
    pumps: PumpStates,
    ph_target: Option<f64>,
    chlorine_target: Option<f64>,
    offsets: Offsets,
    reboot_at: Option<Instant>,
}

impl<P: Probes, O: Outputs> Station<P, O> {
    /// A station with both pumps off and no targets.
    pub fn new(probes: P, mut outputs: O) -> Self {
        outputs.set_pump(ACID_PUMP, false);
        outputs.set_pump(CHLORINE_PUMP, false);
        Self {
            probes,
            outputs,
            acid: Mode::Auto,
            dosing: Mode::Auto,
            pumps: PumpStates::default(),
            ph_target: None,
            chlorine_target: None,
            offsets: Offsets::default(),
            reboot_at: None,
        }
    }

    /// What the pumps do now.
    pub fn pumps(&self) -> PumpStates {
        self.pumps
    }

    /// The outputs (tests look at them).
    pub fn outputs(&self) -> &O {
        &self.outputs
    }

    /// The probes.
    pub fn probes(&self) -> &P {
        &self.probes
    }

    fn switch(&mut self, acid: bool, chlorine: bool) {
        if acid != self.pumps.acid {
            self.outputs.set_pump(ACID_PUMP, acid);
        }
        if chlorine != self.pumps.chlorine {
            self.outputs.set_pump(CHLORINE_PUMP, chlorine);
        }
        self.pumps = PumpStates { acid, chlorine };
    }

    /// Decides each pump from its mode and, in automatic mode, from the latest reading.
    fn regulate(&mut self, now: Instant, reading: Option<&Readings>) {
        let decide = |mode: &mut Mode, current: bool, auto: Option<bool>| match *mode {
            Mode::Manual { on, until } if until.is_none_or(|end| now < end) => on,
            Mode::Manual { .. } => {
                *mode = Mode::Auto;
                auto.unwrap_or(false)
            }
            Mode::Auto => auto.unwrap_or(current),
        };
        let acid_auto = match (self.ph_target, reading) {
            (Some(target), Some(r)) => Some(r.ph > target + 0.05),
            (None, _) => Some(false),
            (Some(_), None) => None,
        };
        let dosing_auto = match (self.chlorine_target, reading) {
            (Some(target), Some(r)) => Some(r.chlorine < target - 0.1),
            (None, _) => Some(false),
            (Some(_), None) => None,
        };
        let acid = decide(&mut self.acid, self.pumps.acid, acid_auto);
        let chlorine = decide(&mut self.dosing, self.pumps.chlorine, dosing_auto);
        self.switch(acid, chlorine);
    }

    fn calibrated(&mut self, now: Instant) -> Option<Readings> {
        let mut r = self.probes.read(now, self.pumps)?;
        r.ph += self.offsets.ph;
        r.chlorine += self.offsets.chlorine;
        r.temperature += self.offsets.temperature;
        Some(r)
    }
}

impl<P: Probes, O: Outputs> SensorReader for Station<P, O> {
    fn read(&mut self, now: Instant) -> Option<Readings> {
        let reading = self.calibrated(now);
        self.regulate(now, reading.as_ref());
        reading
    }
}

impl<P: Probes, O: Outputs> CommandHandler for Station<P, O> {
    fn run(&mut self, action: &Action, now: Instant) -> Result<Option<JsonObject>, String> {
        let mut data = JsonObject::new();
        match action {
            Action::SetPump {
                pump_id,
                state,
                duration,
            } => {
                let on = *state == PumpState::On;
                let until = duration.map(|s| now + Duration::from_secs(u64::from(s)));
                let mode = Mode::Manual { on, until };
                match *pump_id {
                    ACID_PUMP => self.acid = mode,
                    CHLORINE_PUMP => self.dosing = mode,
                    other => {
                        return Err(format!(
                            "pump {other} does not exist: this device has pump {ACID_PUMP} \
                             (acid) and pump {CHLORINE_PUMP} (chlorine)"
                        ));
                    }
                }
                self.regulate(now, None);
                data.insert("pump_id".into(), (*pump_id).into());
                data.insert("state".into(), state.as_str().into());
                if let Some(seconds) = duration {
                    data.insert("duration".into(), (*seconds).into());
                }
            }
            Action::SetPhTarget { target_ph } => {
                self.ph_target = Some(target_ph.get());
                self.acid = Mode::Auto;
                data.insert("target_ph".into(), number(target_ph.get()));
            }
            Action::SetChlorineTarget { target_chlorine } => {
                self.chlorine_target = Some(target_chlorine.get());
                self.dosing = Mode::Auto;
                data.insert("target_chlorine".into(), number(target_chlorine.get()));
            }
            Action::Reboot => {
                // The response goes out first: `tick` restarts once it is delivered.
                self.reboot_at = Some(now + REBOOT_GRACE);
                data.insert(
                    "restart_within_ms".into(),
                    (REBOOT_GRACE.as_millis() as u64).into(),
                );
            }
            Action::ResetConfig => {
                self.ph_target = None;
                self.chlorine_target = None;
                self.offsets = Offsets::default();
                self.acid = Mode::Auto;
                self.dosing = Mode::Auto;
                self.switch(false, false);
            }
            Action::CalibrateSensor { sensor_type, value } => {
                let raw = self
                    .probes
                    .read(now, self.pumps)
                    .ok_or_else(|| String::from("the probes gave no reading to calibrate"))?;
                let (slot, raw) = match sensor_type {
                    Sensor::Ph => (&mut self.offsets.ph, raw.ph),
                    Sensor::Chlorine => (&mut self.offsets.chlorine, raw.chlorine),
                    Sensor::Temperature => (&mut self.offsets.temperature, raw.temperature),
                    other => {
                        return Err(format!(
                            "sensor {other} cannot be calibrated on this device \
                             (ph, chlorine and temperature can)"
                        ));
                    }
                };
                *slot = value.get() - raw;
                data.insert("sensor_type".into(), sensor_type.as_str().into());
                data.insert(
                    "offset".into(),
                    number(libm::round(*slot * 1000.0) / 1000.0),
                );
            }
            other => return Err(format!("command {} is not supported", other.name())),
        }
        Ok(Some(data))
    }
}

impl<P: Probes, O: Outputs> Application for Station<P, O> {
    fn tick(&mut self, now: Instant, stats: &Stats) -> Option<Instant> {
        if let Some(at) = self.reboot_at {
            // Restart once the reboot's response (and everything before it) is delivered.
            if stats.pending == 0 || now >= at {
                self.reboot_at = None;
                self.switch(false, false);
                self.outputs.restart();
            }
        }
        self.regulate(now, None);
        let ends = [self.acid, self.dosing]
            .into_iter()
            .filter_map(|mode| match mode {
                Mode::Manual { until, .. } => until,
                Mode::Auto => None,
            });
        ends.chain(self.reboot_at).min()
    }
}

fn number(value: f64) -> Value {
    serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensors::SimulatedProbes;
    use alloc::vec::Vec;
    use dese_protocol::{Finite, Ph};

    #[derive(Debug, Default)]
    struct Relays {
        switched: Vec<(u32, bool)>,
        restarts: u32,
    }
    impl Outputs for Relays {
        fn set_pump(&mut self, pump: u32, on: bool) {
            self.switched.push((pump, on));
        }
        fn restart(&mut self) {
            self.restarts += 1;
        }
    }

    fn at(secs: u64) -> Instant {
        Instant::from_millis(secs * 1000)
    }

    fn station() -> Station<SimulatedProbes, Relays> {
        Station::new(SimulatedProbes::new(1), Relays::default())
    }

    #[test]
    fn a_timed_pump_run_ends_by_itself() {
        let mut s = station();
        let pump = Action::SetPump {
            pump_id: ACID_PUMP,
            state: PumpState::On,
            duration: Some(30),
        };
        let data = s.run(&pump, at(0)).unwrap().unwrap();
        assert_eq!(data["pump_id"], 1);
        assert!(s.pumps().acid);
        assert_eq!(s.tick(at(10), &Stats::default()), Some(at(30)));
        assert!(s.pumps().acid);
        assert_eq!(s.tick(at(30), &Stats::default()), None);
        assert!(!s.pumps().acid);
        assert_eq!(
            s.outputs().switched,
            [(1, false), (2, false), (1, true), (1, false)]
        );
    }

    #[test]
    fn an_unknown_pump_is_refused_by_name() {
        let mut s = station();
        let error = s
            .run(
                &Action::SetPump {
                    pump_id: 9,
                    state: PumpState::On,
                    duration: None,
                },
                at(0),
            )
            .unwrap_err();
        assert!(error.contains("pump 9 does not exist"), "{error}");
    }

    #[test]
    fn a_ph_target_runs_the_acid_pump_until_reached() {
        let mut s = station();
        let target = Action::SetPhTarget {
            target_ph: Ph::new(7.0).unwrap(),
        };
        s.run(&target, at(0)).unwrap();
        s.read(at(0));
        assert!(s.pumps().acid, "7.38 read against a 7.0 target");
        let mut t = 0;
        while s.pumps().acid && t < 3600 {
            t += 10;
            s.read(at(t));
        }
        assert!(!s.pumps().acid);
        assert!(s.probes().true_ph() < 7.0, "{}", s.probes().true_ph());
    }

    #[test]
    fn calibration_removes_the_probe_bias() {
        let mut s = station();
        let calibrate = Action::CalibrateSensor {
            sensor_type: Sensor::Ph,
            value: Finite::new(7.3).unwrap(),
        };
        let data = s.run(&calibrate, at(0)).unwrap().unwrap();
        let offset = data["offset"].as_f64().unwrap();
        assert!((offset + 0.08).abs() < 0.02, "{offset}");
        let reading = s.read(at(1)).unwrap();
        assert!((reading.ph - s.probes().true_ph()).abs() < 0.03);
        let refused = Action::CalibrateSensor {
            sensor_type: Sensor::Orp,
            value: Finite::new(650.0).unwrap(),
        };
        assert!(s.run(&refused, at(2)).is_err());
    }

    #[test]
    fn reboot_waits_for_the_response_to_be_delivered() {
        let mut s = station();
        s.run(&Action::Reboot, at(0)).unwrap();
        let waiting = Stats {
            pending: 1,
            ..Stats::default()
        };
        assert_eq!(s.tick(at(1), &waiting), Some(at(3)));
        assert_eq!(s.outputs().restarts, 0);
        s.tick(at(2), &Stats::default());
        assert_eq!(s.outputs().restarts, 1);
    }
}
