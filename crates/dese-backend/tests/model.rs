//! Random sequences against the backend engine's command tracker, its outbox and its
//! acknowledgement ledger, each compared with a small model after every step
//! (`dese_backend::model`, which the fuzz target `backend_ops` checks too).

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

use std::time::Instant;

use dese_backend::model::{CommandOp, Commands, Ledger, LedgerOp, Outbox, OutboxOp};
use proptest::prelude::*;

fn command_op() -> impl Strategy<Value = CommandOp> {
    prop_oneof![
        2 => Just(CommandOp::Send),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(i, ok)| CommandOp::Answer(i, ok)),
        1 => Just(CommandOp::Stray),
        3 => (0u32..40_000).prop_map(CommandOp::Wait),
    ]
}

fn outbox_op() -> impl Strategy<Value = OutboxOp> {
    prop_oneof![
        3 => Just(OutboxOp::Command),
        2 => Just(OutboxOp::Config),
        1 => Just(OutboxOp::Connect),
        1 => Just(OutboxOp::Disconnect),
        3 => (1u8..6).prop_map(OutboxOp::Transmit),
        3 => any::<usize>().prop_map(OutboxOp::Acked),
        1 => any::<usize>().prop_map(OutboxOp::Answer),
        1 => Just(OutboxOp::AckAll),
        2 => (0u32..20_000).prop_map(OutboxOp::Wait),
    ]
}

fn ledger_op() -> impl Strategy<Value = LedgerOp> {
    prop_oneof![
        4 => (0u8..6).prop_map(LedgerOp::Reading),
        1 => Just(LedgerOp::Invalid),
        3 => any::<usize>().prop_map(LedgerOp::Confirm),
        1 => Just(LedgerOp::Reconnect),
    ]
}

proptest! {
    // DESE-C1, DESE-C2, DESE-C3: every command ends exactly once; an answer before the end
    // completes or fails it; an answer after a timeout is reported late once; repeats are
    // duplicates; answers to unknown ids are reported as such.
    #[test]
    fn every_command_ends_exactly_once(ops in proptest::collection::vec(command_op(), 1..80), retries in 0u32..3) {
        let mut model = Commands::new(retries, Instant::now());
        for op in &ops {
            model.apply(op).map_err(TestCaseError::fail)?;
        }
        model.finish().map_err(TestCaseError::fail)?;
    }

    // DESE-C1, DESE-D9: the backend's outbox on virtual time, against a model. It stays within
    // its capacity (plus one retry copy per pending command) and its in-flight window; on each
    // connection it hands messages out in order; an acknowledged message is never published
    // again; a command that timed out is never published afterwards; in the end every config
    // went out and every command ended.
    #[test]
    fn the_outbox_is_bounded_ordered_and_never_publishes_a_withdrawn_command(
        ops in proptest::collection::vec(outbox_op(), 1..120),
        capacity in 1usize..12,
        window in 1usize..4,
        retries in 0u32..3,
    ) {
        let mut model = Outbox::new(capacity, window, retries, Instant::now());
        for op in &ops {
            model.apply(op).map_err(TestCaseError::fail)?;
        }
        model.finish().map_err(TestCaseError::fail)?;
    }

    // DESE-D9: the acknowledgements to the broker, against a model. On each connection they go
    // out in arrival order; a message goes out only once its own event, or for a copy its
    // original's, is confirmed (or it needed none); the receive window holds; and once the
    // application has confirmed everything, everything of the connection has gone out.
    #[test]
    fn acknowledgements_follow_arrival_order_and_confirmation(
        ops in proptest::collection::vec(ledger_op(), 1..150),
        window in 1usize..8,
    ) {
        let mut model = Ledger::new(window, Instant::now());
        for op in &ops {
            model.apply(op).map_err(TestCaseError::fail)?;
        }
        model.finish().map_err(TestCaseError::fail)?;
    }
}
