//! The hand-written v1 decoder must succeed exactly when prost's generated decoder does (plus the
//! symbol-table rules for v2), with the same content, and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

// Shared with the property tests; each target uses the checks for one version only.
#[allow(dead_code)]
#[path = "../../tests/common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    common::check_v1(data);
});
