//! Filesystem backend.
//!
//! Layout under the root directory:
//!
//! - `blobs/<algorithm>/<first two hex>/<hex>`: committed blobs, each whole and verified;
//! - `tmp/`: writes in progress (on the same filesystem, so publishing is one atomic
//!   rename), swept by [`FsStore::open`];
//! - `tags/<namespace>/<repository segments...>/%tags/<tag>.json`: tag records, every
//!   component encoded so no key can name a path outside `tags/`.
//!
//! A blob file appears in `blobs/` only by renaming a fully written, verified and fsynced
//! temporary file, so a crash leaves at most a leftover in `tmp/`, never a partial blob.
//! The last access time of a blob is its file's modification time.
//!
//! One root must be used by one process at a time: `open` removes everything in `tmp/`.

mod list;
mod publish;
mod tags;
mod writer;

use std::io::{self, ErrorKind};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::BytesMut;
use futures_util::stream::{self, StreamExt};

use crate::{
    resolve_request, BlobMeta, BlobStore, BlobStream, BlobWriter, ByteRange, Digest, ListPage,
    ResolvedRange, StorageError,
};

/// Size of the chunks `get` streams.
const CHUNK: u64 = 512 * 1024;
/// Blobs and ranges up to this size are read in the same blocking call that opens them.
const SMALL: usize = 64 * 1024;

/// A [`BlobStore`] and [`TagStore`](crate::TagStore) in a directory.
/// Cheap to clone; clones share the directory.
#[derive(Debug, Clone)]
pub struct FsStore {
    layout: Arc<Layout>,
}

/// The directories of a store.
#[derive(Debug)]
struct Layout {
    root: PathBuf,
    blobs: PathBuf,
    tmp: PathBuf,
    tags: PathBuf,
}

impl Layout {
    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.blobs
            .join(digest.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }
}

/// Runs blocking filesystem work on tokio's blocking pool.
async fn blocking<T, F>(op: &'static str, f: F) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Io {
            op,
            source: io::Error::other(e),
        })?
}

fn meta_of(digest: &Digest, md: &std::fs::Metadata) -> Result<BlobMeta, StorageError> {
    Ok(BlobMeta {
        digest: digest.clone(),
        size: md.len(),
        last_access: md.modified().map_err(StorageError::io("read blob mtime"))?,
    })
}

impl FsStore {
    /// Opens (creating if needed) a store rooted at `root`, and removes leftovers of writes
    /// that an earlier process did not finish.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        Self::open_with(root.into(), true).await
    }

    /// Opens a store that another process (a running cache) may be writing to: the same
    /// layout, but leftovers in `tmp/` are left alone, since they may be that process's
    /// writes in progress. For one-shot jobs beside a cache (prefetch, gc, verify).
    pub async fn open_shared(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        Self::open_with(root.into(), false).await
    }

    async fn open_with(root: PathBuf, sweep_tmp: bool) -> Result<Self, StorageError> {
        let layout = Layout {
            blobs: root.join("blobs"),
            tmp: root.join("tmp"),
            tags: root.join("tags"),
            root,
        };
        let layout = blocking("open store", move || {
            for dir in [&layout.blobs, &layout.tmp, &layout.tags] {
                std::fs::create_dir_all(dir)
                    .map_err(StorageError::io_at("create the store's directory", dir))?;
            }
            let swept = if sweep_tmp {
                sweep(&layout.tmp).map_err(StorageError::io_at("sweep tmp", &layout.tmp))?
            } else {
                0
            };
            if swept > 0 {
                tracing::info!(swept, root = %layout.root.display(), "removed leftovers of interrupted writes");
            }
            Ok(layout)
        })
        .await?;
        Ok(Self {
            layout: Arc::new(layout),
        })
    }

    /// The directory the store lives in.
    pub fn root(&self) -> &std::path::Path {
        &self.layout.root
    }
}

/// Removes everything in `tmp`; returns how many entries it removed.
fn sweep(tmp: &std::path::Path) -> io::Result<usize> {
    let mut swept = 0;
    for entry in std::fs::read_dir(tmp)? {
        let entry = entry?;
        let path = entry.path();
        let removed = if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            Ok(()) => swept += 1,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove leftover"),
        }
    }
    Ok(swept)
}

/// Opens a stored blob and resolves `range` against its size; `None` when it is not stored.
/// Blocking.
fn open_blob(
    path: &std::path::Path,
    range: Option<ByteRange>,
) -> Result<Option<(std::fs::File, std::fs::Metadata, ResolvedRange)>, StorageError> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io("open blob")(e)),
    };
    let md = file.metadata().map_err(StorageError::io("stat blob"))?;
    let resolved = resolve_request(range, md.len())?;
    Ok(Some((file, md, resolved)))
}

/// Streams `len` bytes of `file` from `start`, in chunks of at most [`CHUNK`].
///
/// A chunk in the page cache (a warm hit) is read right here on the runtime thread with
/// `RWF_NOWAIT`, which never waits for the disk: no trip to the blocking pool and back,
/// which cost a quarter of a warm GiB's CPU in context switches. Whatever is not cached is
/// read on the blocking pool.
fn stream_file(file: std::fs::File, start: u64, len: u64) -> BlobStream {
    let file = Arc::new(file);
    let end = start + len;
    stream::try_unfold(start, move |pos| {
        let file = Arc::clone(&file);
        async move {
            if pos >= end {
                return Ok(None);
            }
            let n = usize::try_from((end - pos).min(CHUNK)).unwrap_or(0);
            let bytes = crate::page_cache::read_at(file, pos, n)
                .await
                .map_err(StorageError::io("read blob"))?;
            Ok(Some((bytes, pos + n as u64)))
        }
    })
    .boxed()
}

#[async_trait]
impl BlobStore for FsStore {
    async fn head(&self, digest: &Digest) -> Result<Option<BlobMeta>, StorageError> {
        match tokio::fs::metadata(self.layout.blob_path(digest)).await {
            Ok(md) => meta_of(digest, &md).map(Some),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::io("stat blob")(e)),
        }
    }

    async fn get(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<(BlobMeta, ResolvedRange, BlobStream), StorageError> {
        let path = self.layout.blob_path(digest);
        // Small blobs and ranges (manifests, configs: most requests) are read in the call
        // that opens the file: one trip to the blocking pool instead of two. The buffer is
        // allocated here, on a runtime thread (see `stream_file`).
        let mut small = BytesMut::zeroed(SMALL);
        let opened = blocking("open blob", move || {
            let Some((file, md, resolved)) = open_blob(&path, range)? else {
                return Ok(None);
            };
            let whole = match usize::try_from(resolved.len()) {
                Ok(n) if n <= SMALL => {
                    small.truncate(n);
                    file.read_exact_at(&mut small, resolved.start)
                        .map_err(StorageError::io("read blob"))?;
                    Some(small.freeze())
                }
                _ => None,
            };
            Ok(Some((file, md, resolved, whole)))
        })
        .await?;
        let Some((file, md, resolved, whole)) = opened else {
            return Err(StorageError::NotFound {
                digest: digest.clone(),
            });
        };
        let meta = meta_of(digest, &md)?;
        let body = match whole {
            Some(bytes) if bytes.is_empty() => stream::empty().boxed(),
            Some(bytes) => stream::once(async move { Ok(bytes) }).boxed(),
            None => stream_file(file, resolved.start, resolved.len()),
        };
        Ok((meta, resolved, body))
    }

    async fn open_file(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<Option<(BlobMeta, ResolvedRange, std::fs::File)>, StorageError> {
        let path = self.layout.blob_path(digest);
        let opened = blocking("open blob", move || open_blob(&path, range)).await?;
        let Some((file, md, resolved)) = opened else {
            return Err(StorageError::NotFound {
                digest: digest.clone(),
            });
        };
        Ok(Some((meta_of(digest, &md)?, resolved, file)))
    }

    async fn writer(
        &self,
        digest: &Digest,
        expected_size: Option<u64>,
    ) -> Result<Box<dyn BlobWriter>, StorageError> {
        let writer = writer::FsWriter::create(&self.layout, digest, expected_size).await?;
        Ok(Box::new(writer))
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.layout.blob_path(digest)).await {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(StorageError::io("delete blob")(e)),
            _ => Ok(()),
        }
    }

    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<ListPage, StorageError> {
        let layout = Arc::clone(&self.layout);
        let after = after.cloned();
        blocking("list blobs", move || {
            list::list(&layout.blobs, after.as_ref(), limit)
        })
        .await
    }

    async fn touch(&self, digest: &Digest) -> Result<(), StorageError> {
        let path = self.layout.blob_path(digest);
        let digest = digest.clone();
        blocking("touch blob", move || {
            let file = match std::fs::OpenOptions::new().write(true).open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(StorageError::NotFound { digest })
                }
                Err(e) => return Err(StorageError::io("open blob for touch")(e)),
            };
            file.set_modified(SystemTime::now())
                .map_err(StorageError::io("touch blob"))
        })
        .await
    }
}
