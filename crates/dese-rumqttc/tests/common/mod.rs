//! Fixtures shared by the transport's tests.

#![allow(dead_code)] // each test file uses some of these

use dese_device::{CommandHandler, Instant, Readings, SensorReader};
use dese_protocol::{Action, JsonObject};

/// Always pH 7.2, chlorine 2.5 ppm, 25.5 °C.
pub(crate) struct Probe;

impl SensorReader for Probe {
    fn read(&mut self, _now: Instant) -> Option<Readings> {
        Some(Readings {
            ph: 7.2,
            chlorine: 2.5,
            temperature: 25.5,
            ..Readings::default()
        })
    }
}

/// No periodic readings: the test publishes readings itself.
pub(crate) struct NoSensors;

impl SensorReader for NoSensors {
    fn read(&mut self, _now: Instant) -> Option<Readings> {
        None
    }
}

/// Refuses every command.
pub(crate) struct NoCommands;

impl CommandHandler for NoCommands {
    fn run(&mut self, _action: &Action, _now: Instant) -> Result<Option<JsonObject>, String> {
        Err("no commands here".into())
    }
}
