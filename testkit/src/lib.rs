//! What the tests of every strata crate share (a dev-dependency only): finding the programs they
//! run, free ports, child processes that cannot outlive a test, a small HTTP client, polling with
//! deadlines, promtool blocks, a moto S3 server, memcached and Redis servers, a fault-injecting TCP proxy, and fleets of
//! `strata`, Prometheus and Thanos processes.
//!
//! A test that needs a program fails, naming the command that installs or builds it, when the
//! program is missing; it never skips. This crate depends on no strata crate, so every crate can
//! use it.

// Test code: a panic is how a failed step reports, with its message, to the test that called it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod cache_server;
pub mod fleet;
pub mod http;
pub mod metrics;
pub mod moto;
pub mod netns;
pub mod ports;
pub mod process;
pub mod promtool;
pub mod proxy;
pub mod tools;
pub mod wait;

pub use cache_server::CacheServer;
pub use fleet::{Fleet, Node, Slot};
pub use http::url_encode;
pub use moto::{s3_objstore_yaml, Moto};
pub use netns::PrivateNet;
pub use ports::{free_port, free_ports};
pub use process::{send_signal, Proc, Signal};
pub use proxy::FaultProxy;
pub use tools::{peer, tool};
pub use wait::wait_for;
#[cfg(feature = "tokio")]
pub use wait::{wait_for_async, within};
