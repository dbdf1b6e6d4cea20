//! Runs the `mirror` and `custom-storage` example binaries as their READMEs say, against a
//! real registry: each serves a blob, stores it under its data directory, and answers the
//! second pull from its storage.

// Test helpers outside #[test] functions too: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{client, Upstream, REPO};
use oci_cache_testkit::free_port;

/// A child process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `bin UPSTREAM 127.0.0.1:PORT DATA_DIR` and waits until it answers `/v2/`.
async fn start(bin: &str, upstream: &str, data: &std::path::Path) -> (Running, String) {
    let port = free_port();
    let child = Command::new(bin)
        .arg(upstream)
        .arg(format!("127.0.0.1:{port}"))
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(resp) = client().get(format!("{base}/v2/")).send().await {
            assert_eq!(resp.status(), 200);
            return (running, base);
        }
        assert!(
            running.0.try_wait().unwrap().is_none(),
            "{bin} exited before answering"
        );
        assert!(Instant::now() < deadline, "{bin} did not answer in 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pulls a small and a larger blob twice each through the example at `bin`.
async fn pull_twice_through(bin: &str) {
    let mut upstream = Upstream::start().await;
    let small = upstream.push(11, 2_000).await;
    let large = upstream.push(12, 3 << 20).await;
    let dir = tempfile::tempdir().unwrap();
    let (_running, base) = start(bin, &upstream.url(), dir.path()).await;
    for (digest, bytes) in [&small, &large] {
        for _ in 0..2 {
            let resp = client()
                .get(format!("{base}/v2/{REPO}/blobs/{digest}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.bytes().await.unwrap(), bytes.as_slice());
        }
        assert_eq!(upstream.blob_gets(digest), 1, "{bin}: one upstream GET");
        let hex = digest.trim_start_matches("sha256:");
        let stored = dir
            .path()
            .join("store/blobs/sha256")
            .join(&hex[..2])
            .join(hex);
        // The client has every byte once they are verified; the store renames the file into
        // place right after, so give the commit a moment rather than racing it.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !stored.exists() {
            assert!(
                Instant::now() < deadline,
                "{bin}: {} not stored in 30 s",
                stored.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(std::fs::read(&stored).unwrap(), bytes.as_slice());
    }
}

#[tokio::test]
async fn mirror_example_pulls_through_and_stores_on_disk() {
    pull_twice_through(env!("CARGO_BIN_EXE_mirror")).await;
}

#[tokio::test]
async fn custom_storage_example_pulls_through_and_stores_on_disk() {
    pull_twice_through(env!("CARGO_BIN_EXE_custom-storage")).await;
}
