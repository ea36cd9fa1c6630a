//! Compiles the protobuf definitions with a vendored protoc, so no system protoc is needed.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let include = protoc_bin_vendored::include_path()?;
    let protos = [
        PathBuf::from("proto/statehouse/v1/statehouse.proto"),
        PathBuf::from("proto/replayscope/v1/archive.proto"),
        PathBuf::from("proto/replayscope/v1/replay.proto"),
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("replayscope_descriptor.bin"))
        .compile_with_config(config, &protos, &[PathBuf::from("proto"), include])?;
    Ok(())
}
