//! Helpers of the oci-cache benchmarks: deterministic random data, child processes that
//! die with the benchmark, the CNCF distribution registry and the `oci-cache` binary as
//! subprocesses, and a verifying blob GET.
//!
//! - `benches/verify.rs`: criterion micro-benchmarks (streaming sha256 `Verifier`,
//!   `FsStore` write + commit).
//! - `src/bin/pull_bench.rs`: the end-to-end pull benchmark (registry → cache → clients).
//! - `src/bin/side_by_side.rs`: oci-cache against CNCF distribution in proxy mode, same
//!   upstream and content (modules [`load`], [`metrics`], [`procfs`], [`report`], [`rounds`], [`subject`],
//!   [`upstream`]).

use std::error::Error;
use std::fs::File;
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

pub mod load;
pub mod metrics;
pub mod procfs;
pub mod report;
pub mod rounds;
pub mod subject;
pub mod upstream;

/// The error type of the benchmarks.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// How long a subprocess may take to answer `GET /v2/`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A small, fast, deterministic pseudo-random generator (xorshift64*): benchmark data
/// that does not compress and can be produced twice from the same seed without storing it.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (0 is replaced by a fixed non-zero seed).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut words = buf.chunks_exact_mut(8);
        for word in &mut words {
            word.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let tail = words.into_remainder();
        if !tail.is_empty() {
            let last = self.next_u64().to_le_bytes();
            tail.copy_from_slice(&last[..tail.len()]);
        }
    }
}

/// `size` random bytes from `seed`, as chunks of at most `chunk` bytes (a multiple of 8:
/// then the bytes do not depend on `chunk`). Iterating twice from the same seed yields the
/// same bytes, so a blob can be hashed, then uploaded,
/// without holding it in memory.
pub fn random_chunks(seed: u64, size: u64, chunk: usize) -> impl Iterator<Item = Vec<u8>> {
    let mut rng = Rng::new(seed);
    let mut left = size;
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let n = usize::try_from(left).map_or(chunk, |left| left.min(chunk));
        let mut buf = vec![0; n];
        rng.fill(&mut buf);
        left -= n as u64;
        Some(buf)
    })
}

/// A child process that is killed (and reaped) when this guard is dropped: on every
/// return, error or panic of the benchmark.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    name: String,
}

impl ChildGuard {
    /// Spawns `cmd`, guarded.
    pub fn spawn(name: &str, cmd: &mut Command) -> io::Result<Self> {
        let child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {name}: {e}")))?;
        Ok(Self {
            child,
            name: name.to_owned(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error if the process has already exited.
    pub fn check_running(&mut self) -> Result<(), BoxError> {
        match self.child.try_wait()? {
            Some(status) => Err(format!("{} exited early: {status}", self.name).into()),
            None => Ok(()),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1 (bound to port 0, then released for the child to take).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The last `max` bytes of a log file, for error messages.
pub fn log_tail(path: &Path, max: u64) -> String {
    let read = || -> io::Result<String> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
        let mut s = String::new();
        f.take(max).read_to_string(&mut s)?;
        Ok(s)
    };
    read().unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()))
}

/// Polls `GET http://addr/v2/` until it answers 200, the child exits, or
/// [`READY_TIMEOUT`] passes.
async fn wait_ready(
    client: &reqwest::Client,
    addr: SocketAddr,
    child: &mut ChildGuard,
    log: &Path,
) -> Result<(), BoxError> {
    let started = Instant::now();
    let url = format!("http://{addr}/v2/");
    loop {
        if let Err(e) = child.check_running() {
            return Err(format!("{e}; log:\n{}", log_tail(log, 2000)).into());
        }
        let answer = client
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if matches!(&answer, Ok(r) if r.status() == reqwest::StatusCode::OK) {
            return Ok(());
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(format!(
                "{url} not ready after {READY_TIMEOUT:?}; log:\n{}",
                log_tail(log, 2000)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `docker-registry serve` process on 127.0.0.1 with filesystem storage in a temporary
/// directory, logging to a file there: the upstream of the benchmarks, or (with a
/// `proxy` remote) distribution's own pull-through cache.
pub(crate) struct Distribution {
    pub(crate) addr: SocketAddr,
    pub(crate) child: ChildGuard,
    pub(crate) log: PathBuf,
    pub(crate) dir: TempDir,
}

impl Distribution {
    /// Starts `binary` in a temporary directory named from `prefix`, logging at `level`,
    /// as a proxy of `proxy_of` when given, and waits until it answers.
    pub(crate) async fn start(
        binary: &Path,
        client: &reqwest::Client,
        prefix: &str,
        level: &str,
        proxy_of: Option<SocketAddr>,
    ) -> Result<Self, BoxError> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let proxy = proxy_of.map_or_else(String::new, |up| {
            format!("proxy:\n  remoteurl: http://{up}\n")
        });
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\n\
                 log:\n  level: {level}\n  formatter: text\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  \
                 maintenance:\n    uploadpurging:\n      enabled: false\n\
                 http:\n  addr: {addr}\n  secret: oci-cache-bench\n{proxy}",
                dir.path().join("data").display()
            ),
        )?;
        let log = dir.path().join("registry.log");
        let name = if proxy_of.is_some() {
            "docker-registry (proxy)"
        } else {
            "docker-registry"
        };
        let mut child = ChildGuard::spawn(
            name,
            Command::new(binary)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(&log)?),
        )?;
        wait_ready(client, addr, &mut child, &log).await?;
        Ok(Self {
            addr,
            child,
            log,
            dir,
        })
    }
}

/// The CNCF distribution registry (`docker-registry serve`), on 127.0.0.1 with filesystem
/// storage in a temporary directory, logging to a file.
#[derive(Debug)]
pub struct Registry {
    /// Where it listens.
    pub addr: SocketAddr,
    child: ChildGuard,
    log: PathBuf,
    _dir: TempDir,
}

impl Registry {
    /// Starts `binary` (normally `docker-registry`) and waits until it answers.
    pub async fn start(binary: &Path, client: &reqwest::Client) -> Result<Self, BoxError> {
        let d = Distribution::start(binary, client, "pull-bench-registry-", "info", None).await?;
        Ok(Self {
            addr: d.addr,
            child: d.child,
            log: d.log,
            _dir: d.dir,
        })
    }

    /// Pushes a blob of `size` random bytes from `seed` to `repo` with the OCI upload API
    /// (POST, then a monolithic PUT streaming the bytes). Returns its digest (`sha256:…`).
    pub async fn push_random_blob(
        &mut self,
        client: &reqwest::Client,
        repo: &str,
        seed: u64,
        size: u64,
    ) -> Result<String, BoxError> {
        const CHUNK: usize = 1 << 20;
        let mut hasher = Sha256::new();
        for chunk in random_chunks(seed, size, CHUNK) {
            hasher.update(&chunk);
        }
        let digest = format!("sha256:{}", hex::encode(hasher.finalize()));

        let url = upload_url(client, self.addr, repo, &digest).await?;

        let body =
            futures_util::stream::iter(random_chunks(seed, size, CHUNK).map(Ok::<_, io::Error>));
        let resp = client
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, size)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(body))
            .timeout(transfer_timeout(size))
            .send()
            .await?;
        if resp.status() != reqwest::StatusCode::CREATED {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            return Err(format!("upload PUT: {status}: {text}").into());
        }
        self.child.check_running()?;
        Ok(digest)
    }

    /// How many GETs of `path` the registry has completed so far (lines of its log with
    /// `msg="response completed"`, `http.request.method=GET` and the path).
    pub fn completed_gets(&self, path: &str) -> io::Result<usize> {
        let log = std::fs::read_to_string(&self.log)?;
        Ok(log
            .lines()
            .filter(|l| {
                l.contains("msg=\"response completed\"")
                    && l.contains("http.request.method=GET")
                    && l.contains(path)
            })
            .count())
    }
}

/// An `oci-cache serve` process with a fresh data directory, mirroring one upstream as
/// `docker.io`.
#[derive(Debug)]
pub struct Cache {
    /// Where it listens.
    pub addr: SocketAddr,
    child: ChildGuard,
    _dir: TempDir,
}

impl Cache {
    /// Starts `binary` (the `oci-cache` executable) against `upstream` and waits until
    /// it answers.
    pub async fn start(
        binary: &Path,
        upstream: SocketAddr,
        client: &reqwest::Client,
    ) -> Result<Self, BoxError> {
        let dir = tempfile::Builder::new()
            .prefix("pull-bench-cache-")
            .tempdir()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let log = dir.path().join("oci-cache.log");
        let mut child = ChildGuard::spawn(
            "oci-cache",
            Command::new(binary)
                .arg("serve")
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--data-dir")
                .arg(dir.path().join("data"))
                .arg("--upstream")
                .arg(format!("docker.io=http://{upstream}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(&log)?),
        )?;
        wait_ready(client, addr, &mut child, &log).await?;
        Ok(Self {
            addr,
            child,
            _dir: dir,
        })
    }

    /// The process's peak resident set size so far, in KiB (`VmHWM` of
    /// `/proc/PID/status`).
    pub fn peak_rss_kib(&mut self) -> Result<u64, BoxError> {
        self.child.check_running()?;
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.pid()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| "no VmHWM in /proc/PID/status".into())
    }
}

/// A generous time limit for moving `size` bytes on localhost (at least 10 MiB/s).
pub fn transfer_timeout(size: u64) -> Duration {
    Duration::from_secs(30 + size / (10 << 20))
}

/// GETs `url`, streaming the body through sha256; fails unless the status is 200 and the
/// body is `size` bytes hashing to `digest`. Returns the time from sending the request
/// to the last byte (hashing included, as a real client verifies what it pulls).
pub async fn timed_get(
    client: &reqwest::Client,
    url: &str,
    digest: &str,
    size: u64,
) -> Result<Duration, BoxError> {
    Ok(load::verified_get(client, url, digest, size).await?.total)
}

/// Starts an upload of blob `digest` to `repo` on the registry at `addr` (POST) and
/// returns the URL its single PUT goes to.
pub async fn upload_url(
    client: &reqwest::Client,
    addr: SocketAddr,
    repo: &str,
    digest: &str,
) -> Result<String, BoxError> {
    let base = format!("http://{addr}");
    let resp = client
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .timeout(Duration::from_secs(30))
        .send()
        .await?;
    if resp.status() != reqwest::StatusCode::ACCEPTED {
        return Err(format!("upload POST: {}", resp.status()).into());
    }
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or("upload POST: no Location")?;
    let mut url = if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location.to_owned()
    };
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str("digest=");
    url.push_str(digest);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_chunks_repeat_and_have_the_size() {
        let a: Vec<u8> = random_chunks(7, 100_003, 4096).flatten().collect();
        let b: Vec<u8> = random_chunks(7, 100_003, 1000).flatten().collect();
        assert_eq!(a.len(), 100_003);
        assert_eq!(a, b, "chunking must not change the bytes");
        assert_ne!(
            a,
            random_chunks(8, 100_003, 4096)
                .flatten()
                .collect::<Vec<u8>>()
        );
    }
}
