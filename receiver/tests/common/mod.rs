//! Remote-write bodies for the receiver's tests.

#![allow(dead_code)] // Each test binary uses its own subset.

use prost::Message;
use strata_proto::prometheus as v1;

/// Snappy's raw block format, as remote write compresses bodies.
pub fn snappy(b: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(b).expect("snappy compresses any input")
}

/// A remote-write 1.0 body holding `timeseries`.
pub fn v1_body(timeseries: Vec<v1::TimeSeries>) -> Vec<u8> {
    snappy(&v1::WriteRequest { timeseries, ..Default::default() }.encode_to_vec())
}
