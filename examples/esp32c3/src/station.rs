//! The pool station: probes and relays around `dese-station`'s [`Controls`] (pumps, targets,
//! calibration, the same logic the simulator runs), behind the engine's [`SensorReader`] and
//! [`CommandHandler`].

use alloc::string::String;
use core::time::Duration;

use dese_device::{CommandHandler, Instant, Readings, SensorReader, Stats};
use dese_protocol::{Action, JsonObject};
pub use dese_station::{ACID_PUMP, CHLORINE_PUMP};
use dese_station::{Controls, PumpStates};

use crate::sensors::Probes;

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

    /// Whether the application wants the device restarted now (a `reboot` whose answer was
    /// delivered, or whose grace is over). The loop then calls [`Application::restart`], once
    /// this turn's changes are saved and its packets sent.
    fn restart_due(&self) -> bool {
        false
    }

    /// Restarts the device (on the chip this does not return).
    fn restart(&mut self) {}
}

/// Probes, relays and the settings commands change. Targets and calibration live in RAM: a
/// restart returns to the defaults.
#[derive(Debug)]
pub struct Station<P, O> {
    probes: P,
    outputs: O,
    controls: Controls,
    /// What the relays were last switched to.
    relays: PumpStates,
    reboot_at: Option<Instant>,
    restart_due: bool,
}

impl<P: Probes, O: Outputs> Station<P, O> {
    /// A station with both pumps off and no targets.
    pub fn new(probes: P, mut outputs: O) -> Self {
        outputs.set_pump(ACID_PUMP, false);
        outputs.set_pump(CHLORINE_PUMP, false);
        Self {
            probes,
            outputs,
            controls: Controls::new(),
            relays: PumpStates::default(),
            reboot_at: None,
            restart_due: false,
        }
    }

    /// What the pumps do now.
    pub fn pumps(&self) -> PumpStates {
        self.relays
    }

    /// The outputs (tests look at them).
    pub fn outputs(&self) -> &O {
        &self.outputs
    }

    /// The probes.
    pub fn probes(&self) -> &P {
        &self.probes
    }

    /// Switches the relays that differ from what the controls decided.
    fn follow(&mut self) {
        let wanted = self.controls.pumps();
        if wanted.acid != self.relays.acid {
            self.outputs.set_pump(ACID_PUMP, wanted.acid);
        }
        if wanted.chlorine != self.relays.chlorine {
            self.outputs.set_pump(CHLORINE_PUMP, wanted.chlorine);
        }
        self.relays = wanted;
    }
}

impl<P: Probes, O: Outputs> SensorReader for Station<P, O> {
    fn read(&mut self, now: Instant) -> Option<Readings> {
        let reading = self
            .probes
            .read(now, self.relays)
            .map(|raw| self.controls.calibrated(&raw));
        self.controls.regulate(now, reading.as_ref());
        self.follow();
        reading
    }
}

impl<P: Probes, O: Outputs> CommandHandler for Station<P, O> {
    fn run(&mut self, action: &Action, now: Instant) -> Result<Option<JsonObject>, String> {
        let outcome = match action {
            Action::Reboot => {
                // The response goes out first: `tick` restarts once it is delivered.
                self.reboot_at = Some(now + REBOOT_GRACE);
                let mut data = JsonObject::new();
                data.insert(
                    "restart_within_ms".into(),
                    (REBOOT_GRACE.as_millis() as u64).into(),
                );
                Ok(Some(data))
            }
            Action::CalibrateSensor { .. } => {
                let raw = self.probes.read(now, self.relays);
                self.controls.run(action, now, raw.as_ref())
            }
            _ => self.controls.run(action, now, None),
        };
        self.follow();
        outcome
    }
}

impl<P: Probes, O: Outputs> Application for Station<P, O> {
    fn tick(&mut self, now: Instant, stats: &Stats) -> Option<Instant> {
        if let Some(at) = self.reboot_at {
            // Restart once the reboot's response (and everything before it) is delivered.
            if stats.pending == 0 || now >= at {
                self.reboot_at = None;
                self.restart_due = true;
            }
        }
        self.controls.regulate(now, None);
        self.follow();
        [self.controls.next_change(), self.reboot_at]
            .into_iter()
            .flatten()
            .min()
    }

    fn restart_due(&self) -> bool {
        self.restart_due
    }

    fn restart(&mut self) {
        self.restart_due = false;
        self.controls.stop();
        self.follow();
        self.outputs.restart();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensors::SimulatedProbes;
    use alloc::vec::Vec;
    use dese_protocol::{Finite, Ph, PumpState, Sensor};

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
            sensor_type: Sensor::parse("turbidity").unwrap(),
            value: Finite::new(1.0).unwrap(),
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
        assert!(!s.restart_due());
        s.tick(at(2), &Stats::default());
        assert!(s.restart_due(), "due once the answer is delivered");
        assert_eq!(
            s.outputs().restarts,
            0,
            "the loop restarts, after saving and sending"
        );
        s.restart();
        assert_eq!(s.outputs().restarts, 1);
        assert!(!s.restart_due());
    }
}
