//! An `oci-cache` whose data directory outlives the process: start it, kill it
//! (SIGKILL, like a crash), start it again on the same data, and run
//! `oci-cache verify` on that data.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::net::{free_port, http_status};
use super::process::{run_with_timeout, Proc};
use super::tools::short_tempdir;

/// A config file and a data directory for successive cache processes.
pub struct CacheHome {
    dir: tempfile::TempDir,
    runs: usize,
    env: Vec<(String, String)>,
}

/// One running cache process of a [`CacheHome`]; SIGTERM (then SIGKILL) on drop.
pub struct CacheRun {
    /// Its port on 127.0.0.1.
    pub port: u16,
    proc: Proc,
}

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
        let bin = env!("CARGO_BIN_EXE_oci-cache");
        let mut last_log = String::new();
        for _ in 0..3 {
            self.runs += 1;
            let port = free_port();
            let mut cmd = Command::new(bin);
            cmd.arg("serve")
                .arg("--config")
                .arg(self.dir.path().join("config.toml"))
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .arg("--data-dir")
                .arg(self.data_dir());
            let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
            // No NO_COLOR: the cache must leave colour codes out of a log file by itself.
            cmd.env("RUST_LOG", log).env_remove("NO_COLOR");
            cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
            let name = format!("oci-cache-run{}", self.runs);
            let mut proc = Proc::spawn(&name, cmd, self.dir.path(), true);
            let mut exited = false;
            for _ in 0..400 {
                if http_status(port, "/v2/") == Some(200) {
                    return CacheRun { port, proc };
                }
                if proc.exited().is_some() {
                    exited = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            last_log = proc.log_tail();
            if !(exited && proc.log().contains("in use")) {
                break;
            }
        }
        panic!("oci-cache did not become ready\n{last_log}");
    }

    /// `oci-cache verify --data-dir DIR` plus `extra` (e.g. `--remove`), bounded
    /// at 120 s.
    pub fn verify(&self, extra: &[&str]) -> VerifyOutcome {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_oci-cache"));
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

impl CacheRun {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// Kills the process with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill_9(&mut self) {
        let pid = self.proc.pid().expect("the cache is running");
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -KILL {pid} failed");
        // Reap it (bounded): stop() sees it exited and returns.
        for _ in 0..200 {
            if self.proc.exited().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let exited = self.proc.exited();
        assert!(exited.is_some(), "the cache survived SIGKILL");
        self.proc.stop();
    }

    /// The whole log of this run.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// Log tail for failure messages.
    pub fn log_tail(&self) -> String {
        self.proc.log_tail()
    }

    /// Stops it gracefully.
    pub fn stop(&mut self) {
        self.proc.stop();
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
