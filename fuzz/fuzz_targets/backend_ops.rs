//! Any sequence of operations against the backend engine's three models
//! (`dese_backend::model`): the command tracker, the outbox, and the acknowledgement ledger,
//! with any bytes on any device topic arriving in between. The invariants the property tests
//! check, on inputs libFuzzer steers.
#![no_main]

use std::time::Instant;

use arbitrary::Arbitrary;
use dese_backend::model::{CommandOp, Commands, Ledger, LedgerOp, Outbox, OutboxOp};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Input {
    Commands {
        retries: u8,
        ops: Vec<(u8, u16, bool)>,
    },
    Outbox {
        capacity: u8,
        window: u8,
        retries: u8,
        ops: Vec<(u8, u16)>,
    },
    Ledger {
        window: u8,
        ops: Vec<(u8, u16, Vec<u8>)>,
    },
}

fn check(result: Result<(), String>) {
    if let Err(broken) = result {
        panic!("{broken}");
    }
}

fuzz_target!(|input: Input| {
    let now = Instant::now();
    match input {
        Input::Commands { retries, ops } => {
            let mut model = Commands::new(u32::from(retries % 3), now);
            for (kind, n, ok) in ops.into_iter().take(200) {
                let op = match kind % 4 {
                    0 => CommandOp::Send,
                    1 => CommandOp::Answer(usize::from(n), ok),
                    2 => CommandOp::Stray,
                    _ => CommandOp::Wait(u32::from(n) * 4),
                };
                check(model.apply(&op));
            }
            check(model.finish());
        }
        Input::Outbox {
            capacity,
            window,
            retries,
            ops,
        } => {
            let mut model = Outbox::new(
                usize::from(capacity % 16) + 1,
                usize::from(window % 4) + 1,
                u32::from(retries % 3),
                now,
            );
            for (kind, n) in ops.into_iter().take(200) {
                let op = match kind % 9 {
                    0 => OutboxOp::Command,
                    1 => OutboxOp::Config,
                    2 => OutboxOp::Connect,
                    3 => OutboxOp::Disconnect,
                    4 => OutboxOp::Transmit((n % 8) as u8),
                    5 => OutboxOp::Acked(usize::from(n)),
                    6 => OutboxOp::Answer(usize::from(n)),
                    7 => OutboxOp::AckAll,
                    _ => OutboxOp::Wait(u32::from(n)),
                };
                check(model.apply(&op));
            }
            check(model.finish());
        }
        Input::Ledger { window, ops } => {
            let mut model = Ledger::new(usize::from(window % 8) + 1, now);
            for (kind, n, payload) in ops.into_iter().take(200) {
                let op = match kind % 5 {
                    0 => LedgerOp::Reading((n % 6) as u8),
                    1 => LedgerOp::Invalid,
                    2 => LedgerOp::Raw {
                        kind: (n % 6) as u8,
                        payload,
                    },
                    3 => LedgerOp::Confirm(usize::from(n)),
                    _ => LedgerOp::Reconnect,
                };
                check(model.apply(&op));
            }
            check(model.finish());
        }
    }
});
