//! A real S3 server: `s3s-fs` (the s3s project's filesystem-backed S3 server) on an
//! ephemeral port of 127.0.0.1, each bucket a directory of its data directory, so tests can
//! look at the stored objects directly, and count the requests it answered.
//!
//! Needs `s3s-fs` on PATH or in ~/.cargo/bin:
//! `cargo install s3s-fs --version 0.14.1 --features binary --locked`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::net::http_status;
use crate::process::{start_server_on, Proc, ServerSpec};
use crate::tools::{require_tool, short_tempdir};

/// The access key the server accepts.
pub const S3_ACCESS_KEY: &str = "AK";
/// The secret key the server accepts.
pub const S3_SECRET_KEY: &str = "SK";

/// A running `s3s-fs`; killed on drop. Its data directory holds one directory
/// per bucket, and an object `KEY` of bucket `B` is the file `B/KEY` there
/// (once written completely: s3s-fs writes a temporary file and renames it).
pub struct S3Server {
    /// Its port on 127.0.0.1.
    pub port: u16,
    proc: Proc,
    dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts s3s-fs with the given buckets (created as empty directories).
    pub fn start(buckets: &[&str]) -> S3Server {
        Self::start_on(None, buckets)
    }

    /// [`S3Server::start`] on `port` of 127.0.0.1 (one attempt), e.g. the port a cache
    /// was already told; `None`: a free one.
    pub fn start_on(port: Option<u16>, buckets: &[&str]) -> S3Server {
        let bin = require_tool("s3s-fs");
        let dir = short_tempdir("oci-s3-");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("create the S3 data directory");
        for bucket in buckets {
            std::fs::create_dir_all(data.join(bucket)).expect("create a bucket directory");
        }
        let spec = ServerSpec {
            name: "s3s-fs",
            log_dir: dir.path(),
            graceful: false,
            timeout: Duration::from_secs(10),
        };
        let (proc, port) = start_server_on(
            &spec,
            port,
            |port| {
                let mut cmd = Command::new(&bin);
                cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
                    .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
                    .arg(&data)
                    // s3s logs each request it answered at debug (`s3s::service`).
                    .env("RUST_LOG", "info,s3s::service=debug")
                    .env("NO_COLOR", "1");
                cmd
            },
            // Any HTTP answer (403 without a signature) means it serves.
            |port| http_status(port, "/").is_some(),
        )
        .unwrap_or_else(|e| panic!("s3s-fs did not start: {e}"));
        S3Server { port, proc, dir }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The AWS environment that points an S3 client (object_store) at this
    /// server, path-style, over plain HTTP.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
            ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY.to_owned()),
        ]
    }

    /// The server's data directory (one directory per bucket).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Where object `key` of `bucket` lives on disk once it is complete.
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.data_dir().join(bucket).join(key)
    }

    /// Every complete object of `bucket` whose key starts with `prefix/`
    /// (keys relative to the bucket), sorted.
    pub fn object_keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let root = self.data_dir().join(bucket);
        let mut out = Vec::new();
        let mut dirs = vec![root.join(prefix)];
        // Bounded by the size of the tree.
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if let Ok(rel) = path.strip_prefix(&root) {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        out.sort();
        out
    }

    /// The multipart uploads that are neither completed nor aborted: s3s-fs
    /// keeps each as `.upload-ID.json` plus `.upload_id-ID.part-N` files in
    /// its data directory. Returns those file names, sorted.
    pub fn unfinished_uploads(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.data_dir())
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .filter(|n| n.starts_with(".upload"))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// Creates an empty bucket (a directory of the data directory).
    pub fn create_bucket(&self, bucket: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(self.data_dir().join(bucket))
    }

    /// The whole log.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// Requests answered so far (one `s3s::service` line with the duration each, in its
    /// stdout).
    pub fn requests(&self) -> usize {
        self.proc
            .stdout()
            .lines()
            .filter(|l| l.contains("s3s::service: duration"))
            .count()
    }

    /// Log tail for failure messages.
    pub fn log_tail(&self) -> String {
        self.proc.log_tail()
    }
}
