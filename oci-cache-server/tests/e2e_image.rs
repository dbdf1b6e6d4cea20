//! End to end: the container image (`deploy/Dockerfile`) is built and run. These machines
//! cannot reach Docker Hub, so its bases are a Debian made here (`debootstrap` from
//! Debian's packages, imported with podman) given as build arguments, and the builder
//! stage takes the binary the tests built. Then the image runs: as uid 10001, its
//! HEALTHCHECK passes, skopeo pulls an image through it from the real registry, and it
//! exits 0 on SIGTERM. Its size is printed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::cache::oci_cache_bin;
use support::process::{run_ok, run_with_timeout};
use support::skopeo::skopeo_copy_to_oci_dir;
use support::{free_port, http_status, require_root, require_tool, wait_until, AuthRegistry};

/// The Debian base, made once per machine (later runs reuse it).
const BASE: &str = "localhost/oci-cache-test-base:bookworm";

fn podman(args: &[&str]) -> String {
    let mut cmd = Command::new("podman");
    cmd.args(args);
    let out = run_ok(&mut cmd, Duration::from_secs(600)).unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8_lossy(&out).trim().to_owned()
}

/// A minimal Debian bookworm with CA certificates, imported as [`BASE`].
fn debian_base() {
    let exists = Command::new("podman")
        .args(["image", "exists", BASE])
        .status()
        .is_ok_and(|s| s.success());
    if exists {
        return;
    }
    let dir = support::short_tempdir("debootstrap-");
    let root = dir.path().join("rootfs");
    let mut cmd = Command::new(require_tool("debootstrap"));
    cmd.args(["--variant=minbase", "--include=ca-certificates", "bookworm"])
        .arg(&root)
        .arg("http://deb.debian.org/debian");
    run_ok(&mut cmd, Duration::from_secs(900)).unwrap_or_else(|e| panic!("{e}"));
    for junk in [
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/man",
    ] {
        let _ = std::fs::remove_dir_all(root.join(junk));
    }
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!(
        "tar -C '{}' -c . | podman import - {BASE}",
        root.display()
    ));
    run_ok(&mut cmd, Duration::from_secs(300)).unwrap_or_else(|e| panic!("{e}"));
}

/// Removes the container and the image when the test ends, however it ends.
struct Cleanup {
    container: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "-f", &self.container])
            .output();
        let _ = Command::new("podman")
            .args(["rmi", "-f", &self.image])
            .output();
        // The builder stage's layers, left untagged by the build.
        let _ = Command::new("podman")
            .args(["image", "prune", "-f"])
            .output();
    }
}

#[test]
fn the_image_runs_as_non_root_passes_its_healthcheck_serves_a_pull_and_stops_on_sigterm() {
    require_root("building and running the image with podman");
    require_tool("podman");
    let auth = AuthRegistry::start(&[]);
    let seeded = auth.seed();
    debian_base();

    // The build context: the binary the tests built, stripped of its debug information.
    let ctx = support::short_tempdir("image-ctx-");
    std::fs::create_dir_all(ctx.path().join("prebuilt")).unwrap();
    let binary = ctx.path().join("prebuilt/oci-cache");
    std::fs::copy(oci_cache_bin(), &binary).unwrap();
    let _ = Command::new("strip")
        .arg("--strip-debug")
        .arg(&binary)
        .status();
    let tag = format!("localhost/oci-cache-test:{}", std::process::id());
    let name = format!("oci-cache-test-{}", std::process::id());
    let _cleanup = Cleanup {
        container: name.clone(),
        image: tag.clone(),
    };
    let dockerfile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/Dockerfile");
    podman(&[
        "build",
        "--format",
        "docker",
        "-f",
        dockerfile.to_str().unwrap(),
        "--build-arg",
        &format!("BUILDER_IMAGE={BASE}"),
        "--build-arg",
        &format!("RUNTIME_IMAGE={BASE}"),
        "--build-arg",
        "PREBUILT=1",
        "-t",
        &tag,
        ctx.path().to_str().unwrap(),
    ]);
    let size: u64 = podman(&["image", "inspect", "--format", "{{.Size}}", &tag])
        .parse()
        .unwrap();
    eprintln!("image {tag}: {size} bytes ({} MiB)", size >> 20);

    // Its own configuration (listening on a free port of 127.0.0.1 of the host's network,
    // so it reaches the registry there), mounted over the image's default.
    let port = free_port();
    let conf = support::short_tempdir("image-conf-");
    std::fs::write(
        conf.path().join("config.toml"),
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"/var/lib/oci-cache\"\n\n\
             [[upstreams]]\nname = \"docker.io\"\nurl = \"{}\"\n",
            auth.registry.url()
        ),
    )
    .unwrap();
    // Limits lowered explicitly: podman's defaults exceed what some sandboxes allow.
    podman(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        "--ulimit",
        "nofile=8192:8192",
        "--ulimit",
        "nproc=1024:1024",
        "-v",
        &format!("{}:/etc/oci-cache:ro", conf.path().display()),
        &tag,
    ]);
    let logs = || {
        Command::new("podman")
            .args(["logs", &name])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_default()
    };
    wait_until(
        "the container to answer /healthz",
        Duration::from_secs(30),
        || (http_status(port, "/healthz") == Some(200)).then_some(()),
        logs,
    );
    assert_eq!(
        podman(&["exec", &name, "id", "-u"]),
        "10001",
        "not the image's user"
    );
    assert_eq!(
        podman(&["inspect", "--format", "{{.Config.User}}", &name]),
        "10001:10001"
    );
    let mut check = Command::new("podman");
    check.args(["healthcheck", "run", &name]);
    let out = run_with_timeout(&mut check, Duration::from_secs(60)).unwrap();
    assert!(
        out.status.success(),
        "HEALTHCHECK failed: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        logs()
    );

    let dest = support::short_tempdir("image-pull-");
    let src = format!(
        "docker://127.0.0.1:{port}/{}:{}",
        seeded.multilayer.name, seeded.multilayer.tag
    );
    skopeo_copy_to_oci_dir(&src, &dest.path().join("img"), false, None)
        .unwrap_or_else(|e| panic!("pull through the image: {e}\n{}", logs()));
    assert!(
        auth.registry.blob_gets(None) >= seeded.multilayer.layers.len(),
        "{}",
        auth.registry.request_summary()
    );

    // SIGTERM (podman stop) ends it cleanly: exit code 0, not the 137 of a SIGKILL.
    podman(&["stop", "-t", "30", &name]);
    let code = podman(&["inspect", "--format", "{{.State.ExitCode}}", &name]);
    assert_eq!(code, "0", "{}", logs());
    assert!(logs().contains("shutting down"), "{}", logs());
}
