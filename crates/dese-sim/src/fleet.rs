//! The messages of a fleet, ready to publish with any MQTT client: what a thousand devices
//! replaying their outboxes after an outage send, for tests and benchmarks of a backend.

use dese_protocol::{
    Celsius, DeviceId, Message, MessageKind, Metadata, OrgId, Ph, Ppm, Sensors, Telemetry,
    Timestamp, Topic, encode,
};

/// Device `index` of a fleet: `dev-00042`.
pub fn device(index: usize) -> DeviceId {
    // Five digits and a prefix: always a valid id.
    DeviceId::from_string(format!("dev-{index:05}")).expect("a valid id")
}

/// Reading number `seq` of `device`: a valid telemetry message, its timestamp `seq` seconds
/// after 2025-01-27T10:00:00Z (distinct per device and sequence number), its pH and chlorine
/// varying with `seq`. Returns the topic and the payload.
pub fn telemetry(org: &OrgId, device: &DeviceId, seq: u64) -> (String, Vec<u8>) {
    let millis = 1_737_972_000_000 + i64::try_from(seq).unwrap_or(i64::MAX / 2_000) * 1_000;
    let step = (seq % 100) as f64;
    let telemetry = Telemetry {
        device_id: device.clone(),
        timestamp: Timestamp::from_unix_millis(millis).unwrap_or(Timestamp::UNIX_EPOCH),
        organization_id: org.clone(),
        sensors: Sensors {
            ph: Ph::new(6.8 + step / 100.0).expect("in range"),
            chlorine: Ppm::new(1.0 + step / 50.0).expect("in range"),
            temperature: Celsius::new(26.0).expect("in range"),
            orp: Some(650),
            tds: None,
            flow_rate: None,
        },
        metadata: Metadata {
            battery: None,
            signal_strength: None,
            firmware_version: "fleet-1.0.0".into(),
        },
    };
    let topic = Topic::new(org.clone(), device.clone(), MessageKind::Telemetry).to_string();
    let payload = encode(&Message::Telemetry(telemetry)).expect("within the encoder's limits");
    (topic, payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_messages_decode_and_differ() {
        let org: OrgId = "acme".parse().expect("a valid id");
        let (topic, a) = telemetry(&org, &device(7), 0);
        let (_, b) = telemetry(&org, &device(7), 1);
        assert_eq!(topic, "devices/acme/dev-00007/telemetry");
        assert!(dese_protocol::decode(&topic, &a).is_ok());
        assert!(dese_protocol::decode(&topic, &b).is_ok());
        assert_ne!(a, b);
    }
}
