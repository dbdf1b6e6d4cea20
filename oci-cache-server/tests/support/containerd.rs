//! A private containerd daemon (root, state and sockets in a temporary
//! directory, CRI plugin off) driven with `ctr`, and hosts.toml mirrors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use super::process::{describe_failure, run_ok, run_with_timeout, Proc};
use super::tools::{require_root, require_tool, short_tempdir};

/// A running containerd; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Containerd {
    socket: PathBuf,
    proc: Proc,
    dir: tempfile::TempDir,
}

impl Containerd {
    /// Starts a daemon and waits (at most 20 s) until `ctr version` works.
    pub fn start() -> Containerd {
        require_tool("containerd");
        require_tool("ctr");
        require_root("a private containerd daemon");
        let dir = short_tempdir("oci-ctrd-");
        let p = dir.path();
        let socket = p.join("containerd.sock");
        let config = format!(
            "version = 2\n\
             root = \"{root}\"\n\
             state = \"{state}\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n\
             [ttrpc]\n  address = \"{ttrpc}\"\n\
             [debug]\n  address = \"{debug}\"\n  level = \"info\"\n\
             [metrics]\n  address = \"\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{opt}\"\n",
            root = p.join("root").display(),
            state = p.join("state").display(),
            sock = socket.display(),
            ttrpc = p.join("ttrpc.sock").display(),
            debug = p.join("debug.sock").display(),
            opt = p.join("opt").display(),
        );
        let config_path = p.join("config.toml");
        std::fs::write(&config_path, config).expect("write containerd config");
        let mut cmd = Command::new("containerd");
        cmd.arg("--config").arg(&config_path);
        let mut proc = Proc::spawn("containerd", cmd, p, true);
        let mut ctrd = None;
        for _ in 0..400 {
            if proc.exited().is_some() {
                break;
            }
            let mut version = Command::new("ctr");
            version.arg("--address").arg(&socket).arg("version");
            if socket.exists() && run_ok(&mut version, Duration::from_secs(5)).is_ok() {
                ctrd = Some(());
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            ctrd.is_some(),
            "containerd did not start\n{}",
            proc.log_tail()
        );
        Containerd { socket, proc, dir }
    }

    fn ctr(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address").arg(&self.socket);
        cmd
    }

    /// `ctr images pull --hosts-dir DIR [--all-platforms] REF` with the native
    /// snapshotter (layers are unpacked too). Err holds ctr's output.
    pub fn pull(
        &self,
        image_ref: &str,
        hosts_dir: &Path,
        all_platforms: bool,
    ) -> Result<Output, String> {
        self.pull_as(image_ref, hosts_dir, all_platforms, None)
    }

    /// [`Containerd::pull`] with registry credentials (`user:pass`): containerd
    /// then asks the token server with the OAuth2 form (POST grant_type=password).
    pub fn pull_as(
        &self,
        image_ref: &str,
        hosts_dir: &Path,
        all_platforms: bool,
        user: Option<&str>,
    ) -> Result<Output, String> {
        let mut cmd = self.ctr();
        cmd.args(["images", "pull", "--snapshotter", "native", "--hosts-dir"])
            .arg(hosts_dir);
        if all_platforms {
            cmd.arg("--all-platforms");
        }
        if let Some(u) = user {
            cmd.args(["--user", u]);
        }
        cmd.arg(image_ref);
        let out = run_with_timeout(&mut cmd, Duration::from_secs(180))?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(describe_failure(&cmd, &out))
        }
    }

    /// Pulls `image_ref` and checks it resolved to `digest`; panics with containerd's log
    /// and `context()` (e.g. the cache's log) when either fails.
    pub fn pull_expecting(
        &self,
        image_ref: &str,
        hosts: &Path,
        all_platforms: bool,
        digest: &str,
        context: &dyn Fn() -> String,
    ) {
        if let Err(e) = self.pull(image_ref, hosts, all_platforms) {
            panic!(
                "ctr pull {image_ref}: {e}\n{}\n{}",
                self.log_tail(),
                context()
            );
        }
        assert_eq!(
            self.image_digest(image_ref).as_deref(),
            Some(digest),
            "{image_ref}\n{}",
            context()
        );
    }

    /// The digest `ctr images ls` shows for `image_ref` (e.g.
    /// `docker.io/test/index:latest`), if the image is known.
    pub fn image_digest(&self, image_ref: &str) -> Option<String> {
        let mut cmd = self.ctr();
        cmd.args(["images", "ls"]);
        let out = run_ok(&mut cmd, Duration::from_secs(30)).ok()?;
        String::from_utf8_lossy(&out).lines().find_map(|line| {
            let mut cols = line.split_whitespace();
            (cols.next()? == image_ref).then_some(())?;
            let _type = cols.next()?;
            cols.next().map(str::to_owned)
        })
    }

    /// Every digest in the content store (`ctr content ls -q`).
    pub fn content_digests(&self) -> Vec<String> {
        let mut cmd = self.ctr();
        cmd.args(["content", "ls", "-q"]);
        let out = run_ok(&mut cmd, Duration::from_secs(30)).unwrap_or_default();
        String::from_utf8_lossy(&out)
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// A fresh directory for hosts.toml files, inside the daemon's temp dir.
    pub fn hosts_dir(&self, name: &str) -> PathBuf {
        let d = self.dir.path().join(name);
        std::fs::create_dir_all(&d).expect("create hosts dir");
        d
    }

    /// Log tail for failure messages.
    pub fn log_tail(&self) -> String {
        self.proc.log_tail()
    }
}

/// Writes `HOSTS_DIR/REGISTRY/hosts.toml` making `mirror_url` (e.g. the cache)
/// the pull/resolve host for `registry` (e.g. `docker.io`), with `server` at
/// `server_url`. Point `server_url` at a dead port: containerd silently falls
/// back to `server` when the mirror fails, and that must show as a failure.
pub fn write_hosts_toml(
    hosts_dir: &Path,
    registry: &str,
    mirror_url: &str,
    server_url: &str,
) -> PathBuf {
    let dir = hosts_dir.join(registry);
    std::fs::create_dir_all(&dir).expect("create hosts.toml dir");
    let path = dir.join("hosts.toml");
    let text = format!(
        "server = \"{server_url}\"\n\n[host.\"{mirror_url}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
    );
    std::fs::write(&path, text).expect("write hosts.toml");
    path
}
