#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod controls;
mod water;

pub use controls::{ACID_PUMP, CHLORINE_BAND, CHLORINE_PUMP, Controls, PH_BAND, PumpStates};
pub use water::{PoolModel, Water};
