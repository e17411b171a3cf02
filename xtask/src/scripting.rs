//! Python (componentize-py from PyPI) and JavaScript (componentize-js from npm): each toolchain
//! is installed into the project when missing, pinned, and builds a policy component.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{root, run};

/// The componentize-py release the Python example is built and tested with.
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// Builds the Python policy whose `app` module is in `source_dir` into the component `out`.
pub fn python(source_dir: &Path, out: &Path) -> Result<()> {
    let root = root();
    let venv = root.join("target/toolchains/python");
    let componentize = venv.join("bin/componentize-py");
    let installed = Command::new(&componentize)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("0.25.1"));
    if !installed {
        println!("installing {COMPONENTIZE_PY} into {}", venv.display());
        run(Command::new(python3()?).args(["-m", "venv"]).arg(&venv))?;
        run(Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            COMPONENTIZE_PY,
        ]))?;
    }
    // The WIT and the source are given relative to the root, so the component does not depend
    // on where the checkout sits.
    run(Command::new(&componentize)
        .current_dir(&root)
        .args([
            "-d",
            "wit/policy@0.2.0",
            "-w",
            "policy",
            "componentize",
            "app",
            "-p",
        ])
        .arg(relative(&root, source_dir)?)
        .arg("-o")
        .arg(out))
}

/// Builds a JavaScript policy with the example's `build.mjs` into the component `out`, after
/// `npm ci` in `source_dir` when its pinned packages are not installed; `source` is the entry
/// module (default: the example's `threshold-cooldown.js`).
pub fn js(source_dir: &Path, source: Option<&Path>, out: &Path) -> Result<()> {
    let lock = source_dir.join("package-lock.json");
    let installed_lock = source_dir.join("node_modules/.package-lock.json");
    let stale = match (std::fs::metadata(&lock), std::fs::metadata(&installed_lock)) {
        (Ok(lock), Ok(installed)) => lock.modified()? > installed.modified()?,
        _ => true,
    };
    if stale {
        println!(
            "installing the JavaScript toolchain (npm ci in {})",
            source_dir.display()
        );
        run(Command::new("npm")
            .current_dir(source_dir)
            .args(["ci", "--no-audit", "--no-fund"]))?;
    }
    run(Command::new("node")
        .current_dir(source_dir)
        .arg("build.mjs")
        .arg(out)
        .args(source))
}

fn python3() -> Result<&'static str> {
    for candidate in ["python3", "python"] {
        if Command::new(candidate)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Ok(candidate);
        }
    }
    bail!("python3 is needed to install componentize-py (apt-get install -y python3 python3-venv)")
}

fn relative<'a>(root: &Path, path: &'a Path) -> Result<&'a Path> {
    path.strip_prefix(root)
        .with_context(|| format!("{} is not inside {}", path.display(), root.display()))
}
