//! A private Docker daemon (`dockerd` with its own data root, exec root, pid
//! file and socket; no bridge, no iptables) whose registry mirror is the
//! cache, driven with the `docker` CLI.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use super::process::{describe_failure, run_ok, run_with_timeout, Proc};
use super::tools::{require_root, require_tool, short_tempdir};

/// A running dockerd; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Dockerd {
    socket: PathBuf,
    proc: Proc,
    dir: tempfile::TempDir,
}

impl Dockerd {
    /// Starts a daemon with `--registry-mirror mirror_url` and waits (at most
    /// 60 s) until `docker version` reaches it. Err holds the reason and the
    /// daemon's log when it cannot start (the test decides what to do).
    pub fn try_start(mirror_url: &str) -> Result<Dockerd, String> {
        require_tool("dockerd");
        require_tool("docker");
        require_root("a private Docker daemon");
        // Short paths: containerd's sockets live under the exec root.
        let dir = short_tempdir("oci-dkd-");
        let p = dir.path();
        let socket = p.join("d.sock");
        // An empty daemon.json, so /etc/docker/daemon.json cannot change anything.
        let config = p.join("daemon.json");
        std::fs::write(&config, "{}\n").expect("write daemon.json");
        std::fs::create_dir_all(p.join("client")).expect("create client config dir");
        let mut cmd = Command::new("dockerd");
        cmd.arg("--config-file")
            .arg(&config)
            .arg("--data-root")
            .arg(p.join("root"))
            .arg("--exec-root")
            .arg(p.join("x"))
            .arg("--pidfile")
            .arg(p.join("d.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
                "--log-level=debug",
                "--registry-mirror",
                mirror_url,
            ]);
        let proc = Proc::spawn("dockerd", cmd, p, true);
        let mut this = Dockerd { socket, proc, dir };
        // Bounded: 600 x 100 ms = 60 s.
        for _ in 0..600 {
            if let Some(status) = this.proc.exited() {
                return Err(format!(
                    "dockerd exited with {status} before it served\n{}",
                    this.log_tail()
                ));
            }
            if this.socket.exists()
                && run_ok(&mut this.docker(&["version"]), Duration::from_secs(10)).is_ok()
            {
                return Ok(this);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "dockerd did not answer within 60 s\n{}",
            this.log_tail()
        ))
    }

    /// `docker -H unix://SOCK ARGS...`, with a client config directory of its own.
    pub fn docker(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_CONFIG", self.dir.path().join("client"))
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args);
        cmd
    }

    /// `docker pull IMAGE` (at most 180 s). Err holds docker's output.
    pub fn pull(&self, image: &str) -> Result<Output, String> {
        let mut cmd = self.docker(&["pull", image]);
        let out = run_with_timeout(&mut cmd, Duration::from_secs(180))?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(describe_failure(&cmd, &out))
        }
    }

    /// The RepoDigests of a local image (`NAME@sha256:...` each).
    pub fn repo_digests(&self, image: &str) -> Vec<String> {
        let mut cmd = self.docker(&[
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            image,
        ]);
        let out = run_ok(&mut cmd, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("docker image inspect failed: {e}\n{}", self.log_tail()));
        serde_json::from_slice(&out).unwrap_or_else(|e| {
            panic!(
                "RepoDigests of {image} are not a JSON list ({e}): {}",
                String::from_utf8_lossy(&out)
            )
        })
    }

    /// The daemon's whole log.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// Log tail for failure messages.
    pub fn log_tail(&self) -> String {
        self.proc.log_tail()
    }
}
