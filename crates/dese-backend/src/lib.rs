#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
// A std crate: portability to no_std is not a goal here, so std paths are the clear ones.
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)]

mod backend;
mod devices;
mod inbox;
mod limit;
#[cfg(feature = "model")]
pub mod model;
mod outbox;

pub use backend::{
    Backend, Counters, Delivered, DeviceKey, DropError, DropReason, Event, Outcome, Presence,
    SendError, Settings, Transmit,
};
// The devices' reconnection rule, and their name for a message handed to the transport: one
// type each for both engines.
pub use dese_device::{Backoff, MessageId, SettingsError};
pub use inbox::{Ack, Inbound};
pub use limit::RateLimit;
