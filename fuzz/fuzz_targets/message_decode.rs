//! The decoder on any payload for any message kind: no panic, every error has a message, and a
//! decoded message encodes and decodes back to itself.
#![no_main]

use arbitrary::Arbitrary;
use dese_protocol::{Decoder, Limits, MessageKind, Topic, encode};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    kind: u8,
    small_limits: bool,
    payload: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let kind = MessageKind::ALL[usize::from(input.kind) % MessageKind::ALL.len()];
    let topic: Topic = format!("devices/org-123/esp32-001/{kind}")
        .parse()
        .expect("a valid topic");
    let decoder = if input.small_limits {
        Decoder::new().with_limits(Limits {
            max_payload: 256,
            max_depth: 3,
        })
    } else {
        Decoder::new()
    };
    match decoder.decode_message(&topic, input.payload) {
        Ok(message) => {
            // Telemetry may exceed the encoder's budget only if the decoder's limit allows it.
            if let Ok(bytes) = encode(&message) {
                let again = Decoder::new()
                    .decode_message(&topic, &bytes)
                    .expect("re-decode");
                assert_eq!(again, message);
            }
        }
        Err(error) => {
            assert!(!error.to_string().is_empty());
            let _ = error.reason();
        }
    }
});
