//! What the application gives the engine: its sensors and its command handler.

use alloc::string::String;

use dese_protocol::{Action, Battery, JsonObject, SignalStrength};

use crate::time::Instant;

/// Raw readings, before calibration. The engine applies the configured calibration, checks the
/// protocol's ranges and builds the telemetry message.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Readings {
    /// pH.
    pub ph: f64,
    /// Free chlorine, ppm.
    pub chlorine: f64,
    /// Water temperature, °C.
    pub temperature: f64,
    /// Oxidation-reduction potential, mV, if the device has the probe.
    pub orp: Option<f64>,
    /// Total dissolved solids, ppm, if the device has the probe.
    pub tds: Option<f64>,
    /// Flow, litres per minute, if the device has a flow meter.
    pub flow_rate: Option<f64>,
    /// Battery level, if battery powered.
    pub battery: Option<Battery>,
    /// WiFi RSSI.
    pub signal_strength: Option<SignalStrength>,
}

/// The device's sensors.
///
/// ```
/// use dese_device::{Instant, Readings, SensorReader};
///
/// struct Fixed;
/// impl SensorReader for Fixed {
///     fn read(&mut self, _now: Instant) -> Option<Readings> {
///         Some(Readings { ph: 7.2, chlorine: 2.5, temperature: 25.5, ..Readings::default() })
///     }
/// }
/// ```
pub trait SensorReader {
    /// Reads every sensor; `None` when no reading can be had now (the engine counts it and
    /// tries again at the next period).
    fn read(&mut self, now: Instant) -> Option<Readings>;
}

/// Carries out commands that finish in the call, for
/// [`Device::handle_message_with`](crate::Device::handle_message_with). Commands that take
/// longer come out of [`Device::handle_message`](crate::Device::handle_message) as
/// [`Event::Command`](crate::Event::Command) instead.
///
/// The engine has already validated the command (parameters in range, addressed to this
/// device, not retained) and made sure this `command_id` never ran before; it publishes the
/// response. Return data for `success: true`, or the reason for `success: false`.
///
/// ```
/// use dese_device::{CommandHandler, Instant};
/// use dese_protocol::{Action, JsonObject};
///
/// struct Pumps { on: bool }
/// impl CommandHandler for Pumps {
///     fn run(&mut self, action: &Action, _now: Instant) -> Result<Option<JsonObject>, String> {
///         match action {
///             Action::SetPump { state, .. } => {
///                 self.on = state.as_str() == "on";
///                 Ok(None)
///             }
///             other => Err(format!("{} is not supported", other.name())),
///         }
///     }
/// }
/// ```
pub trait CommandHandler {
    /// Carries out `action`. A command this device does not support, including an
    /// [`Action::Unknown`], should return `Err` with the reason.
    fn run(&mut self, action: &Action, now: Instant) -> Result<Option<JsonObject>, String>;
}
