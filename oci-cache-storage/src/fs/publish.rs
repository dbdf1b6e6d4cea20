//! Making a written temporary file visible: fsync, rename into place, fsync the directory.

use std::fs::{self, File};
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::CommitOutcome;

/// What to do when the target already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Keep the existing file and discard the temporary one (immutable blobs).
    NoClobber,
    /// Replace the existing file atomically (tags).
    Replace,
}

/// A fresh, unique path in `tmp` for a temporary file of `kind`.
pub(super) fn temp_path(tmp: &Path, kind: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    tmp.join(format!("{kind}-{}-{nanos}-{n}.tmp", std::process::id()))
}

/// Publishes the fully written `file` at `temp` as `target`: fsyncs the file, renames it
/// into place (creating the target's directory if needed) and fsyncs the directory.
///
/// With [`Mode::NoClobber`], an existing target is kept, the temporary file removed and
/// [`CommitOutcome::AlreadyExists`] returned. Two writers racing past that check both
/// rename identical, verified bytes; the second rename atomically replaces the first, so
/// readers always see one whole copy.
pub(super) fn publish(
    file: File,
    temp: &Path,
    target: &Path,
    mode: Mode,
) -> io::Result<CommitOutcome> {
    file.sync_all()?;
    drop(file);
    if mode == Mode::NoClobber && target.try_exists()? {
        remove_if_exists(temp)?;
        return Ok(CommitOutcome::AlreadyExists);
    }
    let dir = target
        .parent()
        .ok_or_else(|| io::Error::new(ErrorKind::InvalidInput, "publish target has no parent"))?;
    ensure_dir(dir)?;
    fs::rename(temp, target)?;
    sync_dir(dir)?;
    Ok(CommitOutcome::Stored)
}

/// Creates `dir` and its missing parents, fsyncing each parent that gained an entry.
fn ensure_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        ensure_dir(parent)?;
    }
    match fs::create_dir(dir) {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    match dir.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// Removes `path`; a missing file is not an error.
pub(super) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Makes the directory's entries durable. Only possible (and needed) on Unix.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
