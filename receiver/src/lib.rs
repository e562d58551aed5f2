//! The remote-write receiver.

pub mod loadgen;
