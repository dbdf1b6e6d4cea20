//! The `oci-cache` binary under test, on an ephemeral port with its own data
//! directory (started with the shared harness's [`OciCache`]).

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use oci_cache_testkit::{
    free_port, run_ok, run_with_timeout, short_tempdir, CacheOptions, OciCache,
};

/// The binary under test.
pub fn oci_cache_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_oci-cache"))
}

/// A running cache with a data directory of its own; stopped (SIGTERM, then
/// SIGKILL) on drop. Derefs to [`OciCache`] (port, url, logs, stop...).
pub struct Cache {
    run: OciCache,
    dir: tempfile::TempDir,
}

impl Deref for Cache {
    type Target = OciCache;
    fn deref(&self) -> &OciCache {
        &self.run
    }
}

impl DerefMut for Cache {
    fn deref_mut(&mut self) -> &mut OciCache {
        &mut self.run
    }
}

impl Cache {
    /// Starts `oci-cache serve` with `upstreams` as (NAME, URL) pairs; the first
    /// is the default upstream. `RUST_LOG` is passed on (default `info`).
    pub fn start(upstreams: &[(&str, String)]) -> Cache {
        let options = CacheOptions {
            upstreams: upstreams
                .iter()
                .map(|(n, u)| ((*n).to_owned(), u.clone()))
                .collect(),
            ..CacheOptions::for_tests()
        };
        Self::launch(None, options).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts `oci-cache serve --config FILE` with `toml` as the file (its
    /// `listen` and `data_dir`, if any, are overridden by `--listen` and
    /// `--data-dir` flags) and `env` added to the environment (e.g. the
    /// variables named by `password_env` or `token_env`). Ready means
    /// `GET /v2/` answers 200, or 401 when no upstream is anonymous.
    pub fn start_with_config(toml: &str, env: &[(&str, &str)]) -> Cache {
        Self::start_with_config_at(toml, env, None)
    }

    /// [`Cache::start_with_config`] listening on `port` of 127.0.0.1 (e.g. one the
    /// configuration already names).
    pub fn start_with_config_on(toml: &str, env: &[(&str, &str)], port: u16) -> Cache {
        Self::start_with_config_at(toml, env, Some(port))
    }

    fn start_with_config_at(toml: &str, env: &[(&str, &str)], port: Option<u16>) -> Cache {
        let options = CacheOptions {
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ready_on_401: true,
            port,
            ..CacheOptions::for_tests()
        };
        Self::launch(Some(toml), options).unwrap_or_else(|e| panic!("{e}"))
    }

    fn launch(config: Option<&str>, mut options: CacheOptions) -> Result<Cache, String> {
        let dir = short_tempdir("oci-cache-");
        if let Some(text) = config {
            let path = dir.path().join("config.toml");
            std::fs::write(&path, text).expect("write the cache's config file");
            options.config = Some(path);
        }
        let run = OciCache::start(
            oci_cache_bin(),
            &dir.path().join("data"),
            dir.path(),
            "oci-cache",
            &options,
        )?;
        Ok(Cache { run, dir })
    }

    /// The config file the cache was started with (if any).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// The cache's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// Runs the `oci-cache` binary with `args` (e.g. `config containerd --config
/// FILE --cache-url URL`) to completion (at most 30 s); Ok is stdout, Err the
/// whole account of a failure.
pub fn run_cli(args: &[&std::ffi::OsStr]) -> Result<String, String> {
    let mut cmd = Command::new(oci_cache_bin());
    cmd.args(args).env("NO_COLOR", "1");
    run_ok(&mut cmd, Duration::from_secs(30)).map(|out| String::from_utf8_lossy(&out).into_owned())
}

/// Runs `oci-cache serve --config FILE` with `toml` as the file, expecting it to
/// refuse the configuration: returns (exit status, stderr) once it has exited
/// (at most 20 s; a cache that keeps running is an Err).
pub fn serve_expecting_refusal(
    toml: &str,
    env: &[(&str, &str)],
) -> Result<(std::process::ExitStatus, String), String> {
    let dir = short_tempdir("oci-cache-refuse-");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, toml).expect("write config");
    let mut cmd = Command::new(oci_cache_bin());
    cmd.arg("serve")
        .arg("--config")
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "debug");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run_with_timeout(&mut cmd, Duration::from_secs(20))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status, text))
}
