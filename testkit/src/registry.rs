//! The real CNCF distribution registry (`docker-registry serve`, Debian package
//! docker-registry) on a free port of 127.0.0.1, with filesystem storage in a
//! temporary directory; optionally behind token auth, or as a pull-through
//! cache (proxy) of another registry. Its request log is parsed for assertions.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::access_log::{parse_log, AccessRecord};
use crate::net::{http_status, Local};
use crate::process::{start_server, Proc, ServerSpec};
use crate::tools::{require_tool, short_tempdir};

/// How long the registry may take to answer `GET /v2/`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the registry sends clients for tokens, and whose certificate signs them.
#[derive(Clone, Debug)]
pub struct TokenAuth {
    /// The token endpoint (`realm` of the challenge).
    pub realm: String,
    /// The `service` of the challenge.
    pub service: String,
    /// The issuer the tokens name.
    pub issuer: String,
    /// The certificate that signs the tokens (PEM).
    pub cert: PathBuf,
}

/// How to run the registry.
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// The executable; `None` looks `docker-registry` up (failing loudly when
    /// it is missing).
    pub binary: Option<PathBuf>,
    /// logrus level: `info` logs a `response completed` line per request
    /// ([`Registry::records`] reads them); `warn` logs none.
    pub log_level: &'static str,
    /// Whether it writes an access log (combined format, to its stdout log) too.
    pub access_log: bool,
    /// Demand tokens from this token server.
    pub token_auth: Option<TokenAuth>,
    /// Be a pull-through cache of the registry at this URL.
    pub proxy_of: Option<String>,
    /// Prefix of the temporary directory.
    pub dir_prefix: &'static str,
    /// Keep blobs and manifests in this bucket of an S3 server (with redirects to it off,
    /// so clients get the bytes from the registry) instead of the temporary directory.
    pub s3: Option<RegistryS3>,
}

/// Where a registry keeps its storage in S3.
#[derive(Clone, Debug)]
pub struct RegistryS3 {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// The key prefix (`rootdirectory`), e.g. `/fleet`.
    pub root: String,
    /// The access key.
    pub access_key: String,
    /// The secret key.
    pub secret_key: String,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            binary: None,
            log_level: "info",
            access_log: true,
            token_auth: None,
            proxy_of: None,
            dir_prefix: "oci-registry-",
            s3: None,
        }
    }
}

/// A running registry; killed on drop (its log tail printed if the thread panics).
#[derive(Debug)]
pub struct Registry {
    /// Where it listens.
    pub local: Local,
    /// Whether clients need a token.
    pub token_auth: bool,
    proc: Proc,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry with the defaults (info log, no auth); panics if it cannot.
    pub fn start_default() -> Registry {
        Self::start(&RegistryOptions::default())
    }

    /// Starts a registry; panics (with its log) if it cannot.
    pub fn start(options: &RegistryOptions) -> Registry {
        Self::try_start(options).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a registry and waits (at most 20 s) until `GET /v2/` answers.
    pub fn try_start(options: &RegistryOptions) -> Result<Registry, String> {
        let binary = options
            .binary
            .clone()
            .unwrap_or_else(|| require_tool("docker-registry"));
        let dir = short_tempdir(options.dir_prefix);
        let config = dir.path().join("config.yml");
        let spec = ServerSpec {
            name: if options.proxy_of.is_some() {
                "registry-proxy"
            } else {
                "registry"
            },
            log_dir: dir.path(),
            graceful: false,
            timeout: READY_TIMEOUT,
        };
        let (proc, port) = start_server(
            &spec,
            |port| {
                std::fs::write(&config, config_yaml(dir.path(), port, options))
                    .expect("write the registry's config");
                let mut cmd = Command::new(&binary);
                cmd.arg("serve").arg(&config);
                // Its AWS SDK fails to start with a CA bundle set (the S3 server is plain
                // HTTP anyway).
                cmd.env_remove("AWS_CA_BUNDLE");
                cmd
            },
            // 200 without auth, 401 with token auth: either means it serves.
            |port| matches!(http_status(port, "/v2/"), Some(200 | 401)),
        )?;
        Ok(Registry {
            local: Local { port },
            token_auth: options.token_auth.is_some(),
            proc,
            dir,
        })
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

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// Err (with the log tail) unless the registry still runs.
    pub fn check_running(&mut self) -> Result<(), String> {
        self.proc.check_running()
    }

    /// The storage root (to look at or to corrupt).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Stops the registry (the upstream goes away); the log stays readable.
    pub fn stop(&mut self) {
        self.proc.stop();
    }
}

/// The `storage` section's driver lines.
fn storage_driver(dir: &Path, s3: Option<&RegistryS3>) -> String {
    match s3 {
        None => format!(
            "  filesystem:\n    rootdirectory: {}\n",
            dir.join("storage").display()
        ),
        Some(s3) => format!(
            "  s3:\n    accesskey: {}\n    secretkey: {}\n    region: us-east-1\n    \
             regionendpoint: {}\n    bucket: {}\n    secure: false\n    v4auth: true\n    \
             rootdirectory: {}\n  redirect:\n    disable: true\n",
            s3.access_key, s3.secret_key, s3.endpoint, s3.bucket, s3.root
        ),
    }
}

fn config_yaml(dir: &Path, port: u16, options: &RegistryOptions) -> String {
    let mut y = format!(
        "version: 0.1\n\
         log:\n  level: {level}\n  formatter: text\n  accesslog:\n    disabled: {no_access_log}\n\
         storage:\n{driver}  delete:\n    enabled: true\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: oci-cache-testkit-secret\n\
         health:\n  storagedriver:\n    enabled: false\n",
        level = options.log_level,
        no_access_log = !options.access_log,
        driver = storage_driver(dir, options.s3.as_ref())
    );
    if let Some(token) = &options.token_auth {
        let _ = write!(
            y,
            "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {cert}\n",
            realm = token.realm,
            service = token.service,
            issuer = token.issuer,
            cert = token.cert.display()
        );
    }
    if let Some(remote) = &options.proxy_of {
        let _ = write!(y, "proxy:\n  remoteurl: {remote}\n");
    }
    y
}

impl std::ops::Deref for Registry {
    type Target = Local;

    fn deref(&self) -> &Local {
        &self.local
    }
}
