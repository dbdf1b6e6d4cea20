//! The Docker-style token server (tests/fixtures/token_server.py) with a fresh
//! RSA key and self-signed certificate.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::net::{free_port, http_status};
use super::process::{run_ok, Proc};
use super::tools::{fixture, require_tool, short_tempdir};

/// The issuer and service names the registry is configured with.
pub const ISSUER: &str = "oci-cache-test-issuer";
/// The `service` of the registry's token challenge.
pub const SERVICE: &str = "oci-cache-test-registry";

/// Who may do what.
#[derive(Clone, Debug, Default)]
pub struct TokenOptions {
    /// `user:pass` that gets pull and push everywhere (anonymous gets pull only).
    pub user: Option<String>,
    /// Repositories anonymous users get no access to.
    pub private: Vec<String>,
}

/// A running token server; stopped on drop.
pub struct TokenServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    options: TokenOptions,
    cert: PathBuf,
    proc: Proc,
    _dir: tempfile::TempDir,
}

impl TokenServer {
    /// Generates a key and certificate with openssl and starts the server.
    pub fn start(options: TokenOptions) -> TokenServer {
        require_tool("python3");
        require_tool("openssl");
        let dir = short_tempdir("oci-token-");
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        run_ok(
            Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", "/CN=oci-cache-test-token-signer", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&cert),
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| panic!("openssl could not make the token key: {e}"));
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let mut cmd = Command::new("python3");
            cmd.arg(fixture("token_server.py"))
                .args(["--port", &port.to_string()])
                .arg("--key")
                .arg(&key)
                .arg("--cert")
                .arg(&cert)
                .args(["--issuer", ISSUER, "--service", SERVICE]);
            if let Some(user) = &options.user {
                cmd.args(["--user", user]);
            }
            for repo in &options.private {
                cmd.args(["--private", repo]);
            }
            let mut proc = Proc::spawn("token-server", cmd, dir.path(), false);
            if wait_ready(&mut proc, port) {
                return TokenServer {
                    port,
                    options,
                    cert,
                    proc,
                    _dir: dir,
                };
            }
            last_log = proc.log_tail();
            proc.stop();
        }
        panic!("the token server did not start\n{last_log}");
    }

    /// The realm URL the registry sends clients to.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The certificate the registry trusts (rootcertbundle).
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// `user:pass` with push rights, if configured.
    pub fn creds(&self) -> Option<&str> {
        self.options.user.as_deref()
    }

    /// The token requests logged so far, one line each.
    pub fn requests(&self) -> Vec<String> {
        self.proc
            .log()
            .lines()
            .filter(|l| l.starts_with("token-request"))
            .map(str::to_owned)
            .collect()
    }

    /// Log tail for failure messages.
    pub fn log_tail(&self) -> String {
        self.proc.log_tail()
    }
}

fn wait_ready(proc: &mut Proc, port: u16) -> bool {
    for _ in 0..200 {
        if http_status(port, "/healthz") == Some(200) {
            return true;
        }
        if proc.exited().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
