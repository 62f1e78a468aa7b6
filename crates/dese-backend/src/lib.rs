#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
// A std crate: portability to no_std is not a goal here, so std paths are the clear ones.
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)]

mod backend;
mod limit;

pub use backend::{
    Backend, Counters, DeviceKey, DropReason, Event, Outcome, Outgoing, Presence, SendError,
    Settings,
};
pub use limit::RateLimit;
