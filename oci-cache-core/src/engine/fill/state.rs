//! The state of a running fill: the one value its readers watch. It carries the spool the
//! bytes are in, so a reader needs nothing else to follow the fill.

use std::sync::Arc;

use tokio::sync::watch;

use super::spool::Spool;
use crate::EngineError;

/// How far a fill has come, and where its bytes are. Readers watch it.
#[derive(Debug, Clone)]
pub(crate) enum Progress {
    /// Waiting for the upstream's answer.
    Connecting,
    /// Bytes are arriving; the first `received` of them are in `spool` (in its window
    /// until they are stored).
    Streaming {
        /// The size the upstream announced.
        size: Option<u64>,
        /// Bytes received from the upstream.
        received: u64,
        /// Where the bytes are (its backing replaced by a copy when the storage file fails).
        spool: Spool,
    },
    /// All bytes arrived and matched the digest.
    Done {
        /// The blob's size.
        size: u64,
        /// Where the bytes are.
        spool: Spool,
    },
    /// The fill failed; nothing was committed.
    Failed(Arc<EngineError>),
}

impl Progress {
    /// The blob's size, once the upstream announced it.
    pub(crate) fn size(&self) -> Option<u64> {
        match self {
            Progress::Streaming { size, .. } => *size,
            Progress::Done { size, .. } => Some(*size),
            Progress::Connecting | Progress::Failed(_) => None,
        }
    }
}

/// A running fill, as its readers see it.
#[derive(Debug, Clone)]
pub(crate) struct FillHandle {
    /// The repository the fill downloads from (on its upstream).
    pub(crate) repo: Arc<str>,
    /// The fill's state.
    pub(crate) progress: watch::Receiver<Progress>,
    /// Shared by every clone of the handle: the registry's, and one per client following
    /// the fill.
    pub(crate) followers: Arc<()>,
}

impl FillHandle {
    /// Waits until the fill knows the blob's size (or, when `need_size` is false, merely
    /// started streaming).
    pub(crate) async fn wait_for_size(
        &mut self,
        need_size: bool,
    ) -> Result<Option<u64>, EngineError> {
        loop {
            match &*self.progress.borrow_and_update() {
                Progress::Streaming { size: Some(s), .. } | Progress::Done { size: s, .. } => {
                    return Ok(Some(*s))
                }
                Progress::Streaming { size: None, .. } if !need_size => return Ok(None),
                Progress::Connecting | Progress::Streaming { .. } => {}
                Progress::Failed(e) => return Err(EngineError::Shared(Arc::clone(e))),
            }
            if self.progress.changed().await.is_err() {
                return Err(EngineError::FillLost);
            }
        }
    }
}
