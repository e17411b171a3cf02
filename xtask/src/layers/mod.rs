//! `cargo xtask layers`: keeps the host's architecture honest.
//!
//! Reads `host/layers.toml` (the one file that says which module may use which) and every source
//! file under `host/src`, and fails when:
//! - a top-level module uses another that its entry does not allow (a lower layer reaching a
//!   higher one), through any path: `use` trees, inline `crate::…` paths, `super::` chains that
//!   climb out of the module, re-exports;
//! - two sibling modules inside one top-level module use each other (a cycle one level down);
//! - the allowed edges themselves have a cycle;
//! - a file under `host/src`, `sdk/src`, `types/src`, `hpa/src` or `plugins/*/src` is over the
//!   line limit (its `#[cfg(test)] mod tests` tail not counted) and is not listed with a reason;
//! - `lib.rs`'s public exports differ from `host/public-api.txt`.
//!
//! Paths are read from the source with comments and string literals blanked out, so a path in a
//! doc comment or a message is not an edge. Macro-generated paths (`bindgen!`) are not seen.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

mod source;

#[cfg(test)]
use source::referenced_modules;
use source::{
    CrateIndex, attribute_paths, blank_comments_and_strings, path_tree, referenced_in, tokenize,
};

/// The parsed `host/layers.toml`.
struct Rules {
    /// Top-level module → the modules it may use.
    allowed: BTreeMap<String, BTreeSet<String>>,
    /// Lines a source file may have (tests not counted).
    max_lines: usize,
    /// Files allowed over `max_lines`, repository-relative, with their reason.
    long_files: BTreeMap<String, String>,
}

/// Runs every check; prints what it found and fails if anything is wrong.
pub fn check(root: &Path) -> Result<()> {
    let rules = read_rules(&root.join("host/layers.toml"))?;
    let mut problems = Vec::new();
    problems.extend(acyclic(&rules.allowed));

    let src = root.join("host/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files)?;
    // Each file's code, comments and strings blanked and its trailing tests cut off (tests may
    // use what they test).
    let mut sources = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let kept = lines_without_tests(&text);
        let code: String = blank_comments_and_strings(&text)
            .lines()
            .take(kept)
            .collect::<Vec<_>>()
            .join("\n");
        let raw: String = text.lines().take(kept).collect::<Vec<_>>().join("\n");
        sources.push((
            rel.to_owned(),
            module_path(rel),
            code,
            attribute_paths(&raw),
        ));
    }
    let mut index = CrateIndex::new(sources.iter().map(|(_, module, _, _)| module.clone()));
    for (rel, module, code, _) in &sources {
        for glob in index.add_imports(module, code) {
            problems.push(format!(
                "{}: `use {glob}` hides which module each name comes from: name them",
                rel.display()
            ));
        }
    }
    // Every path a module uses, through re-exports to the module that defines the name.
    let mut edges: BTreeSet<(Vec<String>, Vec<String>, String)> = BTreeSet::new();
    for (rel, module, code, attributes) in &sources {
        for target in referenced_in(module, code, attributes) {
            edges.insert((
                module.clone(),
                index.canonical(target),
                rel.display().to_string(),
            ));
        }
    }

    let roots: BTreeSet<String> = files
        .iter()
        .map(|f| module_path(f.strip_prefix(&src).expect("under src")))
        .filter_map(|m| m.first().cloned())
        .collect();
    for module in &roots {
        if !rules.allowed.contains_key(module) {
            problems.push(format!(
                "module `{module}` has no entry in host/layers.toml: say which modules it may use"
            ));
        }
    }
    for name in rules.allowed.keys() {
        if !roots.contains(name) {
            problems.push(format!(
                "host/layers.toml names `{name}`, which is not a module"
            ));
        }
    }

    // Top-level edges.
    let mut seen = BTreeSet::new();
    for (from, to, file) in &edges {
        let (Some(a), Some(b)) = (from.first(), to.first()) else {
            continue;
        };
        if a == b || !roots.contains(b) {
            continue;
        }
        let allowed = rules.allowed.get(a).is_some_and(|set| set.contains(b));
        if !allowed && seen.insert((a.clone(), b.clone(), file.clone())) {
            problems.push(format!(
                "{file}: `{a}` uses `{b}`, which host/layers.toml does not allow"
            ));
        }
    }

    // Siblings that reach each other, one level below the top.
    let mut sibling: BTreeMap<(String, String, String), String> = BTreeMap::new();
    for (from, to, file) in &edges {
        if from.len() >= 2 && to.len() >= 2 && from[0] == to[0] && from[1] != to[1] {
            sibling
                .entry((from[0].clone(), from[1].clone(), to[1].clone()))
                .or_insert_with(|| file.clone());
        }
    }
    for ((top, a, b), file) in &sibling {
        if a < b
            && let Some(back) = sibling.get(&(top.clone(), b.clone(), a.clone()))
        {
            problems.push(format!(
                "`{top}::{a}` and `{top}::{b}` use each other ({file} and {back}): one must not \
                 know the other"
            ));
        }
    }

    problems.extend(long_files(root, &rules)?);
    problems.extend(public_api(root)?);

    if problems.is_empty() {
        println!(
            "layers: {} files, {} modules, every edge allowed; file sizes and public API as listed",
            files.len(),
            roots.len()
        );
        return Ok(());
    }
    for p in &problems {
        eprintln!("layers: {p}");
    }
    bail!(
        "{} layering problem(s); see host/layers.toml and docs/architecture.md",
        problems.len()
    )
}

fn read_rules(path: &Path) -> Result<Rules> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    // A small reader for the file's one shape: `[section]`, `key = [ "a", "b" ]` (one line or
    // several), `key = 123`, `"path" = "reason"`.
    let mut section = String::new();
    let mut allowed = BTreeMap::new();
    let mut long = BTreeMap::new();
    let mut max_lines = None;
    let mut pending: Option<(String, String)> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split_once(" #").map_or(raw, |(a, _)| a).trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((key, mut acc)) = pending.take() {
            acc.push_str(line);
            if line.contains(']') {
                allowed.insert(key, list(&acc));
            } else {
                pending = Some((key, acc));
            }
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_owned();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            bail!("{}:{}: expected `key = value`", path.display(), n + 1);
        };
        let key = key.trim().trim_matches('"').to_owned();
        let value = value.trim();
        match section.as_str() {
            "allowed" if value.starts_with('[') => {
                if value.contains(']') {
                    allowed.insert(key, list(value));
                } else {
                    pending = Some((key, value.to_owned()));
                }
            }
            "files" if key == "max_lines" => {
                max_lines = Some(value.parse().with_context(|| {
                    format!("{}:{}: max_lines is a number", path.display(), n + 1)
                })?);
            }
            "long_files" => {
                long.insert(key, value.trim_matches('"').to_owned());
            }
            _ => bail!(
                "{}:{}: unexpected `{key}` in [{section}]",
                path.display(),
                n + 1
            ),
        }
    }
    Ok(Rules {
        allowed,
        max_lines: max_lines.context("host/layers.toml: [files] max_lines is missing")?,
        long_files: long,
    })
}

fn list(value: &str) -> BTreeSet<String> {
    value
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A cycle in the allowed edges, if any.
fn acyclic(allowed: &BTreeMap<String, BTreeSet<String>>) -> Option<String> {
    fn visit(
        node: &str,
        allowed: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<String> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(format!(
                "host/layers.toml has a cycle: {}",
                cycle.join(" -> ")
            ));
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in allowed.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, allowed, stack, done) {
                return Some(found);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    allowed
        .keys()
        .find_map(|k| visit(k, allowed, &mut Vec::new(), &mut done))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// `tick/engine.rs` → `[tick, engine]`; `tick/mod.rs` → `[tick]`; `lib.rs` → `[]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn long_files(root: &Path, rules: &Rules) -> Result<Vec<String>> {
    let mut dirs = vec![
        root.join("host/src"),
        root.join("sdk/src"),
        root.join("types/src"),
        root.join("hpa/src"),
    ];
    for entry in std::fs::read_dir(root.join("plugins"))? {
        let path = entry?.path();
        if path.join("src").is_dir() {
            dirs.push(path.join("src"));
        }
    }
    let fixtures = root.join("plugins/fixtures");
    for entry in std::fs::read_dir(&fixtures)? {
        let path = entry?.path();
        if path.join("src").is_dir() {
            dirs.push(path.join("src"));
        }
    }
    let mut problems = Vec::new();
    let mut listed_seen = BTreeSet::new();
    for dir in dirs {
        let mut files = Vec::new();
        rust_files(&dir, &mut files)?;
        for file in files {
            let rel = file
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            let text = std::fs::read_to_string(&file)?;
            let lines = lines_without_tests(&text);
            if rules.long_files.contains_key(&rel) {
                listed_seen.insert(rel.clone());
                if lines <= rules.max_lines {
                    problems.push(format!(
                        "{rel} is listed as long in host/layers.toml but has {lines} lines: \
                         take it off the list"
                    ));
                }
            } else if lines > rules.max_lines {
                problems.push(format!(
                    "{rel} has {lines} lines (tests not counted), over {}: split it, or list it \
                     in host/layers.toml [long_files] with its reason",
                    rules.max_lines
                ));
            }
        }
    }
    for listed in rules.long_files.keys() {
        if !listed_seen.contains(listed) {
            problems.push(format!(
                "host/layers.toml lists {listed}, which does not exist"
            ));
        }
    }
    Ok(problems)
}

/// Lines before a trailing `#[cfg(test)]` module.
fn lines_without_tests(text: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .iter()
        .position(|l| l.trim() == "#[cfg(test)]")
        .filter(|&at| {
            lines
                .get(at + 1)
                .is_some_and(|l| l.trim_start().starts_with("mod tests"))
        })
        .unwrap_or(lines.len())
}

/// `lib.rs`'s `pub mod`/`pub use` items against `host/public-api.txt`.
fn public_api(root: &Path) -> Result<Vec<String>> {
    let lib = std::fs::read_to_string(root.join("host/src/lib.rs"))?;
    let code = blank_comments_and_strings(&lib);
    let tokens = tokenize(&code);
    let mut exports = BTreeSet::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i] == "pub" && tokens.get(i + 1).is_some_and(|t| t != "(") {
            match tokens.get(i + 1).map(String::as_str) {
                Some("mod") => {
                    if let Some(name) = tokens.get(i + 2) {
                        exports.insert(format!("mod {name}"));
                    }
                }
                Some("use") => {
                    let (leaves, next) = path_tree(&tokens, i + 2);
                    for leaf in leaves {
                        exports.insert(format!("use {}", leaf.segments.join("::")));
                    }
                    i = next;
                    continue;
                }
                Some(kind @ ("fn" | "const" | "struct" | "enum" | "type" | "trait" | "static")) => {
                    if let Some(name) = tokens.get(i + 2) {
                        exports.insert(format!("{kind} {name}"));
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    let listed_path = root.join("host/public-api.txt");
    let listed: BTreeSet<String> = std::fs::read_to_string(&listed_path)
        .with_context(|| format!("cannot read {}", listed_path.display()))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let mut problems = Vec::new();
    for e in exports.difference(&listed) {
        problems.push(format!(
            "host/src/lib.rs exports `{e}`, which host/public-api.txt does not list: add it there \
             if it is meant to be public"
        ));
    }
    for e in listed.difference(&exports) {
        problems.push(format!(
            "host/public-api.txt lists `{e}`, which host/src/lib.rs does not export"
        ));
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(module: &[&str], code: &str) -> Vec<String> {
        let module: Vec<String> = module.iter().map(|s| s.to_string()).collect();
        referenced_modules(&module, &blank_comments_and_strings(code))
            .into_iter()
            .map(|p| p.join("::"))
            .collect()
    }

    #[test]
    fn reads_use_trees_inline_paths_and_super_chains() {
        let code = r#"
            use crate::{tick::Scope, backends::{Cluster, simulated}};
            use super::super::Sandbox;
            pub use super::types as wit;
            fn f() { let x = crate::domain::cluster::WorkloadRef::deployment("a", "b"); }
            // crate::api::Nope in a comment is not an edge
            const S: &str = "crate::control::Nope";
        "#;
        let found = refs(&["runtime", "host", "nodes"], code);
        assert!(found.contains(&"tick::Scope".to_string()), "{found:?}");
        assert!(
            found.contains(&"backends::Cluster".to_string()),
            "{found:?}"
        );
        assert!(
            found.contains(&"backends::simulated".to_string()),
            "{found:?}"
        );
        assert!(found.contains(&"runtime::Sandbox".to_string()), "{found:?}");
        assert!(
            found.contains(&"runtime::host::types".to_string()),
            "{found:?}"
        );
        assert!(
            found.contains(&"domain::cluster::WorkloadRef::deployment".to_string()),
            "{found:?}"
        );
        assert!(
            !found
                .iter()
                .any(|f| f.starts_with("api") || f.starts_with("control"))
        );
    }

    #[test]
    fn super_from_a_mod_rs_climbs_out_of_the_module() {
        let found = refs(&["tick"], "use super::control::Control;");
        assert_eq!(found, vec!["control::Control".to_string()]);
    }

    fn module(path: &str) -> Vec<String> {
        path.split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn a_name_re_exported_by_a_parent_resolves_to_the_sibling_that_defines_it() {
        let mut index = CrateIndex::new(
            [
                "control",
                "control::records",
                "control::bindings",
                "tick",
                "tick::engine",
            ]
            .map(module),
        );
        let parent = "mod records; mod bindings;\n\
                      use records::{BindingRecord, db_error as fail};\n\
                      pub(crate) use crate::tick::engine::TickEngine;";
        assert!(index.add_imports(&module("control"), parent).is_empty());
        index.add_imports(&module(""), "pub use control::TickEngine as Engine;");
        let canonical = |path: &str| index.canonical(module(path)).join("::");
        assert_eq!(
            canonical("control::BindingRecord::new"),
            "control::records::BindingRecord::new"
        );
        assert_eq!(canonical("control::fail"), "control::records::db_error");
        assert_eq!(canonical("Engine"), "tick::engine::TickEngine");
        assert_eq!(canonical("control::Control"), "control::Control");
        // What a child reaches through `super::` is the sibling, which the cycle check sees.
        let from_bindings = refs(&["control", "bindings"], "use super::BindingRecord;");
        assert_eq!(
            canonical(&from_bindings[0]),
            "control::records::BindingRecord"
        );
    }

    #[test]
    fn a_glob_of_the_crates_own_modules_is_reported_and_one_of_a_dependency_is_not() {
        let mut index = CrateIndex::new(["control", "control::records"].map(module));
        let globs = index.add_imports(
            &module("control"),
            "use records::*;\nuse super::*;\nuse plotters::prelude::*;\nfn f() {}",
        );
        assert_eq!(globs, vec!["control::records::*", "::*"]);
    }

    #[test]
    fn paths_in_serde_attributes_are_edges() {
        let text = r#"
            #[serde(default = "one", with = "crate::domain::duration")]
            pub interval: Duration,
            #[serde(serialize_with = "super::wire::write")]
            pub other: u32,
            const S: &str = "crate::api::not_an_attribute";
        "#;
        let paths = attribute_paths(text);
        let found: Vec<String> = referenced_in(
            &["tick".to_string(), "binding".to_string()],
            &blank_comments_and_strings(text),
            &paths,
        )
        .into_iter()
        .map(|p| p.join("::"))
        .collect();
        assert_eq!(found, ["domain::duration", "tick::wire::write"]);
    }

    #[test]
    fn finds_a_cycle_in_the_allowed_edges() {
        let mut allowed = BTreeMap::new();
        allowed.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
        allowed.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
        assert!(acyclic(&allowed).is_some());
        allowed.insert("b".to_string(), BTreeSet::new());
        assert!(acyclic(&allowed).is_none());
    }

    #[test]
    fn counts_lines_before_the_tests() {
        assert_eq!(
            lines_without_tests("a\nb\n#[cfg(test)]\nmod tests {\n}\n"),
            2
        );
        assert_eq!(lines_without_tests("a\nb\n"), 2);
    }
}
