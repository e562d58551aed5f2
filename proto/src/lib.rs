//! Wire formats spoken by Strata: the remote write 1.0/2.0 and remote read protobuf messages as
//! prost-generated types, a zero-copy decoder for the remote-write hot path, and the protocol's
//! header names, content types and versions.

pub mod protocol;
pub mod remote_write;

/// Remote write 1.0 and remote read messages (protobuf package `prometheus`).
pub mod prometheus {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
}

/// Remote write 2.0 messages (protobuf package `io.prometheus.write.v2`).
pub mod write_v2 {
    include!(concat!(env!("OUT_DIR"), "/io.prometheus.write.v2.rs"));
}
