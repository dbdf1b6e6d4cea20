//! A real CNCF distribution registry (`docker-registry serve`), optionally
//! behind token auth, with its request log parsed for assertions.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use super::access_log::{parse_log, AccessRecord};
use super::net::{free_port, http_status};
use super::process::Proc;
use super::token_server::{TokenServer, ISSUER, SERVICE};
use super::tools::{require_tool, short_tempdir};

/// A running registry with filesystem storage in a temporary directory.
pub struct Registry {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Whether clients need a token.
    pub token_auth: bool,
    proc: Proc,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry; with `auth`, it demands tokens from that server.
    pub fn start(auth: Option<&TokenServer>) -> Registry {
        require_tool("docker-registry");
        let dir = short_tempdir("oci-registry-");
        let mut last_log = String::new();
        for attempt in 0..3 {
            let port = free_port();
            let config = dir.path().join("config.yml");
            std::fs::write(&config, config_yaml(dir.path(), port, auth))
                .expect("write registry config");
            let mut cmd = Command::new("docker-registry");
            cmd.arg("serve").arg(&config);
            let mut proc = Proc::spawn(&format!("registry-{attempt}"), cmd, dir.path(), false);
            if wait_ready(&mut proc, port) {
                return Registry {
                    port,
                    token_auth: auth.is_some(),
                    proc,
                    dir,
                };
            }
            last_log = proc.log_tail();
            proc.stop();
        }
        panic!("docker-registry did not start\n{last_log}");
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `docker://127.0.0.1:PORT/NAME` for skopeo.
    pub fn docker_ref(&self, name_and_tag: &str) -> String {
        format!("docker://{}/{name_and_tag}", self.host())
    }

    /// Every finished request so far (waits for the log to settle first).
    pub fn records(&self) -> Vec<AccessRecord> {
        self.settle();
        parse_log(&self.proc.log())
    }

    /// Finished blob GETs, of one digest (`sha256:...`) or of any blob.
    pub fn blob_gets(&self, digest: Option<&str>) -> usize {
        self.blob_get_records(digest).len()
    }

    /// The finished blob GETs themselves (status and bytes written included).
    pub fn blob_get_records(&self, digest: Option<&str>) -> Vec<AccessRecord> {
        self.records()
            .into_iter()
            .filter(AccessRecord::is_blob_get)
            .filter(|r| digest.is_none_or(|d| r.path().ends_with(&format!("/blobs/{d}"))))
            .collect()
    }

    /// Finished manifest requests (GET and HEAD).
    pub fn manifest_requests(&self) -> Vec<AccessRecord> {
        self.records()
            .into_iter()
            .filter(AccessRecord::is_manifest)
            .collect()
    }

    /// A short listing of the requests so far, for failure messages.
    pub fn request_summary(&self) -> String {
        let mut s = String::from("registry requests (method status written uri user-agent):\n");
        for r in self.records() {
            let _ = writeln!(
                s,
                "  {} {} {} {} {}",
                r.method, r.status, r.written, r.uri, r.user_agent
            );
        }
        s
    }

    /// Waits (at most 3 s) until the log has not grown for 300 ms: the registry
    /// logs a request only after its response is finished.
    pub fn settle(&self) {
        let path = self.proc.log_path();
        let len = || std::fs::metadata(path).map_or(0, |m| m.len());
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut last = len();
        let mut stable_since = Instant::now();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            let now = len();
            if now != last {
                last = now;
                stable_since = Instant::now();
            } else if stable_since.elapsed() >= Duration::from_millis(300) {
                return;
            }
        }
    }

    /// The registry's whole log.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// Log tail for failure messages.
    pub fn log_tail(&self) -> String {
        self.proc.log_tail()
    }

    /// The storage root (to look at or to corrupt).
    pub fn storage_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("storage")
    }

    /// Stops the registry (the upstream goes away); the log stays readable.
    pub fn stop(&mut self) {
        self.proc.stop();
    }
}

fn config_yaml(dir: &std::path::Path, port: u16, auth: Option<&TokenServer>) -> String {
    let mut y = format!(
        "version: 0.1\n\
         log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
         storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: oci-cache-e2e-secret\n\
         health:\n  storagedriver:\n    enabled: false\n",
        root = dir.join("storage").display()
    );
    if let Some(token) = auth {
        let _ = write!(
            y,
            "auth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {cert}\n",
            realm = token.realm(),
            cert = token.cert_path().display()
        );
    }
    y
}

fn wait_ready(proc: &mut Proc, port: u16) -> bool {
    for _ in 0..400 {
        // 200 without auth, 401 with token auth: either means it serves.
        if matches!(http_status(port, "/v2/"), Some(200 | 401)) {
            return true;
        }
        if proc.exited().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
