//! Compiles proto/census/v1 with protox (pure Rust), so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    let files = ["proto/census/v1/census.proto", "proto/runtime/v1/cri.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    // Every message derives Serialize: record bodies render as the `fields` object of
    // scan output and of the HTTP API.
    let builder = tonic_prost_build::configure()
        .btree_map(".")
        .type_attribute(".census.v1", "#[derive(serde::Serialize)]");
    builder.compile_fds(descriptors)?;
    Ok(())
}
