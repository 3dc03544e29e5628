//! Compiles the .proto files with protox (pure Rust), so building needs no system protoc.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["trafficbench/v1/tbd.proto"];
    println!("cargo:rerun-if-changed=trafficbench");
    let fds = protox::compile(files, ["."])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Maps in a stable order, for JSON output and tests.
        .btree_map(".")
        .compile_fds(fds)?;
    Ok(())
}
