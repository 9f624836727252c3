//! scripts/guest-image: with nothing changed it rebuilds nothing, quickly, and prints the outputs.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Result;
use common::image;
use kubevirt_rs_guest::GuestImage;

#[test]
fn unchanged_inputs_rebuild_nothing_and_print_the_outputs() -> Result<()> {
    let image = image();
    let started = Instant::now();
    let out = Command::new(GuestImage::script())
        .env_remove("KUBEVIRT_RS_REGISTRY")
        .output()?;
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let vars: HashMap<&str, &str> = stdout.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(vars.get("id"), Some(&image.build_id.as_str()), "{stdout}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("built"),
        "it rebuilt: {stdout}"
    );
    for key in ["qcow2", "kernel", "initrd", "oci"] {
        let path = vars.get(key).map(Path::new);
        assert!(path.is_some_and(Path::exists), "{key}: {stdout}");
    }
    assert_eq!(std::fs::canonicalize(vars["qcow2"])?, image.qcow2);
    assert_eq!(
        vars.get("image"),
        Some(&"127.0.0.1:5000/kubevirt-rs/guest:latest")
    );
    // "Instant": well under a second on an idle machine; generous for a loaded one.
    assert!(took < Duration::from_secs(5), "a no-op run took {took:?}");
    Ok(())
}
