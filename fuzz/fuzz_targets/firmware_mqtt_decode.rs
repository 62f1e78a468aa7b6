//! The firmware's MQTT 3.1.1 decoder (`examples/esp32c3/src/mqtt.rs`) on any bytes a broker or
//! a network could hand it: no panic; a packet it decodes took no more bytes than it was given,
//! at least its fixed header; a PUBLISH's topic and payload lie inside those bytes; and with
//! more bytes after a complete packet, the same packet decodes (the length decides, not what
//! follows).
#![no_main]

use dese_esp32c3::mqtt::{Incoming, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(Some((packet, used))) = decode(data) else {
        return;
    };
    assert!(
        (2..=data.len()).contains(&used),
        "took {used} of {}",
        data.len()
    );
    if let Incoming::Publish(publish) = &packet {
        let inside = |part: &[u8]| {
            let (start, end) = (part.as_ptr() as usize, part.as_ptr() as usize + part.len());
            let range = data.as_ptr() as usize..=data.as_ptr() as usize + used;
            part.is_empty() || (range.contains(&start) && range.contains(&end))
        };
        assert!(inside(publish.topic.as_bytes()) && inside(publish.payload));
    }
    let mut longer = data[..used].to_vec();
    longer.extend_from_slice(&[0x30, 0xff, 0xff]);
    let again = decode(&longer).expect("the same packet decodes again");
    assert_eq!(again.map(|(_, n)| n), Some(used));
});
