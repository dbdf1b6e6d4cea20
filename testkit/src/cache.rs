//! The `oci-cache` binary (`oci-cache serve`) on a free port of 127.0.0.1,
//! waited for until `GET /v2/` answers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::net::{http_status, Local};
use crate::process::{start_server_on, Proc, ServerSpec};

/// How long the cache may take to answer `GET /v2/`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How to run `oci-cache serve` (besides `--listen` and `--data-dir`, which
/// [`OciCache::start`] sets).
#[derive(Clone, Debug, Default)]
pub struct CacheOptions {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// `--upstream NAME=URL` each; the first is the default upstream.
    pub upstreams: Vec<(String, String)>,
    /// `RUST_LOG`; `None` leaves the environment's.
    pub rust_log: Option<String>,
    /// Variables removed from the environment.
    pub env_remove: Vec<String>,
    /// Variables added to the environment (after `rust_log`, so they win).
    pub env: Vec<(String, String)>,
    /// Ready also when `GET /v2/` answers 401 (no upstream is anonymous).
    pub ready_on_401: bool,
    /// Dropping it sends SIGTERM first (and waits up to 10 s) instead of SIGKILL.
    pub graceful: bool,
    /// Listen on this port of 127.0.0.1 (one attempt), e.g. one the other replicas of a
    /// fleet were told; `None`: a free one.
    pub port: Option<u16>,
}

impl CacheOptions {
    /// What the end-to-end tests run with: `RUST_LOG` from the environment or
    /// `info`, no `NO_COLOR` (the cache must leave colour codes out of a log
    /// file by itself), stopped with SIGTERM.
    pub fn for_tests() -> CacheOptions {
        CacheOptions {
            rust_log: Some(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned())),
            env_remove: vec!["NO_COLOR".to_owned()],
            graceful: true,
            ..CacheOptions::default()
        }
    }
}

/// A running `oci-cache serve`; stopped on drop (see [`CacheOptions::graceful`]).
#[derive(Debug)]
pub struct OciCache {
    /// Where it listens.
    pub local: Local,
    proc: Proc,
}

impl OciCache {
    /// Starts `binary serve` with `data_dir`, logging to files under `log_dir`
    /// named after `name`, and waits (at most 20 s) until it is ready. Err
    /// (with the log) when it exits or never becomes ready, e.g. because it
    /// refuses its config.
    pub fn start(
        binary: &Path,
        data_dir: &Path,
        log_dir: &Path,
        name: &str,
        options: &CacheOptions,
    ) -> Result<OciCache, String> {
        let spec = ServerSpec {
            name,
            log_dir,
            graceful: options.graceful,
            timeout: READY_TIMEOUT,
        };
        let (proc, port) = start_server_on(
            &spec,
            options.port,
            |port| {
                let mut cmd = Command::new(binary);
                cmd.arg("serve");
                if let Some(config) = &options.config {
                    cmd.arg("--config").arg(config);
                }
                cmd.args(["--listen", &format!("127.0.0.1:{port}")])
                    .arg("--data-dir")
                    .arg(data_dir);
                for (name, url) in &options.upstreams {
                    cmd.args(["--upstream", &format!("{name}={url}")]);
                }
                if let Some(log) = &options.rust_log {
                    cmd.env("RUST_LOG", log);
                }
                for k in &options.env_remove {
                    cmd.env_remove(k);
                }
                cmd.envs(options.env.iter().map(|(k, v)| (k, v)));
                cmd
            },
            |port| match http_status(port, "/v2/") {
                Some(200) => true,
                Some(401) => options.ready_on_401,
                _ => false,
            },
        )
        .map_err(|e| format!("oci-cache: {e}"))?;
        Ok(OciCache {
            local: Local { port },
            proc,
        })
    }

    /// The whole log.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// Log tail for failure messages.
    pub fn log_tail(&self) -> String {
        self.proc.log_tail()
    }

    /// The process id while it runs (e.g. to read `/proc/PID/status`).
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.proc.exited().is_none()
    }

    /// Err (with the log tail) unless the process still runs.
    pub fn check_running(&mut self) -> Result<(), String> {
        self.proc.check_running()
    }

    /// Stops it (SIGTERM and up to 10 s when graceful, then SIGKILL).
    pub fn stop(&mut self) {
        self.proc.stop();
    }

    /// Kills it with SIGKILL (no chance to clean up, like a crash) and reaps it.
    pub fn kill_9(&mut self) {
        self.proc.kill_9();
    }
}

impl std::ops::Deref for OciCache {
    type Target = Local;

    fn deref(&self) -> &Local {
        &self.local
    }
}
