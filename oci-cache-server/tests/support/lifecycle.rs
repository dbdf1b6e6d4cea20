//! Helpers for the storage-lifecycle tests (eviction, pass-through, prefetch):
//! `/metrics` samples, blob files and their mtimes, one-image seeding, a client
//! that pauses in the middle of a download, a tmpfs mount, and running
//! `oci-cache` subcommands with their exit status.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use super::cache_home::{files_under, stored_blob_path};
use super::digest::Sha256Pipe;
use super::fetch::{fetch, Auth};
use super::fixture;
use super::process::{run_ok, run_with_timeout};
use super::registry::Registry;
use super::skopeo::{skopeo_copy, skopeo_inspect_raw};
use super::tools::{require_root, require_tool, short_tempdir};

/// The `/metrics` text of the cache at `url` (`http://127.0.0.1:PORT`).
pub fn scrape_metrics(url: &str) -> String {
    let a = fetch("GET", &format!("{url}/metrics"), Auth::None);
    assert_eq!(a.status, 200, "GET /metrics: {}", a.describe());
    String::from_utf8_lossy(&a.body).into_owned()
}

/// The value of one sample (`NAME` or `NAME{labels}` exactly as exposed), if
/// present; whole numbers only (every counter and gauge read here is one).
pub fn metric_sample(text: &str, sample: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(sample)?;
        rest.starts_with(' ').then_some(())?;
        rest.trim().parse().ok()
    })
}

/// [`metric_sample`] that panics (with the whole text) when the sample is missing.
pub fn metric(text: &str, sample: &str) -> u64 {
    metric_sample(text, sample).unwrap_or_else(|| panic!("no sample {sample} in\n{text}"))
}

/// Bytes in committed blob files under `STORE/blobs`.
pub fn stored_blob_bytes(store: &Path) -> u64 {
    files_under(&store.join("blobs"))
        .iter()
        .map(|(_, n)| n)
        .sum()
}

/// Sets a file's modification time (the filesystem store's "last access").
pub fn set_mtime(path: &Path, when: SystemTime) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {} to set its mtime: {e}", path.display()));
    file.set_modified(when)
        .unwrap_or_else(|e| panic!("set the mtime of {}: {e}", path.display()));
}

/// One single-platform image in a registry, with every blob it consists of.
#[derive(Clone, Debug)]
pub struct PushedImage {
    /// Repository name.
    pub name: String,
    /// Digest of its manifest.
    pub digest: String,
    /// The manifest, config and layers as (digest, size); the manifest first.
    pub blobs: Vec<(String, u64)>,
}

impl PushedImage {
    /// `NAME:latest`.
    pub fn name_tag(&self) -> String {
        format!("{}:latest", self.name)
    }

    /// Total bytes of its blobs (what storing the whole image costs).
    pub fn size(&self) -> u64 {
        self.blobs.iter().map(|(_, n)| n).sum()
    }

    /// Its layer digests.
    pub fn layers(&self) -> Vec<String> {
        self.blobs[2..].iter().map(|(d, _)| d.clone()).collect()
    }

    /// The store paths of its blobs.
    pub fn paths(&self, store: &Path) -> Vec<PathBuf> {
        self.blobs
            .iter()
            .map(|(d, _)| stored_blob_path(store, d))
            .collect()
    }
}

/// The blobs a single-platform manifest consists of: itself, its config, its
/// layers, as (digest, size).
pub fn manifest_blobs(digest: &str, raw: &[u8]) -> Vec<(String, u64)> {
    let v: serde_json::Value = serde_json::from_slice(raw).expect("manifest JSON");
    let desc = |d: &serde_json::Value| {
        (
            d["digest"].as_str().expect("descriptor digest").to_owned(),
            d["size"].as_u64().expect("descriptor size"),
        )
    };
    let mut out = vec![(digest.to_owned(), raw.len() as u64), desc(&v["config"])];
    out.extend(
        v["layers"]
            .as_array()
            .expect("manifest layers")
            .iter()
            .map(desc),
    );
    out
}

/// Builds make_images.py's "multilayer" image (`layers` random layers of
/// `layer_kib` KiB, content chosen by `seed`) and pushes it as `name:latest`
/// (digests preserved) with `creds`; returns it with its blobs as the registry
/// serves them.
pub fn push_multilayer(
    registry: &Registry,
    creds: Option<&str>,
    name: &str,
    seed: u64,
    layers: u32,
    layer_kib: u32,
) -> PushedImage {
    require_tool("python3");
    let dir = short_tempdir("oci-one-image-");
    let out = run_ok(
        Command::new("python3")
            .arg(fixture("make_images.py"))
            .arg("--out")
            .arg(dir.path())
            .args(["--seed", &seed.to_string()])
            .args(["--layers", &layers.to_string()])
            .args(["--layer-kib", &layer_kib.to_string()])
            .args(["--only", "multilayer"]),
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| panic!("make_images.py failed: {e}"));
    let summary: serde_json::Value =
        serde_json::from_slice(&out).expect("make_images.py prints JSON");
    let digest = summary["multilayer"]["manifest"]
        .as_str()
        .expect("manifest digest in the summary")
        .to_owned();
    let dest = registry.docker_ref(&format!("{name}:latest"));
    skopeo_copy(
        &format!("oci:{}:latest", dir.path().join("multilayer").display()),
        &dest,
        false,
        &["--preserve-digests"],
        None,
        creds,
    )
    .unwrap_or_else(|e| panic!("pushing {name} failed: {e}\n{}", registry.log_tail()));
    let raw = skopeo_inspect_raw(&dest, None)
        .unwrap_or_else(|e| panic!("inspecting {name} upstream failed: {e}"));
    let served = super::digest::sha256_bytes(&raw);
    assert_eq!(
        served, digest,
        "the registry serves {name} under another digest"
    );
    PushedImage {
        name: name.to_owned(),
        blobs: manifest_blobs(&digest, &raw),
        digest,
    }
}

/// Runs `oci-cache ARGS...` (bounded at `timeout`) and returns its output,
/// whatever its exit status.
pub fn oci_cache_output(args: &[&OsStr], timeout: Duration) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oci-cache"));
    cmd.args(args).env("NO_COLOR", "1");
    run_with_timeout(&mut cmd, timeout).unwrap_or_else(|e| panic!("oci-cache: {e}"))
}

/// A blob download that stops after its first `pause_after` bytes and goes on
/// only when told: a client that holds a read open while the test looks on.
/// The body is hashed as it arrives.
pub struct PausedDownload {
    paused: mpsc::Receiver<Result<u64, String>>,
    resume: mpsc::SyncSender<()>,
    done: mpsc::Receiver<Result<(u64, String), String>>,
}

impl PausedDownload {
    /// Starts `GET url` on its own thread.
    pub fn start(url: &str, pause_after: u64) -> PausedDownload {
        let (paused_tx, paused) = mpsc::sync_channel(1);
        let (resume, resume_rx) = mpsc::sync_channel::<()>(1);
        let (done_tx, done) = mpsc::sync_channel(1);
        let url = url.to_owned();
        std::thread::spawn(move || {
            let result = download(&url, pause_after, &paused_tx, &resume_rx);
            if let Err(e) = &result {
                let _ = paused_tx.try_send(Err(e.clone()));
            }
            let _ = done_tx.send(result);
        });
        PausedDownload {
            paused,
            resume,
            done,
        }
    }

    /// Waits (at most `timeout`) until the client has paused; returns how many
    /// bytes it has read.
    pub fn wait_paused(&self, timeout: Duration) -> u64 {
        match self.paused.recv_timeout(timeout) {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => panic!("the download failed before pausing: {e}"),
            Err(e) => panic!("the download did not pause within {timeout:?}: {e}"),
        }
    }

    /// Lets the client read the rest; returns (bytes read, `sha256:HEX` of them)
    /// once the body has ended (at most `timeout`).
    pub fn finish(self, timeout: Duration) -> Result<(u64, String), String> {
        let _ = self.resume.try_send(());
        self.done
            .recv_timeout(timeout)
            .map_err(|e| format!("the download did not end within {timeout:?}: {e}"))?
    }
}

fn download(
    url: &str,
    pause_after: u64,
    paused: &mpsc::SyncSender<Result<u64, String>>,
    resume: &mpsc::Receiver<()>,
) -> Result<(u64, String), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async {
        oci_cache_core::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(600))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("client: {e}"))?;
        let mut resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if resp.status().as_u16() != 200 {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(format!("GET {url}: status {status}: {body}"));
        }
        let mut hasher = Sha256Pipe::new();
        let mut read = 0u64;
        let mut has_paused = false;
        // Bounded by the body's length (and the client's timeout).
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("GET {url}: body after {read} bytes: {e}"))?
        {
            hasher.update(&chunk);
            read += chunk.len() as u64;
            if !has_paused && read >= pause_after {
                has_paused = true;
                let _ = paused.send(Ok(read));
                // Blocking this thread stalls the connection: the cache's writes
                // back up (TCP flow control) with its body stream held open.
                resume
                    .recv_timeout(Duration::from_secs(300))
                    .map_err(|e| format!("never told to resume: {e}"))?;
            }
        }
        Ok((read, hasher.finish()))
    })
}

/// A tmpfs mounted on a directory (root only); unmounted on drop.
pub struct TmpfsMount {
    path: PathBuf,
}

impl TmpfsMount {
    /// Mounts a tmpfs of `size_bytes` on `path` (created if missing). Err says
    /// why it cannot (e.g. no permission to mount in this sandbox).
    pub fn mount(path: &Path, size_bytes: u64) -> Result<TmpfsMount, String> {
        require_root("mounting a tmpfs");
        require_tool("mount");
        std::fs::create_dir_all(path).map_err(|e| format!("create {}: {e}", path.display()))?;
        run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size_bytes}")])
                .arg("tmpfs")
                .arg(path),
            Duration::from_secs(30),
        )
        .map_err(|e| format!("mount -t tmpfs on {}: {e}", path.display()))?;
        Ok(TmpfsMount {
            path: path.to_path_buf(),
        })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a file of zeros at `name` in the mount until the filesystem is
    /// full (bounded by its size); returns how many bytes fit.
    pub fn fill(&self, name: &str) -> u64 {
        use std::io::Write;
        let path = self.path.join(name);
        let mut file = std::fs::File::create(&path)
            .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        let chunk = vec![0u8; 64 * 1024];
        let mut written = 0u64;
        // At most 1 GiB / 64 KiB steps; a tmpfs this test mounts is far smaller.
        for _ in 0..16 * 1024 {
            match file.write(&chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => written += n as u64,
            }
        }
        // Any remainder of a page goes too.
        for _ in 0..64 {
            match file.write(&chunk[..512]) {
                Ok(0) | Err(_) => break,
                Ok(n) => written += n as u64,
            }
        }
        let _ = file.sync_all();
        written
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let mut cmd = Command::new("umount");
        cmd.arg(&self.path);
        if let Err(e) = run_ok(&mut cmd, Duration::from_secs(30)) {
            eprintln!("umount {} failed ({e}); detaching it", self.path.display());
            let mut lazy = Command::new("umount");
            lazy.arg("-l").arg(&self.path);
            let _ = run_ok(&mut lazy, Duration::from_secs(30));
        }
    }
}
