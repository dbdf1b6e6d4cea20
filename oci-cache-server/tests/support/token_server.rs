//! The Docker-style token server (tests/fixtures/token_server.py) with a fresh
//! RSA key and self-signed certificate.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use oci_cache_testkit::{
    http_status, require_tool, run_ok, short_tempdir, start_server, Proc, Registry,
    RegistryOptions, ServerSpec, TokenAuth,
};

use super::fixture;

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
        let python = require_tool("python3");
        let spec = ServerSpec {
            name: "token-server",
            log_dir: dir.path(),
            graceful: false,
            timeout: Duration::from_secs(10),
        };
        let (proc, port) = start_server(
            &spec,
            |port| {
                let mut cmd = Command::new(&python);
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
                cmd
            },
            |port| http_status(port, "/healthz") == Some(200),
        )
        .unwrap_or_else(|e| panic!("the token server did not start: {e}"));
        TokenServer {
            port,
            options,
            cert,
            proc,
            _dir: dir,
        }
    }

    /// Starts a registry that demands tokens from this server.
    pub fn registry(&self) -> Registry {
        Registry::start(&RegistryOptions {
            token_auth: Some(TokenAuth {
                realm: self.realm(),
                service: SERVICE.to_owned(),
                issuer: ISSUER.to_owned(),
                cert: self.cert.clone(),
            }),
            ..RegistryOptions::default()
        })
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
