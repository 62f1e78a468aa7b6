//! Any sequence of operations against the device engine (connections, losses, acknowledgements,
//! time, commands run at once or handed out and finished later, and any bytes on its `commands` and `config` topics), with the invariants of
//! `dese_device::model` checked after every one: the ones the property tests check, on inputs
//! libFuzzer steers.
#![no_main]

use arbitrary::Arbitrary;
use dese_device::model::{Harness, Op};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Step {
    Wait(u8),
    Connect,
    Disconnect(u32),
    Ack(u8),
    Command {
        id: u8,
        retained: bool,
        deferred: bool,
    },
    Finish(u8),
    Raw {
        config: bool,
        payload: Vec<u8>,
        retained: bool,
    },
    Reboot,
}

#[derive(Debug, Arbitrary)]
struct Input {
    capacity: u8,
    steps: Vec<Step>,
}

fuzz_target!(|input: Input| {
    let mut harness = Harness::new(usize::from(input.capacity % 32) + 1);
    for step in input.steps.into_iter().take(256) {
        let op = match step {
            // At most 255 s a step: a config can set a 100 ms interval.
            Step::Wait(secs) => Op::Wait(u16::from(secs)),
            Step::Connect => Op::Connect,
            Step::Disconnect(random) => Op::Disconnect(random),
            Step::Ack(share) => Op::Ack(share % 5),
            Step::Command {
                id,
                retained,
                deferred,
            } => Op::Command {
                id: id % 8,
                retained,
                deferred,
            },
            Step::Finish(pick) => Op::Finish(pick),
            Step::Raw {
                config,
                payload,
                retained,
            } => Op::Raw {
                config,
                payload,
                retained,
            },
            Step::Reboot => Op::Reboot,
        };
        if let Err(broken) = harness.apply(&op) {
            panic!("{broken} after {op:?}");
        }
    }
});
