//! The C toolchain: Debian's clang for wasm32-wasi, bindings from wit-bindgen's C generator, and
//! wit-component to wrap the core module into a component.
//!
//! wasi-libc targets WASI preview 1; wasmtime's preview-1 adapter (the same version as the
//! host's wasmtime) turns those imports into WASI 0.2 ones, so `printf` lands in the host log.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wit_component::ComponentEncoder;
use wit_parser::Resolve;

use crate::{apt_install, root, run};

/// clang and the wasm linker as Debian names them.
const CLANG: &str = "clang-14";
/// clang-14 finds `wasm-ld` beside itself in LLVM's bin dir (lld-14 puts it there).
const WASM_LD: &str = "/usr/lib/llvm-14/bin/wasm-ld";
/// Debian's wasi-libc sysroot lives under /usr (headers in include/wasm32-wasi).
const WASI_LIBC: &str = "/usr/lib/wasm32-wasi/libc.a";
/// clang's builtins for wasm32 (from libclang-rt-14-dev-wasm32).
const BUILTINS: &str = "/usr/lib/llvm-14/lib/clang/14.0.6/lib/wasi/libclang_rt.builtins-wasm32.a";
const PACKAGES: &[&str] = &[
    "clang-14",
    "lld-14",
    "wasi-libc",
    "libclang-rt-14-dev-wasm32",
];

/// Builds the C policy in `source_dir` (every `*.c` there) into the component `out`.
pub fn build(source_dir: &Path, out: &Path) -> Result<()> {
    ensure_toolchain()?;
    let work = work_dir(source_dir)?;
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let (resolve, world) = policy_world(&root())?;
    generate_bindings(&resolve, world, &work)?;
    let sources = sources(source_dir)?;
    let module = work.join("module.wasm");
    let mut clang = Command::new(CLANG);
    clang
        .args(["--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-std=c11"])
        .args(["-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter"])
        .arg("-mexec-model=reactor")
        .arg("-I")
        .arg(&work)
        .args(&sources)
        .arg(work.join("policy.c"))
        // Carries the world's type in a custom section, which the encoder below reads (so the
        // module must never be stripped).
        .arg(work.join("policy_component_type.o"))
        .arg("-o")
        .arg(&module);
    run(&mut clang)?;

    let bytes =
        std::fs::read(&module).with_context(|| format!("cannot read {}", module.display()))?;
    let component = ComponentEncoder::default()
        .validate(true)
        .module(&bytes)?
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .encode()
        .context("cannot make a component of the C module")?;
    std::fs::write(out, component).with_context(|| format!("cannot write {}", out.display()))
}

/// Where the bindings and the objects of the C policy in `source_dir` go.
fn work_dir(source_dir: &Path) -> Result<std::path::PathBuf> {
    let name = source_dir
        .file_name()
        .context("the C source dir has a name")?;
    Ok(root().join("target/c").join(name))
}

/// The policy's `*.c` files (not its tests), in a stable order.
fn sources(source_dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut sources: Vec<_> = std::fs::read_dir(source_dir)
        .with_context(|| format!("cannot read {}", source_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    sources.sort();
    Ok(sources)
}

/// The `policy` world of the project's WIT.
fn policy_world(root: &Path) -> Result<(Resolve, wit_parser::WorldId)> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_path(root.join("wit/policy@0.2.0"))
        .context("cannot parse wit/policy@0.2.0")?;
    let world = resolve.select_world(&[package], Some("policy"))?;
    Ok((resolve, world))
}

/// Writes wit-bindgen's C bindings of the world into `dir`: `policy.h`, `policy.c` and
/// `policy_component_type.o`.
fn generate_bindings(resolve: &Resolve, world: wit_parser::WorldId, dir: &Path) -> Result<()> {
    let mut resolve = resolve.clone();
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)?;
    for (name, contents) in files.iter() {
        let path = dir.join(name);
        // Rewriting unchanged files would make every build look new.
        if std::fs::read(&path).ok().as_deref() != Some(contents) {
            std::fs::write(&path, contents)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(())
}

fn ensure_toolchain() -> Result<()> {
    let present = || {
        Command::new(CLANG)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
            && [WASM_LD, WASI_LIBC, BUILTINS]
                .iter()
                .all(|p| Path::new(p).exists())
    };
    if present() {
        return Ok(());
    }
    apt_install(PACKAGES)?;
    if !present() {
        bail!(
            "installed {PACKAGES:?} but {CLANG}, {WASM_LD}, {WASI_LIBC} or {BUILTINS} is missing"
        );
    }
    Ok(())
}

/// Runs the C example's unit tests (`tests/native_test.c`) natively with gcc and the address,
/// undefined-behaviour and leak sanitizers; needs the bindings of a previous [`build`].
pub fn native_tests(source_dir: &Path) -> Result<()> {
    let work = work_dir(source_dir)?;
    let sources = sources(source_dir)?;
    let binary = work.join("native_test");
    run(Command::new("gcc")
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wno-unused-parameter",
            "-g",
        ])
        .arg("-fsanitize=address,undefined")
        .arg("-I")
        .arg(source_dir)
        .arg("-I")
        .arg(&work)
        .arg(source_dir.join("tests/native_test.c"))
        .args(&sources)
        .arg("-lm")
        .arg("-o")
        .arg(&binary))?;
    run(&mut Command::new(&binary))
}
