//! Integration tests: objstore config errors, a FILESYSTEM bucket end to end, and the shipper
//! against a real S3-protocol server (moto) with real Prometheus blocks (promtool).

mod common;
mod config;
mod filesystem;
mod s3;
