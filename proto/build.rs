//! Compiles the .proto files with protox (a pure-Rust protobuf compiler), so building needs no
//! system `protoc`; tonic-prost-build adds the gRPC clients and servers of the Thanos services.

use std::error::Error;
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "prometheus/types.proto",
    "prometheus/remote.proto",
    "io/prometheus/write/v2/types.proto",
    "thanos/labels.proto",
    "thanos/types.proto",
    "thanos/store.proto",
    "thanos/info.proto",
    "thanos/hints.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let fds = protox::compile(PROTOS, [&root])?;
    // Chunk bytes in StoreAPI messages are `bytes::Bytes`, so a chunk read from a memory-mapped
    // block goes into a response, and out of a decoded one, without a copy; so are those of a
    // streamed remote-read answer, which the sidecar passes on as they came.
    // `thanos.Series`, `prometheus.ChunkedSeries` and `thanos.WriteRequest` are written by hand
    // (src/thanos_series.rs, src/thanos_write.rs): their labels and series stay in wire form.
    // The services encode and decode through src/codec.rs.
    tonic_prost_build::configure()
        .codec_path("crate::codec::Codec")
        .bytes(".thanos.Chunk.data")
        .bytes(".prometheus.Chunk.data")
        .extern_path(".thanos.Series", "crate::thanos_series::Series")
        .extern_path(".prometheus.ChunkedSeries", "crate::thanos_series::ChunkedSeries")
        .extern_path(".thanos.WriteRequest", "crate::thanos_write::WriteRequest")
        .compile_fds(fds)?;
    Ok(())
}
