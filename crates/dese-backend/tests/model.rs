//! Random sequences of commands, answers (on time, late, repeated, from nowhere) and waits
//! against the backend's command tracker, compared with a small model after every step.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dese_backend::{Backend, Event, Inbound, Outcome, Settings};
use dese_protocol::{Action, Timestamp};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Send,
    /// The device answers the command picked by the index, successfully or not.
    Answer(prop::sample::Index, bool),
    /// An answer to an id nobody sent.
    Stray,
    Wait(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Send),
        3 => (any::<prop::sample::Index>(), any::<bool>()).prop_map(|(i, ok)| Op::Answer(i, ok)),
        1 => Just(Op::Stray),
        3 => (0u32..40_000).prop_map(Op::Wait),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Answered,
    TimedOut,
    LateReported,
}

proptest! {
    // DESE-C1, DESE-C2, DESE-C3: every command ends exactly once; an answer before the end
    // completes or fails it; an answer after a timeout is reported late once; repeats are
    // duplicates; answers to unknown ids are reported as such.
    #[test]
    fn every_command_ends_exactly_once(ops in proptest::collection::vec(op(), 1..80), retries in 0u32..3) {
        let mut b = Backend::new(Settings { retries, rate_limit: None, ..Settings::default() });
        let t0 = Instant::now();
        let mut now = t0;
        let utc = Timestamp::from_unix_millis(1_737_972_000_000).unwrap();
        let mut sent: Vec<String> = Vec::new();
        let mut model: BTreeMap<String, State> = BTreeMap::new();
        let topic = "devices/org/dev/command_response";
        let answer = |id: &str, ok: bool| format!(r#"{{"command_id":"{id}","success":{ok},"timestamp":"2025-01-27T10:00:00Z"}}"#);

        for op in ops.into_iter().chain([Op::Wait(10_000_000)]) {
            match op {
                Op::Send => {
                    let id = b.send_command(now, utc, "org".parse().unwrap(), "dev".parse().unwrap(), Action::Reboot).unwrap();
                    prop_assert!(model.insert(id.to_string(), State::Pending).is_none(), "ids are fresh");
                    sent.push(id.to_string());
                }
                Op::Answer(pick, ok) if !sent.is_empty() => {
                    let id = pick.get(&sent).clone();
                    b.handle_message(now, Inbound(0), topic, answer(&id, ok).as_bytes());
                    let state = model[&id];
                    let events: Vec<Event> = std::iter::from_fn(|| b.poll_event()).map(|d| d.event).collect();
                    match state {
                        State::Pending => {
                            let completed = matches!(&events[..], [Event::Command { outcome: Outcome::Completed(_), .. }]);
                            let failed = matches!(&events[..], [Event::Command { outcome: Outcome::Failed(_), .. }]);
                            prop_assert_eq!((completed, failed), (ok, !ok), "{:?}", events);
                            model.insert(id, State::Answered);
                        }
                        State::TimedOut => {
                            prop_assert!(matches!(&events[..], [Event::LateResponse { .. }]), "{events:?}");
                            model.insert(id, State::LateReported);
                        }
                        State::Answered | State::LateReported => {
                            prop_assert!(matches!(&events[..], [Event::Duplicate { .. }]), "{events:?}");
                        }
                    }
                }
                Op::Stray => {
                    b.handle_message(now, Inbound(0), topic, answer("cmd-from-nowhere", true).as_bytes());
                    let events: Vec<Event> = std::iter::from_fn(|| b.poll_event()).map(|d| d.event).collect();
                    prop_assert!(matches!(&events[..], [Event::UnknownResponse { .. }]), "{events:?}");
                }
                Op::Wait(ms) => {
                    let until = now + Duration::from_millis(u64::from(ms));
                    while let Some(at) = b.poll_timeout().filter(|at| *at <= until) {
                        now = at;
                        b.handle_timeout(now);
                        while b.poll_transmit().is_some() {}
                        for event in std::iter::from_fn(|| b.poll_event()).map(|d| d.event) {
                            if let Event::Command { command_id, outcome: Outcome::TimedOut { attempts }, .. } = event {
                                prop_assert_eq!(attempts, retries + 1);
                                let state = model.insert(command_id.to_string(), State::TimedOut);
                                prop_assert_eq!(state, Some(State::Pending), "a command ends once");
                            }
                        }
                    }
                    now = until;
                }
                Op::Answer(..) => {}
            }
            let pending = model.values().filter(|s| **s == State::Pending).count();
            prop_assert_eq!(b.commands_pending(), pending);
        }
        prop_assert!(model.values().all(|s| *s != State::Pending), "everything ended");
    }
}
