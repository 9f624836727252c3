//! The container shim as its own binary (the kubelet's tests use it; `virt-cluster` runs the
//! same code as `virt-cluster kubelet --shim DIR`).

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: kvrs-shim ATTEMPT_DIR");
        std::process::exit(2);
    };
    std::process::exit(kubevirt_embedded_kubelet::shim::main(std::path::Path::new(
        &dir,
    )));
}
