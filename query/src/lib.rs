//! PromQL over any [`strata_storage::Storage`], and the Prometheus HTTP API on top of it.
//!
//! The engine parses with the promql-parser crate (errors worded and placed as Prometheus does,
//! see [`parse`]) and evaluates the AST itself, step-wise over whole vectors. See README.md for
//! what this crate owns.

pub mod api;
pub mod engine;
pub mod frontend;
pub mod parse;
mod ui;
pub mod value;
