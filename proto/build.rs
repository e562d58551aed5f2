//! Compiles the .proto files with protox (a pure-Rust protobuf compiler), so building needs no
//! system `protoc`.

use std::error::Error;
use std::path::PathBuf;

const PROTOS: &[&str] = &["prometheus/types.proto", "prometheus/remote.proto", "io/prometheus/write/v2/types.proto"];

fn main() -> Result<(), Box<dyn Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let fds = protox::compile(PROTOS, [&root])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
