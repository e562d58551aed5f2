//! The hand-written `thanos.Series` decoder must succeed exactly when prost's generated decoder
//! does, with the same labels and chunks, and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

// Shared with the property tests; this target uses the `thanos.Series` check only.
#[allow(dead_code)]
#[path = "../../tests/common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    common::check_thanos_series(data);
});
