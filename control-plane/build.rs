//! Compiles the filter <-> control plane protocol with a pure-Rust protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = "../proto";
    let proto_file = "../proto/tollgate/v1/filter.proto";
    println!("cargo:rerun-if-changed={proto_file}");
    let descriptors = protox::compile([proto_file], [proto_root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
