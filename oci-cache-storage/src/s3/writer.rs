//! The streaming blob writer of the S3 backend: bytes are hashed as they come; a blob
//! smaller than one part is one PUT at commit; a larger one streams as multipart parts and
//! the upload is completed only after verification (else aborted), so nothing unverified or
//! partial is ever visible.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};

use super::backend;
use crate::write_check::WriteCheck;
use crate::{BlobWriter, CommitOutcome, Digest, StorageError};

/// Size of a multipart part (S3's minimum is 5 MiB for all but the last).
const PART: usize = 8 * 1024 * 1024;

pub(super) struct S3Writer {
    store: Arc<dyn ObjectStore>,
    location: Path,
    digest: Digest,
    expected_size: Option<u64>,
    check: WriteCheck,
    pending: BytesMut,
    upload: Option<Box<dyn MultipartUpload>>,
    /// Set once a part failed: the upload can only be aborted.
    broken: bool,
}

impl S3Writer {
    pub(super) fn new(
        store: Arc<dyn ObjectStore>,
        location: Path,
        digest: Digest,
        expected_size: Option<u64>,
    ) -> Self {
        Self {
            store,
            location,
            check: WriteCheck::new(&digest),
            digest,
            expected_size,
            pending: BytesMut::new(),
            upload: None,
            broken: false,
        }
    }

    /// Uploads full parts from the buffer, starting the multipart upload if needed.
    async fn send_parts(&mut self, all: bool) -> Result<(), StorageError> {
        while self.pending.len() >= PART || (all && !self.pending.is_empty()) {
            let take = self.pending.len().min(PART);
            let part = self.pending.split_to(take).freeze();
            if self.upload.is_none() {
                let upload = self
                    .store
                    .put_multipart(&self.location)
                    .await
                    .map_err(backend("start multipart upload"))?;
                self.upload = Some(upload);
            }
            let Some(upload) = self.upload.as_mut() else {
                break;
            };
            let sent = upload.put_part(PutPayload::from(part)).await;
            if let Err(e) = sent {
                self.broken = true;
                return Err(backend("upload part")(e));
            }
        }
        Ok(())
    }

    async fn abort_upload(&mut self) {
        if let Some(mut upload) = self.upload.take() {
            if let Err(e) = upload.abort().await {
                tracing::warn!(location = %self.location, error = %e, "could not abort a multipart upload");
            }
        }
    }
}

#[async_trait]
impl BlobWriter for S3Writer {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        if self.broken {
            return Err(StorageError::Io {
                op: "write blob",
                source: std::io::Error::other("an earlier part upload failed"),
            });
        }
        self.check.update(&chunk);
        self.pending.extend_from_slice(&chunk);
        self.send_parts(false).await
    }

    fn digest_checked_by_caller(&mut self) {
        self.check.skip_digest();
    }

    async fn commit(mut self: Box<Self>) -> Result<CommitOutcome, StorageError> {
        if let Err(e) = self.check.check(&self.digest, self.expected_size) {
            self.abort_upload().await;
            return Err(e);
        }
        let exists = match self.store.head(&self.location).await {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => return Err(backend("head blob")(e)),
        };
        if exists {
            self.abort_upload().await;
            return Ok(CommitOutcome::AlreadyExists);
        }
        if self.upload.is_none() {
            let bytes = self.pending.split().freeze();
            self.store
                .put(&self.location, PutPayload::from(bytes))
                .await
                .map_err(backend("put blob"))?;
            return Ok(CommitOutcome::Stored);
        }
        if let Err(e) = self.send_parts(true).await {
            self.abort_upload().await;
            return Err(e);
        }
        let Some(mut upload) = self.upload.take() else {
            return Err(backend("complete multipart upload")(
                object_store::Error::NotImplemented {
                    operation: "complete without upload".into(),
                    implementer: "oci-cache".into(),
                },
            ));
        };
        if let Err(e) = upload.complete().await {
            let _ = upload.abort().await;
            return Err(backend("complete multipart upload")(e));
        }
        Ok(CommitOutcome::Stored)
    }

    async fn abort(mut self: Box<Self>) -> Result<(), StorageError> {
        self.abort_upload().await;
        Ok(())
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        if let Some(mut upload) = self.upload.take() {
            let location = self.location.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    if let Err(e) = upload.abort().await {
                        tracing::warn!(%location, error = %e, "could not abort a dropped multipart upload");
                    }
                });
            }
        }
    }
}
