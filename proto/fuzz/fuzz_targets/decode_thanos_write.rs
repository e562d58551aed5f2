//! The hand-written `thanos.WriteRequest` decoder, its series then decoded by
//! `WriteBatch::decode_v1`, must succeed exactly when prost's generated decoder does, with the
//! same series, tenant and replica, and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

// Shared with the property tests; this target uses the `thanos.WriteRequest` check only.
#[allow(dead_code)]
#[path = "../../tests/common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    common::check_thanos_write(data);
});
