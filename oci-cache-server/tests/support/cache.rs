//! The `oci-cache` binary under test, on an ephemeral port with its own data
//! directory.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::net::{free_port, http_status};
use super::process::Proc;
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
        let bin = env!("CARGO_BIN_EXE_oci-cache");
        let dir = short_tempdir("oci-cache-");
        let data = dir.path().join("data");
        let mut last_log = String::new();
        for attempt in 0..3 {
            let port = free_port();
            let mut cmd = Command::new(bin);
            cmd.arg("serve")
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .arg("--data-dir")
                .arg(&data);
            for (name, url) in upstreams {
                cmd.args(["--upstream", &format!("{name}={url}")]);
            }
            let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
            cmd.env("RUST_LOG", log).env("NO_COLOR", "1");
            let mut proc = Proc::spawn(&format!("oci-cache-{attempt}"), cmd, dir.path(), true);
            match wait_ready(&mut proc, port) {
                Ready::Yes => return Cache { port, proc, dir },
                Ready::Exited if proc.log().contains("in use") => {
                    last_log = proc.log_tail();
                    // Lost a port race: try another port.
                }
                other => {
                    let tail = proc.log_tail();
                    drop(proc);
                    panic!("oci-cache did not become ready ({other:?}): GET /v2/ never answered 200\n{tail}");
                }
            }
        }
        panic!("oci-cache could not bind a port\n{last_log}");
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

fn wait_ready(proc: &mut Proc, port: u16) -> Ready {
    // Bounded: 400 x 50 ms = 20 s.
    for _ in 0..400 {
        if http_status(port, "/v2/") == Some(200) {
            return Ready::Yes;
        }
        if proc.exited().is_some() {
            return Ready::Exited;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ready::TimedOut
}
