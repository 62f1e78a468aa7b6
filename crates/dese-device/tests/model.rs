//! Random operation sequences against the device engine, with invariants checked after every
//! step (`dese_device::model`, which the fuzz target `device_ops` checks too): nothing the
//! engine accepted is lost silently, no command runs twice, and readings are never reordered.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

use dese_device::model::{Harness, Op};
use proptest::prelude::*;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u16..200).prop_map(Op::Wait),
        1 => Just(Op::Connect),
        1 => any::<u32>().prop_map(Op::Disconnect),
        2 => (0u8..=4).prop_map(Op::Ack),
        2 => (0u8..5, proptest::bool::weighted(0.2), any::<bool>())
            .prop_map(|(id, retained, deferred)| Op::Command { id, retained, deferred }),
        1 => any::<u8>().prop_map(Op::Finish),
        1 => (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..64), any::<bool>())
            .prop_map(|(config, payload, retained)| Op::Raw { config, payload, retained }),
        1 => Just(Op::Reboot),
    ]
}

proptest! {
    // DESE-C5, DESE-D7, DESE-D9, across reboots too
    #[test]
    fn invariants_hold_under_any_sequence(ops in proptest::collection::vec(op(), 1..120), capacity in 1usize..20) {
        let mut harness = Harness::new(capacity);
        for op in &ops {
            harness.apply(op).map_err(TestCaseError::fail)?;
        }
    }
}
