//! What every blob writer checks at commit: the size and, unless the caller took that
//! over, the digest of the bytes written.

use crate::{Digest, StorageError, Verifier};

/// Hashes and counts the bytes a writer receives.
#[derive(Debug)]
pub(crate) struct WriteCheck {
    /// `None` once the caller took over checking the digest.
    verifier: Option<Verifier>,
    len: u64,
}

impl WriteCheck {
    /// A check against `digest`.
    pub(crate) fn new(digest: &Digest) -> Self {
        Self {
            verifier: Some(digest.verifier()),
            len: 0,
        }
    }

    /// Counts (and hashes) `chunk`.
    pub(crate) fn update(&mut self, chunk: &[u8]) {
        if let Some(verifier) = &mut self.verifier {
            verifier.update(chunk);
        }
        self.len += chunk.len() as u64;
    }

    /// Stops hashing: the caller checks the digest (see
    /// [`BlobWriter::digest_checked_by_caller`](crate::BlobWriter::digest_checked_by_caller)).
    pub(crate) fn skip_digest(&mut self) {
        self.verifier = None;
    }

    /// Whether what was written is `expected_size` bytes (when given) hashing to `digest`.
    pub(crate) fn check(
        &self,
        digest: &Digest,
        expected_size: Option<u64>,
    ) -> Result<(), StorageError> {
        match &self.verifier {
            Some(verifier) => verifier.check(digest, expected_size),
            None => match expected_size.filter(|s| *s != self.len) {
                Some(expected) => Err(StorageError::SizeMismatch {
                    expected,
                    actual: self.len,
                }),
                None => Ok(()),
            },
        }
    }
}
