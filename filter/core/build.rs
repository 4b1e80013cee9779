//! Generates the Rust types of the filter <-> control plane protocol.
//!
//! `protox` compiles the proto files in pure Rust, so no `protoc` binary is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");
    let filter_proto = proto_root.join("tollgate/v1/filter.proto");

    println!("cargo:rerun-if-changed={}", filter_proto.display());

    let file_descriptors = protox::compile([&filter_proto], [&proto_root])?;
    prost_build::Config::new().compile_fds(file_descriptors)?;
    Ok(())
}
