//! Wire formats spoken by Strata: the remote write 1.0/2.0 and remote read protobuf messages as
//! prost-generated types, a zero-copy decoder for the remote-write hot path, and the protocol's
//! header names, content types and versions.

pub mod codec;
pub mod protocol;
pub mod remote_write;
mod thanos_series;
mod thanos_write;

/// The message of a length-delimited field at the start of `buf`, when the whole of it is in
/// the buffer's current chunk: the bytes the length prefix takes and the message. The
/// hand-written decoders take their fast path on it and leave everything else to prost.
fn contiguous_message<B: prost::bytes::Buf>(buf: &B) -> Option<(usize, &[u8])> {
    let chunk = buf.chunk();
    let mut rest = chunk;
    let len = usize::try_from(prost::encoding::decode_varint(&mut rest).ok()?).ok()?;
    Some((chunk.len() - rest.len(), rest.get(..len)?))
}

/// Remote write 1.0 and remote read messages (protobuf package `prometheus`).
pub mod prometheus {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
    pub use crate::thanos_series::ChunkedSeries;
}

/// Remote write 2.0 messages (protobuf package `io.prometheus.write.v2`).
pub mod write_v2 {
    include!(concat!(env!("OUT_DIR"), "/io.prometheus.write.v2.rs"));
}

/// The Thanos gRPC APIs (protobuf package `thanos`): the StoreAPI (`Store`: Series, LabelNames,
/// LabelValues) and the receive forwarding API (`WriteableStore`), with clients and servers.
pub mod thanos {
    include!(concat!(env!("OUT_DIR"), "/thanos.rs"));
    pub use crate::thanos_series::{Series, SeriesLabels};
    pub use crate::thanos_write::WriteRequest;

    /// The Info API every StoreAPI endpoint serves (protobuf package `thanos.info`).
    pub mod info {
        include!(concat!(env!("OUT_DIR"), "/thanos.info.rs"));
    }
}

/// Store-gateway hints carried in the StoreAPI's `Any` fields (protobuf package `hintspb`).
pub mod hintspb {
    include!(concat!(env!("OUT_DIR"), "/hintspb.rs"));
}
