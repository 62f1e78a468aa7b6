//! The desktop reference device: how a DESE device behaves, as a program you can run.
//!
//! It is the [`dese_device`] engine (status on connect, last will, telemetry, offline outbox,
//! command deduplication, config, threshold alerts, reconnection backoff) driven over a real
//! broker by [`dese_transport::DeviceClient`], with the simulated pool of
//! [`dese_sim::water`] as its sensors and pumps: the pH rises by itself, chlorine is consumed,
//! pump 1 doses acid and pump 2 chlorine, the probes read with noise and a bias that
//! `calibrate_sensor` removes, and all six commands are implemented (`reboot` and
//! `reset_config` simulated). `dese simulate` and the quickstart run the same model.
//!
//! Firmware for a real board does the same with real sensors: see `examples/esp32c3` and
//! `docs/firmware.md`.
#![forbid(unsafe_code)]
// A std crate: portability to no_std is not a goal here.
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)]

use dese_device::{Event, Settings, Stats};
use dese_protocol::{DeviceId, OrgId, TelemetryInterval};
use dese_sim::water::{Pool, PoolModel};
use dese_transport::{BrokerOptions, DeviceClient, Error, Transport};

/// Who the device is and how its water behaves.
#[derive(Debug, Clone)]
pub struct DeviceOptions {
    /// The organization.
    pub org: OrgId,
    /// The device.
    pub device: DeviceId,
    /// Reported in telemetry and status.
    pub firmware_version: String,
    /// The telemetry period until a config message changes it.
    pub telemetry_interval: TelemetryInterval,
    /// How the water behaves.
    pub model: PoolModel,
    /// Seeds the probes' noise.
    pub seed: u64,
}

impl DeviceOptions {
    /// A device with the protocol's defaults (telemetry every 30 s) and the default pool.
    pub fn new(org: OrgId, device: DeviceId) -> Self {
        Self {
            org,
            device,
            firmware_version: concat!("reference-", env!("CARGO_PKG_VERSION")).to_string(),
            telemetry_interval: TelemetryInterval::DEFAULT,
            model: PoolModel::default(),
            seed: 1,
        }
    }
}

/// A running reference device.
pub struct ReferenceDevice<T> {
    client: DeviceClient<T>,
    pool: Pool,
}

impl<T: Transport> ReferenceDevice<T> {
    /// Connects to the broker and runs; the broker being down is retried, not an error.
    pub fn spawn(broker: &BrokerOptions, options: DeviceOptions) -> Result<Self, Error> {
        let mut settings = Settings::new(options.org, options.device, options.firmware_version);
        settings.telemetry_interval = options.telemetry_interval;
        let pool = Pool::new(options.model, options.seed);
        let client = DeviceClient::spawn(broker, settings, pool.sensors(), pool.controller())?;
        Ok(Self { client, pool })
    }
}

impl<T> ReferenceDevice<T> {
    /// The water and the pumps, as they are now.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The engine's next event.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an event not returned stays for the next call.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.client.next_event().await
    }

    /// The engine's counters.
    pub fn stats(&self) -> Stats {
        self.client.stats()
    }

    /// Whether the device is connected.
    pub fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    /// Delivers the outbox, says goodbye (a retained `offline` status), disconnects and returns
    /// the final counters (`pending`: what was not delivered).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: see [`DeviceClient::shutdown`].
    pub async fn shutdown(self) -> Result<Stats, Error> {
        self.client.shutdown().await
    }
}

/// A log line for an engine event.
pub fn describe(event: &Event) -> String {
    match event {
        Event::Connect => "connecting".to_string(),
        Event::ConfigApplied(config) => format!("config applied: {config:?}"),
        Event::ConfigReset => {
            "config reset: telemetry interval, keepalive, calibration and thresholds back to the \
             device's own"
                .to_string()
        }
        Event::ConfigRejected { error } => format!("config refused: {error}"),
        Event::KeepaliveChanged(k) => format!("keepalive now {} s: reconnecting", k.get()),
        Event::CommandRun {
            command_id,
            command,
            success,
        } => format!(
            "ran {command} ({command_id}): {}",
            if *success { "success" } else { "failure" }
        ),
        Event::CommandDuplicate { command_id } => {
            format!("{command_id} delivered again: answered from memory, not run twice")
        }
        Event::CommandRefused { command_id, error } => match command_id {
            Some(id) => format!("refused {id}: {error}"),
            None => format!("refused a command without a readable id: {error}"),
        },
        Event::Dropped { reason, error } => {
            format!("dropped an incoming message ({reason}): {error}")
        }
        Event::ReadingMissed => "no reading this period".to_string(),
        Event::ReadingRejected { error } => format!("reading out of range, not sent: {error}"),
        other => format!("{other:?}"),
    }
}
