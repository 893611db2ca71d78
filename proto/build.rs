//! Compiles `proto/*.proto` with protox (pure Rust: no system `protoc` needed).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/chunk.proto", "proto/meta.proto", "proto/data.proto"];
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".")
        .codec_path("crate::codec::ShaleCodec")
        .include_file("protos.rs")
        .compile_fds(fds)?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
