//! Compile the `.proto` files with protox (pure Rust, no `protoc` needed) and generate the
//! tonic/prost code plus a file descriptor set for gRPC reflection.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/flotilla/repo/v1/repo.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("flotilla_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    // BTreeMap for every map field: the encoding is then byte-for-byte deterministic, which the
    // cache keys (a digest of the encoded source) rely on across processes.
    tonic_prost_build::configure()
        .btree_map(".")
        .compile_fds(fds)?;
    Ok(())
}
