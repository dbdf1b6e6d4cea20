//! The `oci-cache` binary under test, on an ephemeral port with its own data
//! directory.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::net::{free_port, http_status};
use super::process::{run_ok, run_with_timeout, Proc};
use super::tools::short_tempdir;

/// A running cache; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Cache {
    /// Its port on 127.0.0.1.
    pub port: u16,
    proc: Proc,
    dir: tempfile::TempDir,
}

impl Cache {
    /// Starts `oci-cache serve` with `upstreams` as (NAME, URL) pairs; the first
    /// is the default upstream. `RUST_LOG` is passed on (default `info`).
    pub fn start(upstreams: &[(&str, String)]) -> Cache {
        Self::launch(None, upstreams, &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts `oci-cache serve --config FILE` with `toml` as the file (its
    /// `listen` and `data_dir`, if any, are overridden by `--listen` and
    /// `--data-dir` flags) and `env` added to the environment (e.g. the
    /// variables named by `password_env` or `token_env`). Ready means
    /// `GET /v2/` answers 200, or 401 when no upstream is anonymous.
    pub fn start_with_config(toml: &str, env: &[(&str, &str)]) -> Cache {
        Self::try_start_with_config(toml, env).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Cache::start_with_config`], but Err (with the log) when the
    /// cache exits or never becomes ready, e.g. because it refuses the config.
    pub fn try_start_with_config(toml: &str, env: &[(&str, &str)]) -> Result<Cache, String> {
        Self::launch(Some(toml), &[], env)
    }

    fn launch(
        config: Option<&str>,
        upstreams: &[(&str, String)],
        env: &[(&str, &str)],
    ) -> Result<Cache, String> {
        let bin = env!("CARGO_BIN_EXE_oci-cache");
        let dir = short_tempdir("oci-cache-");
        let data = dir.path().join("data");
        let config_path = dir.path().join("config.toml");
        if let Some(text) = config {
            std::fs::write(&config_path, text).expect("write the cache's config file");
        }
        let mut last_log = String::new();
        for attempt in 0..3 {
            let port = free_port();
            let mut cmd = Command::new(bin);
            cmd.arg("serve");
            if config.is_some() {
                cmd.arg("--config").arg(&config_path);
            }
            cmd.args(["--listen", &format!("127.0.0.1:{port}")])
                .arg("--data-dir")
                .arg(&data);
            for (name, url) in upstreams {
                cmd.args(["--upstream", &format!("{name}={url}")]);
            }
            let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
            // No NO_COLOR: the cache must leave colour codes out of a log file by itself.
            cmd.env("RUST_LOG", log).env_remove("NO_COLOR");
            for (k, v) in env {
                cmd.env(k, v);
            }
            let mut proc = Proc::spawn(&format!("oci-cache-{attempt}"), cmd, dir.path(), true);
            match wait_ready(&mut proc, port, config.is_some()) {
                Ready::Yes => return Ok(Cache { port, proc, dir }),
                Ready::Exited if proc.log().contains("in use") => {
                    last_log = proc.log_tail();
                    // Lost a port race: try another port.
                }
                other => {
                    let tail = proc.log_tail();
                    let whole = proc.log();
                    drop(proc);
                    return Err(format!(
                        "oci-cache did not become ready ({other:?}): GET /v2/ never answered\n{tail}\n\
                         ----- whole log -----\n{whole}"
                    ));
                }
            }
        }
        Err(format!("oci-cache could not bind a port\n{last_log}"))
    }

    /// The config file the cache was started with (if any).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `docker://127.0.0.1:PORT/NAME:TAG` for skopeo.
    pub fn docker_ref(&self, name_and_tag: &str) -> String {
        format!("docker://{}/{name_and_tag}", self.host())
    }

    /// The cache's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The cache's whole log.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// Log tail for failure messages.
    pub fn log_tail(&self) -> String {
        self.proc.log_tail()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.proc.exited().is_none()
    }

    /// Stops it gracefully (SIGTERM; SIGKILL after 10 s).
    pub fn stop(&mut self) {
        self.proc.stop();
    }
}

#[derive(Debug)]
enum Ready {
    Yes,
    Exited,
    TimedOut,
}

fn wait_ready(proc: &mut Proc, port: u16, allow_401: bool) -> Ready {
    // Bounded: 400 x 50 ms = 20 s.
    for _ in 0..400 {
        match http_status(port, "/v2/") {
            Some(200) => return Ready::Yes,
            Some(401) if allow_401 => return Ready::Yes,
            _ => {}
        }
        if proc.exited().is_some() {
            return Ready::Exited;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ready::TimedOut
}

/// Runs the `oci-cache` binary with `args` (e.g. `config containerd --config
/// FILE --cache-url URL`) to completion (at most 30 s); Ok is stdout, Err the
/// whole account of a failure.
pub fn run_cli(args: &[&std::ffi::OsStr]) -> Result<String, String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oci-cache"));
    cmd.args(args).env("NO_COLOR", "1");
    run_ok(&mut cmd, Duration::from_secs(30)).map(|out| String::from_utf8_lossy(&out).into_owned())
}

/// Runs `oci-cache serve --config FILE` with `toml` as the file, expecting it to
/// refuse the configuration: returns (exit status, stderr) once it has exited
/// (at most 20 s; a cache that keeps running is an Err).
pub fn serve_expecting_refusal(
    toml: &str,
    env: &[(&str, &str)],
) -> Result<(std::process::ExitStatus, String), String> {
    let dir = short_tempdir("oci-cache-refuse-");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, toml).expect("write config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oci-cache"));
    cmd.arg("serve")
        .arg("--config")
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "debug");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run_with_timeout(&mut cmd, Duration::from_secs(20))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status, text))
}

impl Cache {
    /// The process id while it runs (e.g. to read `/proc/PID/status`).
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }
}
