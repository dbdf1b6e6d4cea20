//! End to end: the `oci-cache` binary serving HTTPS (rustls) with certificates made by
//! `openssl`, a real client (skopeo, verifying TLS) pulling through it from a real
//! registry, and a certificate swapped on disk taking effect without a restart.

// Test helpers outside `#[test]` functions panic on failure like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::process::{run_ok, Proc};
use support::{
    free_port, require_tool, seed_images, short_tempdir, skopeo_inspect_raw,
    skopeo_inspect_raw_verified, wait_until, Registry, SeedOptions,
};

/// A CA and a server certificate for 127.0.0.1 it signed, as PEM files in `dir`.
struct Pki {
    /// A directory holding only the CA certificate (`ca.crt`), for skopeo's --cert-dir.
    ca_dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    run_ok(
        Command::new("openssl").current_dir(dir).args(args),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("openssl {args:?} failed: {e}"));
}

fn make_pki(dir: &Path, name: &str) -> Pki {
    require_tool("openssl");
    let dir = dir.join(name);
    let ca_dir = dir.join("ca");
    std::fs::create_dir_all(&ca_dir).unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let subject = format!("/CN=oci-cache test CA {name}");
    let mut ca = vec!["req", "-x509", "-nodes", "-days", "2"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca/ca.crt"]);
    ca.extend(["-subj", subject.as_str()]);
    openssl(&dir, &ca);
    let mut csr = vec!["req", "-nodes", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(&dir, &csr);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca/ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.crt",
        ],
    );
    Pki {
        ca_dir,
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    }
}

/// Replaces `to` with a copy of `from` atomically (write beside, then rename).
fn swap_in(from: &Path, to: &Path) {
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

#[test]
fn https_listener_serves_real_clients_and_reloads_a_swapped_certificate() {
    let registry = Registry::start_default();
    let seeded = seed_images(&registry, None, SeedOptions::default());
    let image = seeded.small.name_tag();
    let upstream_manifest = skopeo_inspect_raw(&registry.docker_ref(&image), None)
        .unwrap_or_else(|e| panic!("inspect upstream: {e}"));

    let dir = short_tempdir("oci-cache-tls-");
    let (first, second) = (make_pki(dir.path(), "one"), make_pki(dir.path(), "two"));
    let (live_cert, live_key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    swap_in(&first.cert, &live_cert);
    swap_in(&first.key, &live_key);
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[tls]\ncert_file = {live_cert:?}\nkey_file = {live_key:?}\nreload_secs = 1\n"),
    )
    .unwrap();

    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oci-cache"));
    cmd.arg("serve")
        .arg("--config")
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--upstream", &format!("docker.io={}", registry.url())])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let cache = Proc::spawn("oci-cache-tls", cmd, dir.path(), true);
    let reference = format!("docker://127.0.0.1:{port}/{image}");
    let through = |pki: &Pki| skopeo_inspect_raw_verified(&reference, &pki.ca_dir);

    // skopeo verifies the chain against the first CA only and pulls through the cache.
    let manifest = wait_until(
        "the HTTPS listener answers a verifying skopeo",
        Duration::from_secs(60),
        || through(&first).ok(),
        || cache.log_tail(),
    );
    assert_eq!(manifest, upstream_manifest, "manifest through HTTPS");
    let err = through(&second).expect_err("a client trusting only the second CA");
    assert!(
        err.contains("certificate") || err.contains("x509"),
        "refused for the certificate: {err}"
    );
    // Plain HTTP on the TLS port gets no registry answer.
    assert_ne!(support::http_status(port, "/v2/"), Some(200));

    // A broken file is reported and the current certificate stays in use.
    std::fs::write(&live_cert, "not a certificate\n").unwrap();
    wait_until(
        "the cache reports the unusable certificate",
        Duration::from_secs(30),
        || {
            cache
                .log()
                .contains("TLS certificate not reloaded")
                .then_some(())
        },
        || cache.log_tail(),
    );
    assert_eq!(through(&first).unwrap(), upstream_manifest);

    // The second pair, swapped in, takes over without a restart.
    swap_in(&second.key, &live_key);
    swap_in(&second.cert, &live_cert);
    let manifest = wait_until(
        "the reloaded certificate is served",
        Duration::from_secs(30),
        || through(&second).ok(),
        || cache.log_tail(),
    );
    assert_eq!(manifest, upstream_manifest);
    assert!(
        through(&first).is_err(),
        "the old CA no longer verifies the listener"
    );
    assert!(
        cache.log().contains("TLS certificate reloaded"),
        "{}",
        cache.log_tail()
    );
}
