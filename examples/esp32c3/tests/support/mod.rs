//! What the host tests share.

#![allow(dead_code)] // each test binary uses its own part

pub mod flash;
