#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod app;
mod backoff;
mod dedup;
mod device;
#[cfg(feature = "model")]
pub mod model;
mod outbox;
mod persist;
mod settings;
mod time;

pub use app::{CommandHandler, Readings, SensorReader};
pub use backoff::Backoff;
pub use device::{ConnectOptions, Device, Event, NotRunning, Settings, Stats, Transmit, Will};
pub use outbox::MessageId;
pub use persist::{Persist, Saved, SavedMessage};
pub use settings::{LONGEST, SettingsError};
pub use time::Instant;
