//! The firmware's MQTT loop against a broker played by the test, byte by byte: what a real
//! broker would not send (oversized messages, packets a broker never sends) and what the loop
//! must answer.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dese_device::{Device, Instant, Settings};
use dese_esp32c3::client::{Client, Clock, LinkError, MqttOptions, Network, Report};
use dese_esp32c3::mqtt::{DecodeError, Frame, PacketId, encode_publish};
use dese_esp32c3::sensors::SimulatedProbes;
use dese_esp32c3::station::{Outputs, Station};
use dese_protocol::{TelemetryInterval, Timestamp};
use embedded_io_adapters::tokio_1::FromTokio;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

/// Every connection the loop opens is a pipe whose other end goes to the test.
struct Pipes(mpsc::UnboundedSender<DuplexStream>);

impl Network for Pipes {
    type Connection<'a> = FromTokio<DuplexStream>;
    type Error = &'static str;

    async fn connect(&mut self) -> Result<FromTokio<DuplexStream>, &'static str> {
        let (device, broker) = tokio::io::duplex(64 * 1024);
        self.0.send(broker).map_err(|_| "the test ended")?;
        Ok(FromTokio::new(device))
    }
}

struct HostClock(tokio::time::Instant);

impl Clock for HostClock {
    fn now(&self) -> Instant {
        Instant::from_millis(self.0.elapsed().as_millis() as u64)
    }
    fn utc(&self) -> Timestamp {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        Timestamp::from_unix_millis(since.as_millis() as i64).unwrap()
    }
    fn random(&mut self) -> u32 {
        0
    }
    async fn sleep_until(&self, at: Instant) {
        tokio::time::sleep_until(self.0 + Duration::from_millis(at.as_millis())).await;
    }
}

struct NoRelays;

impl Outputs for NoRelays {
    fn set_pump(&mut self, _pump: u32, _on: bool) {}
    fn restart(&mut self) {}
}

/// Reads from the device until `seen` holds for everything read so far (5 s at most),
/// acknowledging each QoS 1 PUBLISH as a broker would once `acked` bytes are behind.
async fn read_until(pipe: &mut DuplexStream, got: &mut Vec<u8>, seen: impl Fn(&[u8]) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut at = 0;
    loop {
        // Acknowledge every complete QoS 1 PUBLISH not yet acknowledged.
        while let Ok(Some(frame)) = Frame::read(&got[at..]) {
            let Some(body) = got.get(at + frame.header_len..at + frame.len()) else {
                break;
            };
            if frame.header & 0xf6 == 0x32 {
                let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
                let id = &body[2 + topic_len..][..2];
                pipe.write_all(&[0x40, 2, id[0], id[1]]).await.unwrap();
            }
            at += frame.len();
        }
        if seen(got) {
            return;
        }
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, pipe.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("not seen in 5 s; got {:?}", String::from_utf8_lossy(got)))
            .unwrap();
        assert!(n > 0, "the device closed the connection; got {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

const COMMANDS: &str = "devices/org-1/esp32c3-1/commands";

fn command(id: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_publish(
        PacketId::new(id).unwrap(),
        COMMANDS,
        payload,
        false,
        &mut out,
    )
    .unwrap();
    out
}

#[tokio::test]
async fn oversized_and_hostile_packets_are_answered_counted_and_survived() {
    let (pipes, mut connections) = mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let device = tokio::spawn(async move {
        let clock = HostClock(tokio::time::Instant::now());
        let mut settings = Settings::new(
            "org-1".parse().unwrap(),
            "esp32c3-1".parse().unwrap(),
            "0.1.0",
        );
        settings.telemetry_interval = TelemetryInterval::new(60_000).unwrap();
        settings.backoff.base = Duration::from_millis(50);
        let mut device = Device::new(settings, clock.now());
        let mut station = Station::new(SimulatedProbes::new(1), NoRelays);
        let mut client = Client::new(MqttOptions {
            max_incoming: 1024,
            ..MqttOptions::default()
        });
        let mut reports = Vec::new();
        let mut stop = Box::pin(async {
            let _ = stopped.await;
        });
        client
            .run(
                &mut device,
                &mut station,
                &mut Pipes(pipes),
                &mut { clock },
                &mut stop,
                &mut |r| reports.push(r),
            )
            .await;
        (client.stats(), device.stats(), reports)
    });

    let mut broker = connections.recv().await.unwrap();
    let mut got = Vec::new();
    read_until(&mut broker, &mut got, |b| contains(b, b"org-1:esp32c3-1")).await;
    assert_eq!(got[0], 0x10, "CONNECT first");
    broker.write_all(&[0x20, 2, 0, 0]).await.unwrap();
    // SUBSCRIBE to its two topics, and the retained online status.
    read_until(&mut broker, &mut got, |b| {
        contains(b, b"devices/org-1/esp32c3-1/config") && contains(b, b"\"online\"")
    })
    .await;
    broker.write_all(&[0x90, 4, 0, 1, 1, 1]).await.unwrap();

    // 5 KB on the commands topic, five times the loop's inbox: acknowledged, skipped, counted.
    let oversized = command(77, &vec![b' '; 5000]);
    broker.write_all(&oversized).await.unwrap();
    // Then a real command: it runs and is answered.
    let set_target = br#"{"command_id":"cmd-1","device_id":"esp32c3-1","command":"set_ph_target","parameters":{"target_ph":7.2},"timestamp":"2025-01-27T10:00:00Z"}"#;
    broker.write_all(&command(78, set_target)).await.unwrap();
    got.clear();
    read_until(&mut broker, &mut got, |b| {
        contains(b, &[0x40, 2, 0, 77]) && contains(b, &[0x40, 2, 0, 78]) && contains(b, b"cmd-1")
    })
    .await;
    assert!(contains(&got, b"devices/org-1/esp32c3-1/command_response"));
    assert!(
        contains(&got, b"\"success\":true"),
        "{}",
        String::from_utf8_lossy(&got)
    );

    // A CONNECT from the broker is not MQTT: the loop drops the link and connects again.
    broker.write_all(&[0x10, 0]).await.unwrap();
    let mut again = tokio::time::timeout(Duration::from_secs(5), connections.recv())
        .await
        .expect("a new connection after the protocol error")
        .unwrap();
    got.clear();
    read_until(&mut again, &mut got, |b| contains(b, b"org-1:esp32c3-1")).await;
    // A command right behind the CONNACK, in the same segment and before any SUBACK: it runs.
    let set_target_again = String::from_utf8(set_target.to_vec())
        .unwrap()
        .replace("cmd-1", "cmd-2");
    let mut segment = vec![0x20, 2, 0, 0];
    segment.extend(command(79, set_target_again.as_bytes()));
    again.write_all(&segment).await.unwrap();
    read_until(&mut again, &mut got, |b| {
        contains(b, b"\"online\"") && contains(b, b"cmd-2") && contains(b, &[0x40, 2, 0, 79])
    })
    .await;

    stop.send(()).unwrap();
    // The goodbye: the offline status, retained, then DISCONNECT once it is acknowledged.
    got.clear();
    read_until(&mut again, &mut got, |b| b.ends_with(&[0xe0, 0])).await;
    let status = b"devices/org-1/esp32c3-1/status";
    let at = got.windows(status.len()).position(|w| w == status).unwrap();
    assert!(contains(&got[at..], b"\"offline\""));
    assert_eq!(
        got[at - 4],
        0x33,
        "QoS 1, retained (a two-byte length before the topic)"
    );

    let (link, stats, reports) = device.await.unwrap();
    assert_eq!(link.oversized, 1);
    assert_eq!(link.connections, 2);
    assert_eq!(link.lost, 1);
    assert!(reports.contains(&Report::Oversized {
        topic: COMMANDS.into(),
        len: oversized.len()
    }));
    assert!(reports.contains(&Report::Disconnected(LinkError::Protocol(
        DecodeError::Unexpected { header: 0x10 }
    ))));
    assert_eq!(stats.commands_run, 2);
    assert_eq!(stats.pending, 0);
    assert_eq!(reports.last(), Some(&Report::Stopped));
}
