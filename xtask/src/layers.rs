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
    let mut edges: BTreeSet<(Vec<String>, Vec<String>, String)> = BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let module = module_path(rel);
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let code = blank_comments_and_strings(&text);
        for target in referenced_modules(&module, &code) {
            edges.insert((module.clone(), target, rel.display().to_string()));
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

    // Names the crate root re-exports (`crate::Host`, `crate::display_chain`) stand for the
    // module they come from.
    let root_exports = root_reexports(&src.join("lib.rs"))?;
    // Top-level edges.
    let mut seen = BTreeSet::new();
    for (from, to, file) in &edges {
        let (Some(a), Some(b)) = (from.first(), to.first()) else {
            continue;
        };
        let b = root_exports.get(b).unwrap_or(b);
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

/// `lib.rs`'s `pub use module::…::Name` items: Name → module.
fn root_reexports(lib: &Path) -> Result<BTreeMap<String, String>> {
    let text =
        std::fs::read_to_string(lib).with_context(|| format!("cannot read {}", lib.display()))?;
    let tokens = tokenize(&blank_comments_and_strings(&text));
    let mut map = BTreeMap::new();
    let mut i = 0;
    while i + 1 < tokens.len() {
        if tokens[i] == "pub" && tokens[i + 1] == "use" {
            let (paths, next) = path_tree(&tokens, i + 2);
            for path in paths {
                if let (Some(module), Some(name)) = (path.first(), path.last())
                    && path.len() > 1
                {
                    map.insert(name.clone(), module.clone());
                }
            }
            i = next;
        } else {
            i += 1;
        }
    }
    Ok(map)
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

/// The source with comments, string and char literals replaced by spaces (lines kept).
fn blank_comments_and_strings(text: &str) -> String {
    let bytes: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < bytes.len() {
        let c = bytes[i];
        let next = bytes.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < bytes.len() && bytes[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < bytes.len() {
                if bytes[i] == '/' && bytes.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if bytes[i] == '*' && bytes.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(bytes[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && raw_string_at(&bytes, i) {
            let mut j = i + 1;
            let mut hashes = 0;
            while bytes.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            // bytes[j] == '"'
            let mut k = j + 1;
            loop {
                if k >= bytes.len() {
                    break;
                }
                if bytes[k] == '"' && (0..hashes).all(|h| bytes.get(k + 1 + h) == Some(&'#')) {
                    k += 1 + hashes;
                    break;
                }
                k += 1;
            }
            for &ch in &bytes[i..k.min(bytes.len())] {
                out.push(blank(ch));
            }
            i = k;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < bytes.len() && bytes[i] != '"' {
                if bytes[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < bytes.len() {
                    out.push(blank(bytes[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && char_literal_len(&bytes, i).is_some() {
            let len = char_literal_len(&bytes, i).expect("checked");
            for _ in 0..len {
                out.push(' ');
            }
            i += len;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn raw_string_at(bytes: &[char], i: usize) -> bool {
    // `r"` or `r#…#"`, not part of an identifier such as `for"` or `br`.
    if i > 0 && (bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_') && bytes[i - 1] != 'b' {
        return false;
    }
    let mut j = i + 1;
    while bytes.get(j) == Some(&'#') {
        j += 1;
    }
    bytes.get(j) == Some(&'"')
}

/// The length of a char literal starting at `i` (`'a'`, `'\n'`, `'\u{1F600}'`), or `None` for a
/// lifetime.
fn char_literal_len(bytes: &[char], i: usize) -> Option<usize> {
    if bytes.get(i + 1) == Some(&'\\') {
        let mut j = i + 2;
        while j < bytes.len() && j < i + 12 {
            if bytes[j] == '\'' {
                return Some(j - i + 1);
            }
            j += 1;
        }
        None
    } else if bytes.get(i + 2) == Some(&'\'') {
        Some(3)
    } else {
        None
    }
}

/// Every module path (as full crate paths) that `code` reaches: `use` trees and inline paths
/// starting with `crate::`, `super::` or `self::`, resolved against `module`.
fn referenced_modules(module: &[String], code: &str) -> BTreeSet<Vec<String>> {
    let tokens = tokenize(code);
    let mut found = BTreeSet::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        let starts_path = matches!(t, "crate" | "super" | "self")
            && tokens.get(i + 1).is_some_and(|n| n == "::")
            && (i == 0 || tokens[i - 1] != "::");
        if starts_path {
            let (paths, next) = path_tree(&tokens, i);
            for path in paths {
                if let Some(resolved) = resolve(module, &path) {
                    found.insert(resolved);
                }
            }
            i = next.max(i + 1);
        } else {
            i += 1;
        }
    }
    found
}

fn tokenize(code: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push("::".into());
            i += 2;
        } else if c.is_whitespace() {
            i += 1;
        } else {
            tokens.push(c.to_string());
            i += 1;
        }
    }
    tokens
}

/// Reads a path (or a `use` tree) from `tokens[i]`; returns the expanded paths (up to a few
/// segments each, enough to resolve the module) and the index after it.
fn path_tree(tokens: &[String], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let mut prefix = Vec::new();
    loop {
        match tokens.get(i).map(String::as_str) {
            Some("{") => {
                let mut paths = Vec::new();
                i += 1;
                loop {
                    match tokens.get(i).map(String::as_str) {
                        None => return (paths, i),
                        Some("}") => return (paths, i + 1),
                        Some(",") => i += 1,
                        Some(_) => {
                            let (inner, next) = path_tree(tokens, i);
                            for p in inner {
                                let mut full = prefix.clone();
                                full.extend(p);
                                paths.push(full);
                            }
                            if next == i {
                                i += 1;
                            } else {
                                i = next;
                            }
                        }
                    }
                }
            }
            Some(t) if t.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                prefix.push(t.to_owned());
                i += 1;
                if tokens.get(i).map(String::as_str) == Some("::") {
                    i += 1;
                } else {
                    return (vec![prefix], i);
                }
            }
            Some("*") => return (vec![prefix], i + 1),
            _ => return (vec![prefix], i),
        }
    }
}

/// A `crate::…`/`super::…`/`self::…` path, seen from `module`, as a path from the crate root.
fn resolve(module: &[String], path: &[String]) -> Option<Vec<String>> {
    let mut segments = path.iter();
    let mut base: Vec<String> = match segments.next()?.as_str() {
        "crate" => Vec::new(),
        "self" => module.to_vec(),
        "super" => {
            let mut m = module.to_vec();
            m.pop()?;
            m
        }
        _ => return None,
    };
    let mut rest: Vec<String> = Vec::new();
    for s in segments {
        if s == "super" && rest.is_empty() {
            base.pop()?;
        } else {
            rest.push(s.clone());
        }
    }
    base.extend(rest);
    Some(base)
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
                    let (paths, next) = path_tree(&tokens, i + 2);
                    for p in paths {
                        exports.insert(format!("use {}", p.join("::")));
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
