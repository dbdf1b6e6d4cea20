//! An `oci-cache` whose data directory outlives the process: start it, kill it
//! (SIGKILL, like a crash), start it again on the same data, and run
//! `oci-cache verify` on that data.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use oci_cache_testkit::{run_with_timeout, short_tempdir, CacheOptions, OciCache};

use super::cache::oci_cache_bin;

/// A config file and a data directory for successive cache processes.
pub struct CacheHome {
    dir: tempfile::TempDir,
    runs: usize,
    env: Vec<(String, String)>,
}

/// One running cache process of a [`CacheHome`]; SIGTERM (then SIGKILL) on
/// drop, [`OciCache::kill_9`] to crash it.
pub type CacheRun = OciCache;

/// The outcome of `oci-cache verify`.
#[derive(Debug)]
pub struct VerifyOutcome {
    /// The exit code (None when killed by a signal).
    pub code: Option<i32>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl CacheHome {
    /// A fresh home with `toml` as the config file (its `listen` and `data_dir`
    /// are overridden by flags).
    pub fn new(toml: &str) -> CacheHome {
        let dir = short_tempdir("oci-cache-home-");
        std::fs::write(dir.path().join("config.toml"), toml).expect("write the cache's config");
        CacheHome {
            dir,
            runs: 0,
            env: Vec::new(),
        }
    }

    /// Adds `env` to the environment of every process started from now on (e.g.
    /// the `AWS_*` variables of an S3 store).
    #[must_use]
    pub fn with_env(mut self, env: &[(&str, String)]) -> CacheHome {
        self.env
            .extend(env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        self
    }

    /// The data directory (`--data-dir`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The store under the data directory.
    pub fn store_dir(&self) -> PathBuf {
        self.data_dir().join("store")
    }

    /// Starts `oci-cache serve` on this home's config and data; waits (at most
    /// 20 s) until `GET /v2/` answers 200.
    pub fn start(&mut self) -> CacheRun {
        self.runs += 1;
        let options = CacheOptions {
            config: Some(self.dir.path().join("config.toml")),
            env: self.env.clone(),
            ..CacheOptions::for_tests()
        };
        let name = format!("oci-cache-run{}", self.runs);
        OciCache::start(
            oci_cache_bin(),
            &self.data_dir(),
            self.dir.path(),
            &name,
            &options,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `oci-cache verify --data-dir DIR` plus `extra` (e.g. `--remove`), bounded
    /// at 120 s.
    pub fn verify(&self, extra: &[&str]) -> VerifyOutcome {
        let mut cmd = Command::new(oci_cache_bin());
        cmd.arg("verify")
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(extra)
            .env("NO_COLOR", "1");
        let out = run_with_timeout(&mut cmd, Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("oci-cache verify: {e}"));
        VerifyOutcome {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Every file under `dir` (recursively), with its size; empty when `dir` does
/// not exist.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(path),
                Ok(m) => out.push((path, m.len())),
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

/// Where the filesystem store keeps the blob `digest` (`sha256:HEX`):
/// `STORE/blobs/sha256/HE/HEX`.
pub fn stored_blob_path(store: &Path, digest: &str) -> PathBuf {
    let (algo, hex) = digest.split_once(':').expect("digest ALGO:HEX");
    store.join("blobs").join(algo).join(&hex[..2]).join(hex)
}
