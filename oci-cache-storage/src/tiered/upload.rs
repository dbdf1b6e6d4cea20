//! The shared store's side of a write with a local copy: a task that uploads the local
//! file's bytes as they are published, at the shared store's own pace. The writer never
//! waits for the shared store (a slow or failing S3 does not hold back the fill's
//! readers); the bytes wait on the local disk, not in memory.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{BlobWriter, StorageError};

/// Bytes read from the local file per write to the shared store.
const STEP: u64 = 1024 * 1024;

/// What the uploader may read: the file's first `len` bytes; `done` when no more come.
#[derive(Debug, Clone, Copy, Default)]
struct Ready {
    len: u64,
    done: bool,
}

/// A running upload of a local file into a shared store's writer.
pub(super) struct Uploader {
    ready: watch::Sender<Ready>,
    task: JoinHandle<Result<Box<dyn BlobWriter>, StorageError>>,
}

impl Uploader {
    /// Starts uploading `file` into `remote` as bytes are published.
    pub(super) fn start(remote: Box<dyn BlobWriter>, file: File) -> Self {
        let (ready, rx) = watch::channel(Ready::default());
        let task = tokio::spawn(upload(remote, Arc::new(file), rx));
        Self { ready, task }
    }

    /// The file's first `len` bytes are written and may be uploaded.
    pub(super) fn publish(&self, len: u64) {
        self.ready.send_modify(|r| r.len = r.len.max(len));
    }

    /// No bytes come after the first `len`: waits until those are uploaded and returns the
    /// shared store's writer (to commit), or its failure.
    pub(super) async fn finish(mut self, len: u64) -> Result<Box<dyn BlobWriter>, StorageError> {
        self.ready.send_replace(Ready { len, done: true });
        (&mut self.task).await.map_err(|e| StorageError::Io {
            op: "upload to the shared store",
            source: std::io::Error::other(e.to_string()),
        })?
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        // Unfinished: the shared store's writer is dropped with the task, which discards
        // what it wrote.
        self.task.abort();
    }
}

/// Uploads what is published of `file` into `remote`, in order, until done.
async fn upload(
    mut remote: Box<dyn BlobWriter>,
    file: Arc<File>,
    mut ready: watch::Receiver<Ready>,
) -> Result<Box<dyn BlobWriter>, StorageError> {
    let mut pos = 0u64;
    loop {
        let Ready { len, done } = *ready.borrow_and_update();
        while pos < len {
            let n = (len - pos).min(STEP);
            let file = Arc::clone(&file);
            // Allocated on this (runtime) thread, filled on the blocking pool.
            let mut buf = BytesMut::zeroed(n as usize);
            let chunk = tokio::task::spawn_blocking(move || {
                file.read_exact_at(&mut buf, pos).map(|()| buf.freeze())
            })
            .await
            .map_err(|e| StorageError::Io {
                op: "read the local copy",
                source: std::io::Error::other(e.to_string()),
            })?
            .map_err(StorageError::io("read the local copy"))?;
            remote.write(chunk).await?;
            pos += n;
        }
        if done {
            return Ok(remote);
        }
        if ready.changed().await.is_err() {
            return Err(StorageError::Io {
                op: "upload to the shared store",
                source: std::io::Error::other("the writer went away"),
            });
        }
    }
}
