//! External tools the e2e tests need: a missing one fails the test loudly with
//! the command that installs it (the tests never skip themselves).

use std::path::{Path, PathBuf};

/// The Debian package that provides each tool.
fn install_hint(name: &str) -> &'static str {
    match name {
        "docker-registry" => "apt-get install -y --no-install-recommends docker-registry",
        "skopeo" => "apt-get install -y --no-install-recommends skopeo",
        "containerd" | "ctr" => "apt-get install -y --no-install-recommends containerd",
        "openssl" => "apt-get install -y --no-install-recommends openssl",
        "python3" => "apt-get install -y --no-install-recommends python3",
        "sha256sum" => "apt-get install -y --no-install-recommends coreutils",
        "dockerd" | "docker" => "apt-get install -y --no-install-recommends docker.io",
        "htpasswd" => "apt-get install -y --no-install-recommends apache2-utils",
        "promtool" => "apt-get install -y --no-install-recommends prometheus",
        _ => "install it with apt-get",
    }
}

/// The path of `name` on PATH; panics with an install hint when it is missing.
pub fn require_tool(name: &str) -> PathBuf {
    if let Some(path) = find_on_path(name) {
        return path;
    }
    panic!(
        "\n\n*** The e2e tests need `{name}`, which is not on PATH. ***\n\
         Install it with:\n    {}\n\
         (the tests deliberately fail instead of skipping when a tool is missing)\n\n",
        install_hint(name)
    );
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Panics unless the tests run as root (containerd needs it).
pub fn require_root(why: &str) {
    let out = std::process::Command::new("id")
        .arg("-u")
        .output()
        .expect("run id -u");
    let uid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        uid == "0",
        "\n\n*** {why} needs root (uid 0), but the tests run as uid {uid}. ***\n\n"
    );
}

/// A file under tests/fixtures of this package.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

/// A temporary directory under /tmp (short paths: unix sockets live there).
/// Set `OCI_CACHE_E2E_KEEP=1` to keep it (and the logs in it) after the test.
pub fn short_tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .disable_cleanup(std::env::var_os("OCI_CACHE_E2E_KEEP").is_some())
        .tempdir_in("/tmp")
        .expect("create a temporary directory in /tmp")
}
