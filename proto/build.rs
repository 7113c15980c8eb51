//! Compiles proto/census/v1 with protox (pure Rust), so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/census/v1/census.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    let mut builder = tonic_prost_build::configure().btree_map(".");
    // Record bodies render as the `fields` object of scan output and of the HTTP API.
    for body in [
        "Host",
        "Process",
        "ListeningPort",
        "Package",
        "KernelModule",
    ] {
        builder =
            builder.type_attribute(format!(".census.v1.{body}"), "#[derive(serde::Serialize)]");
    }
    builder.compile_fds(descriptors)?;
    Ok(())
}
