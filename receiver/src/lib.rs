//! The remote-write receiver.
