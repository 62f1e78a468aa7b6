//! The pumps, the targets and the calibration, and the commands that change them.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use dese_device::{Instant, Readings};
use dese_protocol::serde_json::{Number, Value};
use dese_protocol::{Action, JsonObject, PumpState, Sensor};

/// Pump 1 doses acid (lowers the pH).
pub const ACID_PUMP: u32 = 1;
/// Pump 2 doses chlorine.
pub const CHLORINE_PUMP: u32 = 2;

/// In automatic mode the acid pump runs while the pH reads more than this above its target.
pub const PH_BAND: f64 = 0.05;
/// In automatic mode the chlorine pump runs while chlorine reads more than this below its
/// target, ppm.
pub const CHLORINE_BAND: f64 = 0.1;

/// Which pumps run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PumpStates {
    /// Pump 1: acid (lowers the pH).
    pub acid: bool,
    /// Pump 2: chlorine dosing.
    pub chlorine: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// The pump follows its target, if there is one (off without).
    Auto,
    /// A `set_pump` command decides, until `until` if set.
    Manual { on: bool, until: Option<Instant> },
}

/// One pump: its mode, and what automatic mode decided from the last reading.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pump {
    mode: Mode,
    auto: bool,
}

impl Pump {
    const OFF: Self = Self {
        mode: Mode::Auto,
        auto: false,
    };

    fn at(&self, at: Instant) -> bool {
        match self.mode {
            Mode::Manual { on, until } if until.is_none_or(|end| at < end) => on,
            _ => self.auto,
        }
    }

    /// A manual run whose time is up goes back to automatic mode.
    fn expire(&mut self, now: Instant) {
        if let Mode::Manual {
            until: Some(end), ..
        } = self.mode
        {
            if now >= end {
                self.mode = Mode::Auto;
            }
        }
    }

    fn ends(&self) -> Option<Instant> {
        match self.mode {
            Mode::Manual { until, .. } => until,
            Mode::Auto => None,
        }
    }
}

/// What the commands set on a pool station, and the pumps' decisions from it.
///
/// Feed it calibrated readings ([`Controls::calibrated`], then [`Controls::regulate`]) and
/// commands ([`Controls::run`]), and switch the relays to [`Controls::pumps`] after each.
#[derive(Debug, Clone, PartialEq)]
pub struct Controls {
    acid: Pump,
    dosing: Pump,
    pumps: PumpStates,
    ph_target: Option<f64>,
    chlorine_target: Option<f64>,
    offsets: Vec<(Sensor, f64)>,
}

impl Default for Controls {
    fn default() -> Self {
        Self::new()
    }
}

impl Controls {
    /// Both pumps off, no targets, no calibration.
    pub const fn new() -> Self {
        Self {
            acid: Pump::OFF,
            dosing: Pump::OFF,
            pumps: PumpStates {
                acid: false,
                chlorine: false,
            },
            ph_target: None,
            chlorine_target: None,
            offsets: Vec::new(),
        }
    }

    /// The pumps as last decided.
    pub fn pumps(&self) -> PumpStates {
        self.pumps
    }

    /// The pumps at `at` without deciding anything new: a manual run until its end, then what
    /// automatic mode last decided (for a simulation that moves its water second by second).
    pub fn pumps_at(&self, at: Instant) -> PumpStates {
        PumpStates {
            acid: self.acid.at(at),
            chlorine: self.dosing.at(at),
        }
    }

    /// The pH target, if one was set.
    pub fn ph_target(&self) -> Option<f64> {
        self.ph_target
    }

    /// The chlorine target, if one was set.
    pub fn chlorine_target(&self) -> Option<f64> {
        self.chlorine_target
    }

    /// The offsets `calibrate_sensor` set, by sensor.
    pub fn offsets(&self) -> &[(Sensor, f64)] {
        &self.offsets
    }

    /// When the next timed pump run ends, if one is under way.
    pub fn next_change(&self) -> Option<Instant> {
        match (self.acid.ends(), self.dosing.ends()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// `raw` with the calibration offsets added, and held to what the quantities can be
    /// (a pH of 0 to 14, no negative concentration or flow).
    pub fn calibrated(&self, raw: &Readings) -> Readings {
        let cal = |sensor: Sensor, value: f64| value + self.offset(&sensor);
        Readings {
            ph: cal(Sensor::Ph, raw.ph).clamp(0.0, 14.0),
            chlorine: cal(Sensor::Chlorine, raw.chlorine).max(0.0),
            temperature: cal(Sensor::Temperature, raw.temperature),
            orp: raw.orp.map(|v| libm::round(cal(Sensor::Orp, v))),
            tds: raw.tds.map(|v| libm::round(cal(Sensor::Tds, v)).max(0.0)),
            flow_rate: raw.flow_rate.map(|v| cal(Sensor::FlowRate, v).max(0.0)),
            ..*raw
        }
    }

    /// Decides the pumps at `now`: a manual run whose time is up returns to automatic mode, and
    /// automatic mode follows the targets from `reading` (calibrated) when there is one, or
    /// keeps its last decision. Returns the pumps.
    pub fn regulate(&mut self, now: Instant, reading: Option<&Readings>) -> PumpStates {
        for pump in [&mut self.acid, &mut self.dosing] {
            pump.expire(now);
        }
        if let Some(r) = reading {
            self.acid.auto = self.ph_target.is_some_and(|t| r.ph > t + PH_BAND);
            self.dosing.auto = self
                .chlorine_target
                .is_some_and(|t| r.chlorine < t - CHLORINE_BAND);
        }
        if self.ph_target.is_none() {
            self.acid.auto = false;
        }
        if self.chlorine_target.is_none() {
            self.dosing.auto = false;
        }
        self.pumps = self.pumps_at(now);
        self.pumps
    }

    /// Both pumps off and in automatic mode; targets and calibration stay (a restart).
    pub fn stop(&mut self) {
        self.acid = Pump::OFF;
        self.dosing = Pump::OFF;
        self.pumps = PumpStates::default();
    }

    /// Runs one of the station's commands at `now`: `set_pump`, `set_ph_target`,
    /// `set_chlorine_target`, `reset_config` and `calibrate_sensor` (against `raw`, a fresh
    /// reading before calibration). Any other command, `reboot` among them (the caller's own),
    /// is refused as not supported. The answer's data says what was done.
    pub fn run(
        &mut self,
        action: &Action,
        now: Instant,
        raw: Option<&Readings>,
    ) -> Result<Option<JsonObject>, String> {
        let mut data = JsonObject::new();
        match action {
            Action::SetPump {
                pump_id,
                state,
                duration,
            } => {
                let on = *state == PumpState::On;
                let until = duration.map(|s| now + Duration::from_secs(u64::from(s)));
                let pump = match *pump_id {
                    ACID_PUMP => &mut self.acid,
                    CHLORINE_PUMP => &mut self.dosing,
                    other => {
                        return Err(format!(
                            "pump {other} does not exist: this device has pump {ACID_PUMP} \
                             (acid) and pump {CHLORINE_PUMP} (chlorine)"
                        ));
                    }
                };
                // After the run, automatic mode starts from off until a reading decides.
                *pump = Pump {
                    mode: Mode::Manual { on, until },
                    auto: false,
                };
                data.insert("pump_id".into(), (*pump_id).into());
                data.insert("state".into(), state.as_str().into());
                if let Some(seconds) = duration {
                    data.insert("duration".into(), (*seconds).into());
                }
            }
            Action::SetPhTarget { target_ph } => {
                self.ph_target = Some(target_ph.get());
                self.acid = Pump {
                    mode: Mode::Auto,
                    auto: self.pumps.acid,
                };
                data.insert("target_ph".into(), number(target_ph.get()));
            }
            Action::SetChlorineTarget { target_chlorine } => {
                self.chlorine_target = Some(target_chlorine.get());
                self.dosing = Pump {
                    mode: Mode::Auto,
                    auto: self.pumps.chlorine,
                };
                data.insert("target_chlorine".into(), number(target_chlorine.get()));
            }
            Action::ResetConfig => {
                self.ph_target = None;
                self.chlorine_target = None;
                self.offsets.clear();
                self.stop();
            }
            Action::CalibrateSensor { sensor_type, value } => {
                let raw =
                    raw.ok_or_else(|| String::from("the probes gave no reading to calibrate"))?;
                let measured = measured(raw);
                let Some(reading) = measured
                    .iter()
                    .find(|(sensor, _)| sensor == sensor_type)
                    .map(|(_, value)| *value)
                else {
                    let names: Vec<&str> = measured.iter().map(|(s, _)| s.as_str()).collect();
                    return Err(format!(
                        "sensor {sensor_type} cannot be calibrated on this device ({} can)",
                        names.join(", ")
                    ));
                };
                let offset = value.get() - reading;
                self.offsets.retain(|(s, _)| s != sensor_type);
                self.offsets.push((sensor_type.clone(), offset));
                data.insert("sensor_type".into(), sensor_type.as_str().into());
                data.insert(
                    "offset".into(),
                    number(libm::round(offset * 1000.0) / 1000.0),
                );
            }
            other => return Err(format!("command {} is not supported", other.name())),
        }
        self.regulate(now, None);
        Ok(Some(data))
    }

    fn offset(&self, sensor: &Sensor) -> f64 {
        self.offsets
            .iter()
            .find(|(s, _)| s == sensor)
            .map_or(0.0, |(_, offset)| *offset)
    }
}

/// The sensors `raw` has a value for, with it.
fn measured(raw: &Readings) -> Vec<(Sensor, f64)> {
    let optional = [
        (Sensor::Orp, raw.orp),
        (Sensor::Tds, raw.tds),
        (Sensor::FlowRate, raw.flow_rate),
    ];
    [
        (Sensor::Ph, raw.ph),
        (Sensor::Chlorine, raw.chlorine),
        (Sensor::Temperature, raw.temperature),
    ]
    .into_iter()
    .chain(
        optional
            .into_iter()
            .filter_map(|(sensor, value)| Some((sensor, value?))),
    )
    .collect()
}

fn number(value: f64) -> Value {
    Number::from_f64(value).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dese_protocol::{Finite, Ph};

    fn at(secs: u64) -> Instant {
        Instant::from_millis(secs * 1000)
    }

    fn reading(ph: f64, chlorine: f64) -> Readings {
        Readings {
            ph,
            chlorine,
            temperature: 26.0,
            ..Readings::default()
        }
    }

    #[test]
    fn a_timed_run_ends_by_itself_and_returns_to_automatic_off() {
        let mut c = Controls::new();
        let pump = Action::SetPump {
            pump_id: CHLORINE_PUMP,
            state: PumpState::On,
            duration: Some(30),
        };
        c.run(&pump, at(0), None).unwrap();
        assert!(c.pumps().chlorine);
        assert_eq!(c.next_change(), Some(at(30)));
        assert!(c.pumps_at(at(29)).chlorine && !c.pumps_at(at(30)).chlorine);
        assert!(!c.regulate(at(30), None).chlorine);
        assert_eq!(c.next_change(), None);
    }

    #[test]
    fn targets_decide_from_calibrated_readings_within_their_bands() {
        let mut c = Controls::new();
        let target = Action::SetPhTarget {
            target_ph: Ph::new(7.2).unwrap(),
        };
        c.run(&target, at(0), None).unwrap();
        assert!(
            !c.regulate(at(1), Some(&reading(7.25, 1.0))).acid,
            "in the band"
        );
        assert!(c.regulate(at(2), Some(&reading(7.26, 1.0))).acid);
        assert!(
            c.regulate(at(3), None).acid,
            "no reading: the last decision holds"
        );
        let calibrate = Action::CalibrateSensor {
            sensor_type: Sensor::Ph,
            value: Finite::new(7.0).unwrap(),
        };
        let data = c.run(&calibrate, at(4), Some(&reading(7.26, 1.0))).unwrap();
        assert_eq!(data.unwrap()["offset"], -0.26);
        let calibrated = c.calibrated(&reading(7.46, 1.0));
        assert!((calibrated.ph - 7.2).abs() < 1e-9);
        assert!(!c.regulate(at(5), Some(&calibrated)).acid);
    }

    #[test]
    fn refusals_say_what_the_station_has() {
        let mut c = Controls::new();
        let pump = Action::SetPump {
            pump_id: 9,
            state: PumpState::On,
            duration: None,
        };
        let error = c.run(&pump, at(0), None).unwrap_err();
        assert!(error.contains("pump 9 does not exist"), "{error}");
        let orp = Action::CalibrateSensor {
            sensor_type: Sensor::Orp,
            value: Finite::new(650.0).unwrap(),
        };
        let error = c.run(&orp, at(0), Some(&reading(7.0, 1.0))).unwrap_err();
        assert_eq!(
            error,
            "sensor orp cannot be calibrated on this device (ph, chlorine, temperature can)"
        );
        let error = c.run(&Action::Reboot, at(0), None).unwrap_err();
        assert_eq!(error, "command reboot is not supported");
    }

    #[test]
    fn reset_config_forgets_targets_and_calibration_and_stops_the_pumps() {
        let mut c = Controls::new();
        let on = Action::SetPump {
            pump_id: ACID_PUMP,
            state: PumpState::On,
            duration: None,
        };
        c.run(&on, at(0), None).unwrap();
        c.run(
            &Action::SetChlorineTarget {
                target_chlorine: dese_protocol::Ppm::new(3.0).unwrap(),
            },
            at(0),
            None,
        )
        .unwrap();
        c.run(&Action::ResetConfig, at(1), None).unwrap();
        assert_eq!(c.pumps(), PumpStates::default());
        assert_eq!((c.ph_target(), c.chlorine_target()), (None, None));
        assert!(c.offsets().is_empty());
    }
}
