//! Blobs too large to hold in memory: a file of random bytes, and a push of it
//! to a registry (OCI upload API: POST, then one monolithic PUT whose body
//! streams from the file in 1 MiB chunks).

use std::io::Read;
use std::path::Path;

use super::digest::sha256_file;
use super::registry::Registry;
use super::token_server::TokenServer;
use super::upload::push_blob_body;

/// Writes `len` random bytes (from /dev/urandom) to `path`; returns their
/// digest (`sha256:HEX`).
pub fn random_file(path: &Path, len: u64) -> String {
    let mut src = std::fs::File::open("/dev/urandom")
        .expect("open /dev/urandom")
        .take(len);
    let mut dst = std::io::BufWriter::with_capacity(
        1024 * 1024,
        std::fs::File::create(path).expect("create the blob file"),
    );
    let copied = std::io::copy(&mut src, &mut dst).expect("write the blob file");
    assert_eq!(copied, len, "short read from /dev/urandom");
    drop(dst);
    sha256_file(path)
}

/// Uploads the file at `path` as a blob of repository `name` (`digest` must be
/// its sha256), streaming it: never more than a few MiB in memory. With token
/// auth the push token is fetched from `auth` with its credentials.
pub async fn push_blob_file(
    client: &reqwest::Client,
    registry: &Registry,
    auth: Option<&TokenServer>,
    name: &str,
    path: &Path,
    digest: &str,
) {
    let len = std::fs::metadata(path).expect("blob file metadata").len();
    let file = tokio::fs::File::open(path)
        .await
        .expect("open the blob file");
    // Bounded by the file's length: each step reads up to 1 MiB, EOF ends it.
    let chunks = futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 1024 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let body = reqwest::Body::wrap_stream(chunks);
    push_blob_body(client, registry, auth, name, digest, len, body).await;
}

/// Bytes of one step of a generated blob.
const STEP: u64 = 1024 * 1024;

/// Step `index` of the generated blob `seed` of `len` bytes (the last one may be short).
fn generated_step(seed: u64, index: u64, len: u64) -> bytes::Bytes {
    let n = (len - index * STEP).min(STEP) as usize;
    bytes::Bytes::from(super::pseudo_random_bytes(
        seed.wrapping_mul(1_000_003).wrapping_add(index),
        n,
    ))
}

/// Pushes `len` deterministic incompressible bytes (from `seed`) as a blob of `name`,
/// generated twice as they go (once to hash, once to upload), so that no file is written
/// and never more than a few MiB are in memory. Returns the digest.
pub async fn push_generated_blob(
    client: &reqwest::Client,
    registry: &Registry,
    auth: Option<&TokenServer>,
    name: &str,
    seed: u64,
    len: u64,
) -> String {
    let steps = len.div_ceil(STEP);
    let digest = tokio::task::block_in_place(|| {
        let mut hasher = super::Sha256Pipe::new();
        for i in 0..steps {
            hasher.update(&generated_step(seed, i, len));
        }
        hasher.finish()
    });
    let chunks = futures_util::stream::iter(
        (0..steps).map(move |i| Ok::<_, std::io::Error>(generated_step(seed, i, len))),
    );
    let body = reqwest::Body::wrap_stream(chunks);
    push_blob_body(client, registry, auth, name, &digest, len, body).await;
    digest
}
