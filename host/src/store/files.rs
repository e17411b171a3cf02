//! Files the host keeps: whole files written durably (a crash leaves either the old file or
//! the whole new one), and append-only logs rotated by size and age.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `bytes` to `path` through a temporary file in the same folder: write, fsync, rename,
/// fsync of the folder. On an error the temporary file is removed and `path` is as it was.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}-{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(error);
    }
    std::fs::File::open(dir)?.sync_all()
}

/// The `n`-th rotated file of `path`: `audit.jsonl.1` is the newest after `audit.jsonl`.
pub fn rotated(path: &Path, n: u32) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    std::path::PathBuf::from(name)
}

/// Moves `path` to `path.1` (and `.1` to `.2`, …), keeping at most `keep` rotated files and
/// none last written more than `max_age` ago; `path` itself is then gone, for a new one.
pub fn rotate(path: &Path, keep: u32, max_age: std::time::Duration) -> std::io::Result<()> {
    let ignore_missing = |result: std::io::Result<()>| match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    };
    if keep == 0 {
        return ignore_missing(std::fs::remove_file(path));
    }
    ignore_missing(std::fs::remove_file(rotated(path, keep)))?;
    for n in (1..keep).rev() {
        ignore_missing(std::fs::rename(rotated(path, n), rotated(path, n + 1)))?;
    }
    ignore_missing(std::fs::rename(path, rotated(path, 1)))?;
    prune_older_than(path, keep, max_age)
}

/// Removes the rotated files of `path` last written more than `max_age` ago.
pub fn prune_older_than(
    path: &Path,
    keep: u32,
    max_age: std::time::Duration,
) -> std::io::Result<()> {
    for n in 1..=keep {
        let old = rotated(path, n);
        let stale = std::fs::metadata(&old)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > max_age);
        if stale {
            std::fs::remove_file(&old)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        write_durably(&path, b"old").expect("writes");
        // A directory where the file should go: the rename fails.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir_all(blocked.join("x")).expect("dir");
        assert!(write_durably(&blocked, b"new").is_err());
        assert_eq!(std::fs::read(&path).expect("reads"), b"old");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("lists")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }
}
