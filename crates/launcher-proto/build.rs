//! Compiles `proto/launcher.proto` with protox (a protobuf compiler in Rust), so building needs
//! no `protoc` on the machine, then generates the prost messages and the tonic client and server.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/launcher.proto");
    let descriptors = protox::compile(["proto/launcher.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
