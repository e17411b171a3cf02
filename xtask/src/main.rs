//! `cargo xtask …`: builds the plugins, runs the demo, the tests and the benchmarks.
//!
//! Each task installs what it needs (the `wasm32-wasip2` target) so that it works on a fresh
//! machine; see `cargo xtask help`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Plugin crates and the names their components get in `target/plugins/`.
const PLUGINS: &[(&str, &str)] = &[
    ("threshold_cooldown", "threshold-cooldown"),
    ("opportunistic_miner_fill", "opportunistic-miner-fill"),
    ("predictive_forecast", "predictive-forecast"),
    ("hpa_classic", "hpa-classic"),
    ("policy_fixture", "policy-fixture"),
    ("other_world", "other-world"),
];

const WASM_TARGET: &str = "wasm32-wasip2";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("plugins") => plugins(),
        Some("demo") => {
            plugins()?;
            let mut cmd = cargo();
            cmd.args(["run", "--quiet", "--package", "scalehost", "--", "demo"])
                .args(rest);
            run(&mut cmd)
        }
        Some("test") => {
            plugins()?;
            ensure_prometheus()?;
            run(cargo().args(["test", "--workspace"]).args(rest))?;
            // The policies' own logic, natively.
            run(cargo().current_dir(root().join("plugins")).arg("test"))
        }
        Some("bench") => {
            plugins()?;
            run(cargo().args(["bench", "--package", "scalehost"]).args(rest))
        }
        Some("help") | None => {
            println!("cargo xtask plugins   build every plugin into target/plugins/<name>.wasm");
            println!("cargo xtask demo      build the plugins and run `scalehost demo` [ARGS]");
            println!("cargo xtask test      build the plugins, install prometheus, run every test");
            println!("cargo xtask bench     build the plugins and run the benchmarks [ARGS]");
            Ok(())
        }
        Some(other) => bail!("unknown task {other:?}; see `cargo xtask help`"),
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Builds every plugin for wasm32-wasip2 (release) and copies it to `target/plugins/<name>.wasm`.
fn plugins() -> Result<()> {
    ensure_wasm_target()?;
    let root = root();
    // From inside plugins/, so that its .cargo/config.toml (the guest stack size) applies:
    // cargo reads config from the working directory, not from --manifest-path.
    run(cargo().current_dir(root.join("plugins")).args([
        "build",
        "--quiet",
        "--release",
        "--target",
        WASM_TARGET,
    ]))?;
    let built = root
        .join("plugins/target")
        .join(WASM_TARGET)
        .join("release");
    let out = root.join("target/plugins");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    for (crate_name, name) in PLUGINS {
        let from = built.join(format!("{crate_name}.wasm"));
        let to = out.join(format!("{name}.wasm"));
        std::fs::copy(&from, &to)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    }
    println!("plugins: {} components in {}", PLUGINS.len(), out.display());
    Ok(())
}

/// The Prometheus tests run the real server: Debian's package, installed when missing.
fn ensure_prometheus() -> Result<()> {
    let present = || {
        Command::new("prometheus")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if present() {
        return Ok(());
    }
    println!("installing prometheus (apt-get install -y prometheus)");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "prometheus"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        // A fresh machine may have no package lists yet.
        run(Command::new("apt-get").arg("update"))?;
        if !install() {
            bail!("cannot install prometheus: run `apt-get install -y prometheus` as root");
        }
    }
    if !present() {
        bail!("prometheus installed but `prometheus --version` fails");
    }
    Ok(())
}

fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(out)
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == WASM_TARGET) =>
        {
            Ok(())
        }
        Ok(_) => run(Command::new("rustup").args(["target", "add", WASM_TARGET])),
        // No rustup: trust that the toolchain has the target; the build says so if not.
        Err(_) => Ok(()),
    }
}
