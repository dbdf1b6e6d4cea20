//! External tools the tests need: a missing one fails the test loudly with the
//! command that installs it (the tests never skip themselves, under CI=true or
//! anywhere else), and short temporary directories.

use std::path::{Path, PathBuf};

/// How to install each tool.
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
        "s3s-fs" => "cargo install s3s-fs --version 0.14.1 --features binary --locked",
        _ => "install it with apt-get",
    }
}

/// The path of `name`: on PATH, else in cargo's bin directory (`$CARGO_HOME/bin`
/// or `~/.cargo/bin`, where `cargo install` puts tools); panics with the
/// command that installs it when it is in neither.
pub fn require_tool(name: &str) -> PathBuf {
    if let Some(path) = find_tool(name) {
        return path;
    }
    panic!(
        "\n\n*** The tests need `{name}`, which is neither on PATH nor in ~/.cargo/bin. ***\n\
         Install it with:\n    {}\n\
         (the tests deliberately fail instead of skipping when a tool is missing)\n\n",
        install_hint(name)
    );
}

/// Where [`require_tool`] finds `name`, if anywhere.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| is_executable(p))
    });
    on_path.or_else(|| {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))?;
        Some(home.join("bin").join(name)).filter(|p| is_executable(p))
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Panics unless the tests run as root (containerd, dockerd and mounts need it).
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

/// A temporary directory under /tmp (short paths: unix sockets live there).
/// Set `OCI_CACHE_E2E_KEEP=1` to keep it (and the logs in it) after the test.
pub fn short_tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .disable_cleanup(std::env::var_os("OCI_CACHE_E2E_KEEP").is_some())
        .tempdir_in("/tmp")
        .expect("create a temporary directory in /tmp")
}
