//! `cargo xtask …`: builds the plugins, runs the demo, the tests and the benchmarks.
//!
//! Each task installs what it needs (the `wasm32-wasip2` target) so that it works on a fresh
//! machine; see `cargo xtask help`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

mod c;
mod layers;
mod scripting;

/// Plugin crates and the names their components get in `target/plugins/`.
const PLUGINS: &[(&str, &str)] = &[
    ("threshold_cooldown", "threshold-cooldown"),
    ("opportunistic_miner_fill", "opportunistic-miner-fill"),
    ("predictive_forecast", "predictive-forecast"),
    ("hpa_classic", "hpa-classic"),
    ("policy_fixture", "policy-fixture"),
    ("other_world", "other-world"),
    ("policy_v0_1", "policy-v0-1"),
];

const WASM_TARGET: &str = "wasm32-wasip2";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("plugins") => match rest {
            [] => plugins(),
            [flag, only] if flag == "--only" => plugins_only(only),
            _ => bail!("usage: cargo xtask plugins [--only rust|python|js|c]"),
        },
        Some("demo") => {
            rust_plugins()?;
            let mut cmd = cargo();
            cmd.args(["run", "--quiet", "--package", "scalehost", "--", "demo"])
                .args(rest);
            run(&mut cmd)
        }
        Some("layers") => layers::check(&root()),
        Some("test") => {
            // The cheapest check first: a layering slip fails in seconds, not after the build.
            layers::check(&root())?;
            plugins()?;
            ensure_prometheus()?;
            run(cargo().args(["test", "--workspace"]).args(rest))?;
            // The policies' own logic, natively: Rust, then the other languages' ports.
            run(cargo().current_dir(root().join("plugins")).arg("test"))?;
            c::native_tests(&root().join("examples/c"))?;
            run(Command::new("node")
                .current_dir(root().join("examples/js"))
                .args(["--test", "test/"]))
        }
        Some("bench") => {
            plugins()?;
            run(cargo().args(["bench", "--package", "scalehost"]).args(rest))
        }
        Some("help") | None => {
            println!("cargo xtask plugins   build every plugin into target/plugins/<name>.wasm");
            println!(
                "    [--only rust|c|js|python]  one language (installs its toolchain if missing)"
            );
            println!("cargo xtask demo      build the plugins and run `scalehost demo` [ARGS]");
            println!("cargo xtask layers    check the host's layers, file sizes and public API");
            println!(
                "cargo xtask test      check the layers, build the plugins, install prometheus, run every test"
            );
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

/// Builds every plugin: the Rust ones and the examples in other languages.
fn plugins() -> Result<()> {
    rust_plugins()?;
    for (language, _) in LANGUAGES {
        plugins_only(language)?;
    }
    Ok(())
}

/// The languages beside Rust, each with its `threshold-cooldown` under `examples/<language>/`.
const LANGUAGES: &[(&str, &str)] = &[("c", "c"), ("js", "js"), ("python", "python")];

/// Builds the plugins of one language into `target/plugins/`.
fn plugins_only(language: &str) -> Result<()> {
    let root = root();
    let out = root.join("target/plugins");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let started = std::time::Instant::now();
    let examples = root.join("examples");
    let built = match language {
        "rust" => return rust_plugins(),
        "c" => {
            let to = out.join("threshold-cooldown-c.wasm");
            c::build(&examples.join("c"), &to)?;
            vec![to]
        }
        "js" => {
            let to = out.join("threshold-cooldown-js.wasm");
            scripting::js(&examples.join("js"), None, &to)?;
            // The sandbox test's policy: awaits a timer for as long as it is told.
            let timer = out.join("js-timer.wasm");
            let source = root.join("plugins/fixtures/js-timer/timer.js");
            scripting::js(&examples.join("js"), Some(&source), &timer)?;
            vec![to, timer]
        }
        "python" => {
            let to = out.join("threshold-cooldown-python.wasm");
            scripting::python(&examples.join("python/threshold_cooldown"), &to)?;
            // The sandbox test's policy: tries files, sockets and the environment.
            let escape = out.join("python-escape.wasm");
            scripting::python(&root.join("plugins/fixtures/python-escape"), &escape)?;
            vec![to, escape]
        }
        other => bail!("unknown language {other:?}: rust, python, js or c"),
    };
    for path in built {
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        println!("plugins: {} ({} KiB)", path.display(), size / 1024);
    }
    println!(
        "plugins: {language} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Builds every Rust plugin for wasm32-wasip2 (release) into `target/plugins/<name>.wasm`.
fn rust_plugins() -> Result<()> {
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
    apt_install(&["prometheus"])?;
    if !present() {
        bail!("prometheus installed but `prometheus --version` fails");
    }
    Ok(())
}

/// Installs Debian packages (needs root); updates the package lists once if the first try fails.
fn apt_install(packages: &[&str]) -> Result<()> {
    println!("installing {} (apt-get install -y)", packages.join(" "));
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if install() {
        return Ok(());
    }
    // A fresh machine may have no package lists yet.
    run(Command::new("apt-get").arg("update"))?;
    if !install() {
        bail!(
            "cannot install {}: run `apt-get install -y {}` as root",
            packages.join(" "),
            packages.join(" ")
        );
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
