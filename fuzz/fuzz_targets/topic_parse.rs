//! Topics and filters: no input panics, and whatever parses displays back to itself.
#![no_main]

use dese_protocol::{Topic, TopicFilter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    if let Ok(topic) = Topic::parse(text) {
        assert_eq!(topic.to_string(), text);
        assert!(TopicFilter::topic(&topic).matches(&topic));
    }
    if let Ok(filter) = TopicFilter::parse(text) {
        let shown = filter.to_string();
        assert_eq!(TopicFilter::parse(&shown).as_ref(), Ok(&filter), "{shown}");
    }
});
