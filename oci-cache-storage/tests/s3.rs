//! The conformance suite against a REAL S3 server: s3s-fs (a SigV4-checking S3 server on a
//! directory), started per test on 127.0.0.1. Install it with
//! `cargo install s3s-fs --version 0.14.1 --features binary --locked` (scripts/test does).
#![cfg(feature = "s3")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use oci_cache_storage::s3::S3Store;
use oci_cache_storage::{BlobStore, Digest, StorageError};
use oci_cache_testkit::{http_status, require_tool, start_server, Proc, ServerSpec};
use tempfile::TempDir;

/// A running s3s-fs (killed on drop) and its directory.
struct S3Server {
    _proc: Proc,
    port: u16,
    dir: TempDir,
}

fn start_s3s_fs() -> S3Server {
    let bin = require_tool("s3s-fs");
    let dir = TempDir::new().unwrap();
    // The served directory (one subdirectory per bucket); the logs go beside it.
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("bucket")).unwrap();
    let spec = ServerSpec {
        name: "s3s-fs",
        log_dir: dir.path(),
        graceful: false,
        timeout: Duration::from_secs(20),
    };
    let (proc, port) = start_server(
        &spec,
        |port| {
            let mut cmd = Command::new(&bin);
            cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", "AKTEST", "--secret-key", "SKTEST123456"])
                .arg(&data);
            cmd
        },
        // Any HTTP answer (403 without a signature) means it serves.
        |port| http_status(port, "/").is_some(),
    )
    .unwrap_or_else(|e| panic!("s3s-fs did not start: {e}"));
    S3Server {
        _proc: proc,
        port,
        dir,
    }
}

impl S3Server {
    /// Where s3s-fs keeps the object `key` of the test bucket.
    fn object_file(&self, key: &str) -> std::path::PathBuf {
        self.dir.path().join("data/bucket").join(key)
    }
}

fn s3_store() -> std::future::Ready<(S3Server, S3Store)> {
    oci_cache_storage_test_provider();
    let server = start_s3s_fs();
    let client = AmazonS3Builder::new()
        .with_endpoint(format!("http://127.0.0.1:{}", server.port))
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_region("us-east-1")
        .with_access_key_id("AKTEST")
        .with_secret_access_key("SKTEST123456")
        .with_bucket_name("bucket")
        .build()
        .unwrap();
    let store = S3Store::new(Arc::new(client), "cache/test");
    std::future::ready((server, store))
}

fn oci_cache_storage_test_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

oci_cache_storage::blob_store_conformance!(s3, s3_store());

async fn write_all(
    store: &S3Store,
    digest: &Digest,
    data: &[u8],
    chunk: usize,
) -> Result<(), StorageError> {
    let mut w = store.writer(digest, None).await?;
    for c in data.chunks(chunk) {
        w.write(Bytes::copy_from_slice(c)).await?;
    }
    w.commit().await.map(|_| ())
}

#[tokio::test]
async fn multipart_blob_round_trips_and_a_wrong_digest_leaves_nothing() {
    let (_server, store) = s3_store().await;
    let data = oci_cache_storage::conformance::content(7, 21 * 1024 * 1024 + 5);
    let digest = Digest::sha256_of(&data);
    let wrong = Digest::sha256_of(b"something else");
    let err = write_all(&store, &wrong, &data, 300 * 1024)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::DigestMismatch { .. }),
        "{err:?}"
    );
    assert!(store.head(&wrong).await.unwrap().is_none());
    assert!(store.list(None, 10).await.unwrap().blobs.is_empty());
    write_all(&store, &digest, &data, 300 * 1024).await.unwrap();
    let back = oci_cache_storage::conformance::get_all(&store, &digest).await;
    assert!(back == data, "multipart blob reads back identical");
}

#[tokio::test]
async fn list_reports_the_last_access_of_touched_blobs() {
    let (_server, store) = s3_store().await;
    let mut digests = Vec::new();
    for seed in 0..3 {
        let data = oci_cache_storage::conformance::content(100 + seed, 1000);
        let digest = Digest::sha256_of(&data);
        write_all(&store, &digest, &data, 1000).await.unwrap();
        digests.push(digest);
    }
    digests.sort();
    let before = store.list(None, 10).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    store.touch(&digests[1]).await.unwrap();
    let after = store.list(None, 10).await.unwrap();
    assert_eq!(after.blobs.len(), 3);
    assert!(
        after.blobs[1].last_access > before.blobs[1].last_access,
        "the touched blob is newer"
    );
    assert_eq!(after.blobs[0].last_access, before.blobs[0].last_access);
    let paged = store.list(Some(&digests[0]), 1).await.unwrap();
    assert_eq!(
        paged.blobs[0].last_access, after.blobs[1].last_access,
        "also on a later page"
    );
}

/// The last-access sidecar is rewritten about once per interval at most, and a refresh
/// once per interval (a long read's, timed from the end of the last one) is never skipped
/// for being a little early.
#[tokio::test]
async fn a_touch_is_skipped_only_soon_after_the_last_one() {
    let (server, store) = s3_store().await;
    let store = store.with_touch_interval(Duration::from_secs(4));
    let data = oci_cache_storage::conformance::content(7, 1000);
    let digest = Digest::sha256_of(&data);
    write_all(&store, &digest, &data, 1000).await.unwrap();
    let sidecar = server.object_file(&format!("cache/test/access/sha256/{}", digest.hex()));
    store.touch(&digest).await.unwrap();
    assert!(sidecar.is_file(), "{sidecar:?} written");
    std::fs::remove_file(&sidecar).unwrap();
    store.touch(&digest).await.unwrap();
    assert!(
        !sidecar.exists(),
        "a touch right after the last one is skipped"
    );
    tokio::time::sleep(Duration::from_millis(3400)).await;
    store.touch(&digest).await.unwrap();
    assert!(
        sidecar.is_file(),
        "a touch 3.4 s into a 4 s interval goes through"
    );
}

/// An S3 server that answers 500 to a HEAD of a last-access sidecar while `broken` is
/// set (a fault s3s-fs cannot produce on demand); everything else goes to memory.
#[derive(Debug)]
struct SidecarFault {
    inner: object_store::memory::InMemory,
    broken: std::sync::atomic::AtomicBool,
}

impl std::fmt::Display for SidecarFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SidecarFault")
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for SidecarFault {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        if options.head
            && location.as_ref().contains("/access/")
            && self.broken.load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(object_store::Error::Generic {
                store: "S3",
                source: "500 Internal Server Error".into(),
            });
        }
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: futures_util::stream::BoxStream<
            'static,
            object_store::Result<object_store::path::Path>,
        >,
    ) -> futures_util::stream::BoxStream<'static, object_store::Result<object_store::path::Path>>
    {
        self.inner.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures_util::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>
    {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// The last access an eviction asks for right before it deletes: the sidecar's time when
/// there is one, the blob's own when there is none, and an error (never the blob's older
/// time) when the sidecar cannot be read, so a blob being read elsewhere is not taken for
/// an idle one. A hit's `head` still works then.
#[tokio::test]
async fn an_unreadable_last_access_is_an_error_not_an_old_time() {
    let fault = Arc::new(SidecarFault {
        inner: object_store::memory::InMemory::new(),
        broken: std::sync::atomic::AtomicBool::new(false),
    });
    let store = S3Store::new(fault.clone(), "cache/test");
    let data = oci_cache_storage::conformance::content(8, 1000);
    let digest = Digest::sha256_of(&data);
    write_all(&store, &digest, &data, 1000).await.unwrap();
    let written = store.last_access(&digest).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    store.touch(&digest).await.unwrap();
    let touched = store.last_access(&digest).await.unwrap().unwrap();
    assert!(touched > written, "the sidecar's time counts");
    fault
        .broken
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let err = store.last_access(&digest).await;
    assert!(err.is_err(), "an unreadable sidecar read as {err:?}");
    assert!(
        store.head(&digest).await.unwrap().is_some(),
        "a hit still works"
    );
}
