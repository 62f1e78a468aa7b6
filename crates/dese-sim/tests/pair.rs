//! Devices and a backend through the simulated broker: the protocol end to end, on a perfect
//! network and on a hostile one.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use dese_backend::{Event, Outcome, Settings as BackendSettings};
use dese_device::{CommandHandler, Instant, Readings, SensorReader, Settings};
use dese_protocol::{Action, DeviceState, JsonObject, MessageKind, PumpState};
use dese_sim::{Network, Sim};

struct Probe;
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

struct Pumps;
impl CommandHandler for Pumps {
    fn run(&mut self, action: &Action, _now: Instant) -> Result<Option<JsonObject>, String> {
        match action {
            Action::SetPump { .. } | Action::Reboot => Ok(None),
            other => Err(format!("{} is not supported", other.name())),
        }
    }
}

fn sim(seed: u64, network: Network, devices: usize, backend: BackendSettings) -> Sim {
    let mut sim = Sim::new(seed, network, backend);
    for i in 0..devices {
        let settings = Settings::new(
            "org-1".parse().unwrap(),
            format!("dev-{i}").parse().unwrap(),
            "1.0.0",
        );
        sim.add_device(settings, Box::new(Probe), Box::new(Pumps));
    }
    sim
}

/// Unique telemetry timestamps the backend accepted, per device id.
fn received(sim: &Sim) -> BTreeMap<String, BTreeSet<i64>> {
    let mut out: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for e in sim.backend_events() {
        if let Event::Telemetry { device, telemetry } = e {
            assert!(
                out.entry(device.device.to_string())
                    .or_default()
                    .insert(telemetry.timestamp.unix_millis()),
                "a duplicate reached the application as new data"
            );
        }
    }
    out
}

#[test]
fn perfect_network_everything_arrives() {
    let mut sim = sim(1, Network::PERFECT, 3, BackendSettings::default());
    sim.run_for(Duration::from_secs(600));
    let got = received(&sim);
    for i in 0..3 {
        let stats = sim.device(i).stats();
        assert_eq!(stats.telemetry, 20);
        assert_eq!(got[&format!("dev-{i}")].len(), 20);
        let presence = sim
            .backend()
            .presence(
                &"org-1".parse().unwrap(),
                &format!("dev-{i}").parse().unwrap(),
            )
            .unwrap();
        assert_eq!(presence.state, DeviceState::Online);
    }
    assert!(sim.backend().counters().dropped.is_empty());
}

// DESE-D9, DESE-D6, DESE-D7: duplicated, reordered deliveries and dropped links lose nothing:
// every reading a device built reaches the backend once as data (duplicates are reported),
// or is counted as dropped by the device's bounded outbox.
#[test]
fn dese_d9_hostile_network_loses_nothing() {
    for seed in 1..=5 {
        let network = Network {
            duplicate: 0.3,
            reorder: 0.3,
            link_drop: 0.03,
            ack_loss: 0.03,
        };
        let mut sim = sim(seed, network, 3, BackendSettings::default());
        sim.run_for(Duration::from_secs(3600));
        // Calm down and let every outbox drain.
        sim.set_network(Network::PERFECT);
        sim.run_for(Duration::from_secs(120));
        let got = received(&sim);
        for i in 0..3 {
            let stats = sim.device(i).stats();
            let arrived = got.get(&format!("dev-{i}")).map_or(0, BTreeSet::len) as u64;
            assert_eq!(stats.pending, 0, "seed {seed}: outbox drained");
            assert_eq!(
                arrived + stats.telemetry_dropped,
                stats.telemetry,
                "seed {seed} dev-{i}: {stats:?}"
            );
            assert!(
                sim.device_stats(i).link_drops > 0,
                "seed {seed}: the links did drop"
            );
            let presence = sim
                .backend()
                .presence(
                    &"org-1".parse().unwrap(),
                    &format!("dev-{i}").parse().unwrap(),
                )
                .unwrap();
            assert_eq!(
                presence.state,
                DeviceState::Online,
                "seed {seed}: back online"
            );
        }
        assert!(
            sim.backend()
                .counters()
                .duplicates
                .get(&MessageKind::Telemetry)
                .copied()
                .unwrap_or(0)
                > 0
        );
    }
}

// DESE-C5: a command duplicated on the way runs once; the backend sees it complete once and
// reports the repeated answers as duplicates.
#[test]
fn dese_c5_duplicated_command_runs_once_end_to_end() {
    let network = Network {
        duplicate: 1.0,
        ..Network::PERFECT
    };
    let mut sim = sim(7, network, 1, BackendSettings::default());
    sim.run_for(Duration::from_secs(2));
    let id = sim
        .send_command(
            0,
            Action::SetPump {
                pump_id: 1,
                state: PumpState::On,
                duration: Some(60),
            },
        )
        .unwrap();
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.device_stats(0).commands_run, 1);
    let outcomes: Vec<&Outcome> = sim
        .backend_events()
        .iter()
        .filter_map(|e| match e {
            Event::Command {
                command_id,
                outcome,
                ..
            } if *command_id == id => Some(outcome),
            _ => None,
        })
        .collect();
    assert!(
        matches!(outcomes[..], [Outcome::Completed(_)]),
        "{outcomes:?}"
    );
    assert!(sim.backend().counters().duplicates[&MessageKind::CommandResponse] >= 1);
}

// DESE-D5, DESE-C1, DESE-C3: a device switched off is marked offline by its last will, and a
// command to it times out after its retries.
#[test]
fn killed_device_goes_offline_and_commands_time_out() {
    let backend = BackendSettings {
        retries: 2,
        ..BackendSettings::default()
    };
    let mut sim = sim(3, Network::PERFECT, 2, backend);
    sim.run_for(Duration::from_secs(5));
    sim.kill(1);
    sim.run_for(Duration::from_secs(1));
    let presence = sim
        .backend()
        .presence(&"org-1".parse().unwrap(), &"dev-1".parse().unwrap())
        .unwrap();
    assert_eq!(presence.state, DeviceState::Offline);
    assert!(sim.retained("devices/org-1/dev-1/status").is_some());
    let id = sim.send_command(1, Action::Reboot).unwrap();
    sim.run_for(Duration::from_secs(120));
    let outcome = sim.backend_events().iter().find_map(|e| match e {
        Event::Command {
            command_id,
            outcome,
            ..
        } if *command_id == id => Some(outcome.clone()),
        _ => None,
    });
    assert_eq!(outcome, Some(Outcome::TimedOut { attempts: 3 }));
    assert_eq!(sim.device_stats(1).commands_run, 0);
}

// DESE-D2: presence survives a backend restart, from the broker's retained statuses.
#[test]
fn dese_d2_presence_recovered_from_retained_status() {
    let mut sim = sim(5, Network::PERFECT, 3, BackendSettings::default());
    sim.run_for(Duration::from_secs(5));
    sim.kill(2);
    sim.run_for(Duration::from_secs(1));
    sim.restart_backend(BackendSettings::default());
    let state = |sim: &Sim, i: usize| {
        sim.backend()
            .presence(
                &"org-1".parse().unwrap(),
                &format!("dev-{i}").parse().unwrap(),
            )
            .map(|p| p.state)
    };
    assert_eq!(state(&sim, 0), Some(DeviceState::Online));
    assert_eq!(state(&sim, 1), Some(DeviceState::Online));
    assert_eq!(state(&sim, 2), Some(DeviceState::Offline));
}
