//! Helpers of the oci-cache benchmarks: deterministic random data, the CNCF distribution
//! registry and the `oci-cache` binary as subprocesses (started with the workspace's
//! shared harness, `oci-cache-testkit`, and killed when dropped), and a verifying blob
//! GET.
//!
//! - `benches/verify.rs`: criterion micro-benchmarks (streaming sha256 `Verifier`,
//!   `FsStore` write + commit).
//! - `src/bin/pull_bench.rs`: the end-to-end pull benchmark (registry → cache → clients).
//! - `src/bin/replicas.rs`: three replicas on one S3 bucket, oci-cache's fleet against
//!   distribution proxies on S3 ([`fleet`]).
//! - `src/bin/side_by_side.rs`: oci-cache against CNCF distribution in proxy mode, same
//!   upstream and content (modules [`bare_loop`], [`bare_relay`], [`bare_responder`], [`histogram`], [`load`], [`metrics`], [`procfs`], [`report`], [`rounds`], [`subject`],
//!   [`upstream`]).

use std::error::Error;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_cache_testkit::{CacheOptions, OciCache, RegistryOptions};
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

pub mod bare_loop;
pub mod bare_relay;
pub mod bare_responder;
pub mod fleet;
pub mod histogram;
pub mod load;
pub mod metrics;
pub mod mixed;
pub mod probe;
pub mod procfs;
pub mod report;
pub mod rounds;
pub mod subject;
pub mod upstream;

/// The error type of the benchmarks.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// `target/release/oci-cache` under the workspace root: the bench binaries' default.
pub fn default_oci_cache() -> std::path::PathBuf {
    let bench_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    bench_dir
        .parent()
        .unwrap_or(bench_dir)
        .join("target/release/oci-cache")
}

/// Err, saying how to build it, unless `path` is an `oci-cache` executable's file.
pub fn check_oci_cache(path: &std::path::Path) -> Result<(), BoxError> {
    if path.is_file() {
        return Ok(());
    }
    Err(format!(
        "{} not found: build it with `cargo build --release -p oci-cache-server`, or pass --oci-cache PATH",
        path.display()
    )
    .into())
}

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

/// Starts the CNCF distribution registry with `options` (the shared harness's
/// [`oci_cache_testkit::Registry`]) off the async threads, and waits until it answers.
pub(crate) async fn start_distribution(
    options: RegistryOptions,
) -> Result<oci_cache_testkit::Registry, BoxError> {
    Ok(
        tokio::task::spawn_blocking(move || oci_cache_testkit::Registry::try_start(&options))
            .await??,
    )
}

/// The CNCF distribution registry (`docker-registry serve`), on 127.0.0.1 with filesystem
/// storage in a temporary directory, logging to a file: the upstream of the benchmarks.
/// Killed when dropped.
#[derive(Debug)]
pub struct Registry {
    /// Where it listens.
    pub addr: SocketAddr,
    process: oci_cache_testkit::Registry,
}

impl Registry {
    /// Starts `binary` (normally `docker-registry`) and waits until it answers.
    pub async fn start(binary: &Path) -> Result<Self, BoxError> {
        let registry = start_distribution(RegistryOptions {
            binary: Some(binary.to_path_buf()),
            log_level: "info",
            access_log: false,
            dir_prefix: "pull-bench-registry-",
            ..RegistryOptions::default()
        })
        .await?;
        Ok(Self {
            addr: registry.addr(),
            process: registry,
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
        self.process.check_running()?;
        Ok(digest)
    }

    /// How many GETs of `path` the registry has completed so far (its log's
    /// `response completed` lines of a GET whose URI holds `path`).
    pub fn completed_gets(&self, path: &str) -> usize {
        usize::try_from(self.traffic(Some("GET"), path).requests).unwrap_or(usize::MAX)
    }
}

/// An `oci-cache serve` process (the shared harness's [`OciCache`]) with a fresh data
/// directory, mirroring one upstream as `docker.io`; killed when dropped.
#[derive(Debug)]
pub struct Cache {
    /// Where it listens.
    pub addr: SocketAddr,
    process: OciCache,
    _dir: TempDir,
}

impl Cache {
    /// Starts `binary` (the `oci-cache` executable) against `upstream` and waits until
    /// it answers. Its log level is the environment's `RUST_LOG`, or its own default.
    pub async fn start(binary: &Path, upstream: SocketAddr) -> Result<Self, BoxError> {
        let binary: PathBuf = binary.to_path_buf();
        let (cache, dir) = tokio::task::spawn_blocking(move || {
            let dir = tempfile::Builder::new()
                .prefix("pull-bench-cache-")
                .tempdir()
                .map_err(|e| e.to_string())?;
            let options = CacheOptions {
                upstreams: vec![("docker.io".to_owned(), format!("http://{upstream}"))],
                ..CacheOptions::default()
            };
            let cache = OciCache::start(
                &binary,
                &dir.path().join("data"),
                dir.path(),
                "oci-cache",
                &options,
            )?;
            Ok::<_, String>((cache, dir))
        })
        .await??;
        Ok(Self {
            addr: cache.addr(),
            process: cache,
            _dir: dir,
        })
    }

    /// The process id (an error if it has exited).
    pub fn pid(&mut self) -> Result<u32, BoxError> {
        self.process.check_running()?;
        self.process
            .pid()
            .ok_or_else(|| "oci-cache was stopped".into())
    }

    /// The process's peak resident set size so far, in KiB (`VmHWM` of
    /// `/proc/PID/status`).
    pub fn peak_rss_kib(&mut self) -> Result<u64, BoxError> {
        procfs::peak_rss_kib(self.pid()?)
    }
}

/// The HTTP client of the benchmarks: no proxy, a 5 s connect timeout.
pub fn bench_client() -> Result<reqwest::Client, BoxError> {
    oci_cache_core::install_crypto_provider();
    Ok(reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .build()?)
}

/// Runs a benchmark for at most `limit`, or until Ctrl-C. Dropping its future (then)
/// drops the guards that kill the processes it started.
pub async fn run_bounded(
    limit: Duration,
    bench: impl std::future::Future<Output = Result<(), BoxError>>,
) -> Result<(), Box<dyn Error>> {
    tokio::select! {
        result = tokio::time::timeout(limit, bench) => match result {
            Ok(result) => result.map_err(|e| e.to_string().into()),
            Err(_) => Err(format!("gave up after {limit:?}").into()),
        },
        _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
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
