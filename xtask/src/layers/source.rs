//! Reading Rust source for the layering check: comments and strings blanked, tokens, `use`
//! trees and paths, and the crate's modules with the names each one imports or re-exports, so a
//! path through a re-export resolves to the module the name really comes from.

use std::collections::{BTreeMap, BTreeSet};

/// The source with comments, string and char literals replaced by spaces (lines kept).
pub(super) fn blank_comments_and_strings(text: &str) -> String {
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
#[cfg(test)]
pub(super) fn referenced_modules(module: &[String], code: &str) -> BTreeSet<Vec<String>> {
    referenced_in(module, code, &[])
}

/// Paths named inside serde attributes' strings (`#[serde(with = "crate::domain::duration")]`,
/// `default = "…"`, `serialize_with = "…"`, …), which blanking strings would hide; each as its
/// segments. Reads the raw source, one attribute a line.
pub(super) fn attribute_paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| l.contains("serde(")) {
        let mut rest = line;
        while let Some(start) = rest.find('"') {
            let after = &rest[start + 1..];
            let Some(end) = after.find('"') else { break };
            let literal = &after[..end];
            if ["crate::", "super::", "self::"]
                .iter()
                .any(|p| literal.starts_with(p))
            {
                out.push(literal.split("::").map(str::to_owned).collect());
            }
            rest = &after[end + 1..];
        }
    }
    out
}

/// [`referenced_modules`] of `code` plus the `extra` paths (from attributes), all resolved
/// against `module`.
pub(super) fn referenced_in(
    module: &[String],
    code: &str,
    extra: &[Vec<String>],
) -> BTreeSet<Vec<String>> {
    let tokens = tokenize(code);
    let mut found = BTreeSet::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        let starts_path = matches!(t, "crate" | "super" | "self")
            && tokens.get(i + 1).is_some_and(|n| n == "::")
            && (i == 0 || tokens[i - 1] != "::");
        if starts_path {
            let (leaves, next) = path_tree(&tokens, i);
            for leaf in leaves {
                if let Some(resolved) = resolve(module, &leaf.segments) {
                    found.insert(resolved);
                }
            }
            i = next.max(i + 1);
        } else {
            i += 1;
        }
    }
    for path in extra {
        if let Some(resolved) = resolve(module, path) {
            found.insert(resolved);
        }
    }
    found
}

pub(super) fn tokenize(code: &str) -> Vec<String> {
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

/// One leaf of a `use` tree (or an inline path): its segments and the name it binds there (the
/// `as` alias, else the last segment; `*` for a glob).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Leaf {
    pub(super) segments: Vec<String>,
    pub(super) binds: String,
}

/// Reads a path (or a `use` tree) from `tokens[i]`; returns its leaves and the index after it.
pub(super) fn path_tree(tokens: &[String], mut i: usize) -> (Vec<Leaf>, usize) {
    let mut prefix: Vec<String> = Vec::new();
    let leaf = |segments: Vec<String>, binds: Option<String>| Leaf {
        binds: binds
            .or_else(|| segments.last().cloned())
            .unwrap_or_default(),
        segments,
    };
    loop {
        match tokens.get(i).map(String::as_str) {
            Some("{") => {
                let mut leaves = Vec::new();
                i += 1;
                loop {
                    match tokens.get(i).map(String::as_str) {
                        None => return (leaves, i),
                        Some("}") => return (leaves, i + 1),
                        Some(",") => i += 1,
                        Some(_) => {
                            let (inner, next) = path_tree(tokens, i);
                            for mut p in inner {
                                let mut full = prefix.clone();
                                full.append(&mut p.segments);
                                p.segments = full;
                                leaves.push(p);
                            }
                            i = if next == i { i + 1 } else { next };
                        }
                    }
                }
            }
            Some(t) if is_ident(t) => {
                prefix.push(t.to_owned());
                i += 1;
                match tokens.get(i).map(String::as_str) {
                    Some("::") => i += 1,
                    Some("as") if tokens.get(i + 1).is_some_and(|t| is_ident(t)) => {
                        let alias = tokens[i + 1].clone();
                        return (vec![leaf(prefix, Some(alias))], i + 2);
                    }
                    _ => return (vec![leaf(prefix, None)], i),
                }
            }
            Some("*") => return (vec![leaf(prefix, Some("*".into()))], i + 1),
            _ => return (vec![leaf(prefix, None)], i),
        }
    }
}

fn is_ident(t: &str) -> bool {
    t.chars().all(|c| c.is_alphanumeric() || c == '_')
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

/// The crate's modules (one per file) and, for each, the names its `use` items bind to paths
/// inside the crate.
#[derive(Debug, Default)]
pub(super) struct CrateIndex {
    modules: BTreeSet<Vec<String>>,
    imports: BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>>,
}

impl CrateIndex {
    /// An index of these modules; add each one's code with [`CrateIndex::add_imports`].
    pub(super) fn new(modules: impl IntoIterator<Item = Vec<String>>) -> Self {
        let mut modules: BTreeSet<Vec<String>> = modules.into_iter().collect();
        modules.insert(Vec::new());
        CrateIndex {
            modules,
            imports: BTreeMap::new(),
        }
    }

    /// Records the `use` items of `module`'s code (its tests cut off). Returns the glob imports
    /// of the crate's own modules it found: they would hide which module a name comes from.
    pub(super) fn add_imports(&mut self, module: &[String], code: &str) -> Vec<String> {
        let tokens = tokenize(code);
        let mut globs = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            let starts_use = tokens[i] == "use"
                && (i == 0
                    || matches!(tokens[i - 1].as_str(), ";" | "{" | "}" | "pub" | ")" | "]"));
            if !starts_use {
                i += 1;
                continue;
            }
            let (leaves, next) = path_tree(&tokens, i + 1);
            for leaf in leaves {
                let Some(target) = self.in_crate(module, &leaf.segments) else {
                    continue;
                };
                if leaf.binds == "*" {
                    globs.push(format!("{}::*", target.join("::")));
                } else {
                    self.imports
                        .entry(module.to_vec())
                        .or_default()
                        .insert(leaf.binds, target);
                }
            }
            i = next.max(i + 1);
        }
        globs
    }

    /// A `use` path as a path from the crate root, if it stays in the crate: `crate::`,
    /// `super::`, `self::`, or a child module's name.
    fn in_crate(&self, module: &[String], path: &[String]) -> Option<Vec<String>> {
        let first = path.first()?;
        if matches!(first.as_str(), "crate" | "super" | "self") {
            return resolve(module, path);
        }
        let mut child = module.to_vec();
        child.push(first.clone());
        self.modules.contains(&child).then(|| {
            let mut full = module.to_vec();
            full.extend(path.iter().cloned());
            full
        })
    }

    /// `path` with every name that a module imports or re-exports replaced by where it comes
    /// from: `control::BindingRecord` → `control::records::BindingRecord`.
    pub(super) fn canonical(&self, mut path: Vec<String>) -> Vec<String> {
        // A chain of re-exports is short; the bound stops a `use` cycle.
        for _ in 0..16 {
            let Some(k) = (0..=path.len())
                .rev()
                .find(|&k| self.modules.contains(&path[..k]))
            else {
                return path;
            };
            let Some(target) = path
                .get(k)
                .and_then(|name| self.imports.get(&path[..k])?.get(name))
            else {
                return path;
            };
            if target[..] == path[..=k] {
                return path;
            }
            let mut next = target.clone();
            next.extend(path[k + 1..].iter().cloned());
            path = next;
        }
        path
    }
}
