//! Builds every component of `plugins/` for wasm32-wasip2 and tells the tests where they are.
//!
//! The components are never checked in: this script runs `cargo build` on the plugins workspace
//! (its own target dir, `plugins/target`, shared with `cargo xtask plugins`) whenever a plugin,
//! the SDK or the WIT changes.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (crate name as built, constant name).
const COMPONENTS: &[(&str, &str)] = &[
    ("threshold_cooldown", "THRESHOLD_COOLDOWN"),
    ("opportunistic_miner_fill", "OPPORTUNISTIC_MINER_FILL"),
    ("predictive_forecast", "PREDICTIVE_FORECAST"),
    ("hpa_classic", "HPA_CLASSIC"),
    ("policy_fixture", "POLICY_FIXTURE"),
    ("other_world", "OTHER_WORLD"),
    ("policy_v0_1", "POLICY_V0_1"),
];

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root");
    for watched in ["plugins", "sdk/src", "sdk/Cargo.toml", "wit"] {
        rerun_if_changed_under(&root.join(watched));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // From inside plugins/, so that its .cargo/config.toml (the guest stack size) applies:
    // cargo reads config from the working directory, not from --manifest-path.
    let status = Command::new(cargo)
        .current_dir(root.join("plugins"))
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        // The outer build's flags and target dir are not the plugins'.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_PROFILE_RELEASE_DEBUG")
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "building the plugins for wasm32-wasip2 failed (is the target installed? `rustup target add wasm32-wasip2`)"
    );
    let built = root.join("plugins/target/wasm32-wasip2/release");
    let mut code = String::new();
    for (crate_name, constant) in COMPONENTS {
        let path: PathBuf = built.join(format!("{crate_name}.wasm"));
        assert!(path.is_file(), "{} was not built", path.display());
        code.push_str(&format!(
            "/// `{crate_name}.wasm`.\npub const {constant}: &str = {:?};\n",
            path.display().to_string()
        ));
    }
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("components.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}

fn rerun_if_changed_under(path: &Path) {
    if path.is_dir() {
        let Ok(entries) = std::fs::read_dir(path) else {
            return;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rerun_if_changed_under(&p);
        }
    } else {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
