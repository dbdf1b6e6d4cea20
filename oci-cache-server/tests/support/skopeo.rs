//! skopeo as a client: inspect manifests, copy images to local directories, and
//! check that every copied blob hashes to its name.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::digest::{sha256_bytes, sha256_file};
use super::process::run_ok;
use super::tools::require_tool;

const SKOPEO_TIMEOUT: Duration = Duration::from_secs(180);

fn skopeo() -> Command {
    require_tool("skopeo");
    let mut cmd = Command::new("skopeo");
    // No policy.json or auth file of the machine's may change what the test sees.
    cmd.arg("--insecure-policy");
    cmd.env("REGISTRY_AUTH_FILE", "/nonexistent/oci-cache-e2e-auth.json");
    cmd
}

/// The raw manifest bytes of `docker://HOST/NAME:TAG` (or `@DIGEST`).
pub fn skopeo_inspect_raw(reference: &str, creds: Option<&str>) -> Result<Vec<u8>, String> {
    let mut cmd = skopeo();
    cmd.args(["inspect", "--raw", "--tls-verify=false"]);
    if let Some(c) = creds {
        cmd.args(["--creds", c]);
    }
    cmd.arg(reference);
    run_ok(&mut cmd, SKOPEO_TIMEOUT)
}

/// The digest of the raw manifest (what a registry calls the manifest's digest).
pub fn skopeo_inspect_digest(reference: &str, creds: Option<&str>) -> String {
    let raw = skopeo_inspect_raw(reference, creds)
        .unwrap_or_else(|e| panic!("skopeo inspect failed: {e}"));
    sha256_bytes(&raw)
}

/// `skopeo copy [--all] SRC DEST` plus `extra` arguments, with TLS checks off on
/// both sides and optional source/destination credentials.
pub fn skopeo_copy(
    src: &str,
    dest: &str,
    all: bool,
    extra: &[&str],
    src_creds: Option<&str>,
    dest_creds: Option<&str>,
) -> Result<(), String> {
    let mut cmd = skopeo();
    cmd.args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"]);
    if all {
        cmd.arg("--all");
    }
    if let Some(c) = src_creds {
        cmd.args(["--src-creds", c]);
    }
    if let Some(c) = dest_creds {
        cmd.args(["--dest-creds", c]);
    }
    cmd.args(extra).arg(src).arg(dest);
    run_ok(&mut cmd, SKOPEO_TIMEOUT).map(|_| ())
}

/// Copies an image (all platforms with `all`) into an OCI layout at `dir`
/// without changing any digest, checks every blob in it, and returns the
/// digest of the copied top-level manifest or index.
pub fn skopeo_copy_to_oci_dir(
    src: &str,
    dir: &Path,
    all: bool,
    creds: Option<&str>,
) -> Result<String, String> {
    create_parent(dir)?;
    let dest = format!("oci:{}:latest", dir.display());
    skopeo_copy(src, &dest, all, &["--preserve-digests"], creds, None)?;
    verify_oci_dir(dir);
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("index.json"))
            .map_err(|e| format!("no index.json in {}: {e}", dir.display()))?,
    )
    .map_err(|e| format!("bad index.json: {e}"))?;
    index["manifests"][0]["digest"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("index.json without a manifest: {index}"))
}

/// Copies an image into skopeo's `dir:` format, which keeps any manifest type
/// (Docker manifest lists included) byte for byte; checks every blob.
pub fn skopeo_copy_to_dir(
    src: &str,
    dir: &Path,
    all: bool,
    creds: Option<&str>,
) -> Result<(), String> {
    create_parent(dir)?;
    let dest = format!("dir:{}", dir.display());
    skopeo_copy(src, &dest, all, &["--preserve-digests"], creds, None)?;
    verify_dir_transport(dir);
    Ok(())
}

fn create_parent(dir: &Path) -> Result<(), String> {
    match dir.parent() {
        Some(parent) => {
            std::fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))
        }
        None => Ok(()),
    }
}

/// Checks that every blob of an OCI layout hashes to its file name; returns
/// how many there are.
pub fn verify_oci_dir(dir: &Path) -> usize {
    let blobs = dir.join("blobs").join("sha256");
    let mut n = 0;
    for entry in
        std::fs::read_dir(&blobs).unwrap_or_else(|e| panic!("read {}: {e}", blobs.display()))
    {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_owned();
        assert_eq!(
            sha256_file(&path),
            format!("sha256:{name}"),
            "blob {} is corrupt",
            path.display()
        );
        n += 1;
    }
    n
}

/// Checks that every blob (a file named by 64 hex digits) of a `dir:` copy
/// hashes to its name; returns how many there are.
pub fn verify_dir_transport(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_owned();
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            assert_eq!(
                sha256_file(&path),
                format!("sha256:{name}"),
                "blob {} is corrupt",
                path.display()
            );
            n += 1;
        }
    }
    n
}

/// The raw manifest bytes of `docker://HOST/NAME:TAG` over verified TLS, trusting only the
/// CA certificates (`*.crt`) in `cert_dir`.
pub fn skopeo_inspect_raw_verified(reference: &str, cert_dir: &Path) -> Result<Vec<u8>, String> {
    let mut cmd = skopeo();
    cmd.args(["inspect", "--raw", "--tls-verify=true", "--cert-dir"])
        .arg(cert_dir)
        .arg(reference);
    run_ok(&mut cmd, SKOPEO_TIMEOUT)
}

/// The raw manifest bytes of `reference` as skopeo resolves it through the mirrors of the
/// `registries.conf` file at `conf` (the file podman and CRI-O read too).
pub fn skopeo_inspect_raw_with_registries_conf(
    reference: &str,
    conf: &Path,
) -> Result<Vec<u8>, String> {
    let mut cmd = skopeo();
    cmd.arg("--registries-conf")
        .arg(conf)
        .args(["inspect", "--raw"])
        .arg(reference);
    run_ok(&mut cmd, SKOPEO_TIMEOUT)
}
