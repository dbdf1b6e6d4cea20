//! A fake upstream that misbehaves on purpose (tests/fixtures/fault_upstream.py):
//! it serves one blob per a mode (`ok`, `wrong-digest`, `short`, `reset`,
//! `stall`, `hang`) on a data port and is driven through a control port.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::net::{free_port, http_status};
use super::process::Proc;
use super::tools::{fixture, require_tool, short_tempdir};

/// How the fake answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultMode {
    /// The right bytes.
    Ok,
    /// The announced length, one byte flipped.
    WrongDigest,
    /// Half the announced length, then a clean close.
    Short,
    /// Half the announced length, then a TCP reset.
    Reset,
    /// Half the announced length, then silence.
    Stall,
    /// The right bytes, in 16 pieces over 3 s.
    Slow,
    /// Accepts the connection, never answers.
    Hang,
}

impl FaultMode {
    /// The fixture's name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultMode::Ok => "ok",
            FaultMode::WrongDigest => "wrong-digest",
            FaultMode::Short => "short",
            FaultMode::Reset => "reset",
            FaultMode::Stall => "stall",
            FaultMode::Slow => "slow",
            FaultMode::Hang => "hang",
        }
    }
}

/// What the fake has seen.
#[derive(Clone, Debug)]
pub struct FaultStats {
    /// The current mode.
    pub mode: String,
    /// Connections accepted on the data port.
    pub connections: u64,
    /// Each request as `MODE METHOD PATH` (`hang ? ?` for a hung connection).
    pub requests: Vec<String>,
}

/// A running fake upstream; stopped on drop.
pub struct FaultUpstream {
    /// Its data port on 127.0.0.1 (the cache's upstream).
    pub port: u16,
    /// Its control port on 127.0.0.1.
    pub control_port: u16,
    /// The digest of the blob it serves.
    pub digest: String,
    /// The blob's bytes.
    pub blob: Vec<u8>,
    proc: Proc,
    _dir: tempfile::TempDir,
}

impl FaultUpstream {
    /// Starts the fake serving `blob` (whose digest is `digest`) in `mode`.
    pub fn start(blob: Vec<u8>, digest: &str, mode: FaultMode) -> FaultUpstream {
        require_tool("python3");
        let dir = short_tempdir("oci-fault-");
        let blob_path: PathBuf = dir.path().join("blob");
        std::fs::write(&blob_path, &blob).expect("write the fake upstream's blob");
        let mut last_log = String::new();
        for attempt in 0..3 {
            let port = free_port();
            let control_port = free_port();
            let mut cmd = Command::new("python3");
            cmd.arg(fixture("fault_upstream.py"))
                .args(["--port", &port.to_string()])
                .args(["--control-port", &control_port.to_string()])
                .arg("--blob")
                .arg(&blob_path)
                .args(["--mode", mode.as_str()]);
            let mut proc =
                Proc::spawn(&format!("fault-upstream-{attempt}"), cmd, dir.path(), false);
            let mut ready = false;
            for _ in 0..200 {
                if http_status(control_port, "/healthz") == Some(200) {
                    ready = true;
                    break;
                }
                if proc.exited().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if ready {
                let fake = FaultUpstream {
                    port,
                    control_port,
                    digest: digest.to_owned(),
                    blob,
                    proc,
                    _dir: dir,
                };
                let served = fake.control("/stats");
                let v: serde_json::Value =
                    serde_json::from_str(&served).expect("fault upstream stats JSON");
                assert_eq!(
                    v["digest"].as_str(),
                    Some(digest),
                    "the fake upstream serves another digest than the test expects"
                );
                return fake;
            }
            last_log = proc.log_tail();
            proc.stop();
        }
        panic!("the fault upstream did not start\n{last_log}");
    }

    /// `http://127.0.0.1:PORT` (the data port).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Switches the mode (for connections accepted from now on).
    pub fn set_mode(&self, mode: FaultMode) {
        let body = self.control(&format!("/mode/{}", mode.as_str()));
        assert!(
            body.contains(mode.as_str()),
            "setting mode {mode:?} failed: {body}"
        );
    }

    /// What the fake has seen so far.
    pub fn stats(&self) -> FaultStats {
        let body = self.control("/stats");
        let v: serde_json::Value = serde_json::from_str(&body).expect("fault upstream stats JSON");
        FaultStats {
            mode: v["mode"].as_str().unwrap_or_default().to_owned(),
            connections: v["connections"].as_u64().unwrap_or_default(),
            requests: v["requests"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Log tail for failure messages.
    pub fn log_tail(&self) -> String {
        self.proc.log_tail()
    }

    /// The body of `GET path` on the control port (bounded: 5 s).
    fn control(&self, path: &str) -> String {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.control_port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("fault upstream control port: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.control_port
        );
        stream
            .write_all(request.as_bytes())
            .expect("write control request");
        let mut buf = Vec::new();
        stream
            .read_to_end(&mut buf)
            .unwrap_or_else(|e| panic!("read control answer of {path}: {e}"));
        let text = String::from_utf8_lossy(&buf).into_owned();
        match text.split_once("\r\n\r\n") {
            Some((_, body)) => body.to_owned(),
            None => panic!("bad control answer of {path}: {text:?}"),
        }
    }
}
