//! Single-flight fills: at most one upstream download per (upstream, digest) at a time.
//! The download runs in its own task (a client that leaves does not stop it), hashes every
//! byte, keeps the bytes where its readers follow them, and commits only a verified blob.
//!
//! The parts, each in its own module, in the order a cold GET meets them:
//! - [`Fills`] (here): the running fills, join or start;
//! - `context`: the one [`FillContext`] all fills share;
//! - `state`: [`Progress`], the one value a fill publishes and its readers watch, spool
//!   included;
//! - `run`: the fill task (upstream GET, batches into the spool's window, commit);
//! - `hash`, `store`: the stages behind the download (the digest; the disk and storage);
//! - `spool`, `feed`, `batch`, `memory_budget`: where the bytes go;
//! - `read`: a reader's stream over the fill's state.

mod batch;
mod context;
mod feed;
mod hash;
mod memory_budget;
mod queue;
mod read;
mod run;
mod spool;
mod state;
mod store;

use std::sync::Arc;

use tokio::sync::watch;

use super::flights::{Flight, Flights};
use crate::{Digest, UpstreamClient};
pub(crate) use context::FillContext;
pub(crate) use read::read;
pub(crate) use state::{FillHandle, Progress};

/// Fills are per upstream: a client of one upstream never waits on, or fails with, a fill
/// that runs with another upstream's credentials.
type FillKey = (String, Digest);

/// A download running now, as the status page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunningFill {
    /// The upstream it downloads from.
    pub upstream: String,
    /// The repository it downloads for.
    pub repository: String,
    /// The blob.
    pub digest: Digest,
    /// Its size, once the upstream said.
    pub size: Option<u64>,
    /// Bytes received so far.
    pub received: u64,
    /// Clients following it now.
    pub clients: usize,
}

/// The running fills, by upstream and digest.
pub(crate) struct Fills {
    running: Flights<FillKey, FillHandle>,
    context: Arc<FillContext>,
}

impl Fills {
    /// No fill runs yet.
    pub(crate) fn new(context: FillContext) -> Self {
        Self {
            running: Flights::default(),
            context: Arc::new(context),
        }
    }

    /// Number of fills running.
    pub(crate) fn len(&self) -> usize {
        self.running.len()
    }

    /// The fills running now, with their progress.
    pub(crate) fn running(&self) -> Vec<RunningFill> {
        self.running
            .all()
            .into_iter()
            .map(|((upstream, digest), handle)| {
                let (size, received) = match &*handle.progress.borrow() {
                    state::Progress::Streaming { size, received, .. } => (*size, *received),
                    state::Progress::Done { size, .. } => (Some(*size), *size),
                    _ => (None, 0),
                };
                RunningFill {
                    upstream,
                    repository: handle.repo.to_string(),
                    digest,
                    size,
                    received,
                    // The registry's handle and the one cloned here are not clients.
                    clients: Arc::strong_count(&handle.followers).saturating_sub(2),
                }
            })
            .collect()
    }

    /// The running fill of `digest` from `upstream`, if any.
    pub(crate) fn get(&self, upstream: &str, digest: &Digest) -> Option<FillHandle> {
        self.running.get(&(upstream.to_owned(), digest.clone()))
    }

    /// Joins the running fill of `digest` from the client's upstream, or starts one (for
    /// `repo`) in a new task; `true` when it joined.
    pub(crate) fn join_or_start(
        &self,
        client: &Arc<UpstreamClient>,
        repo: &str,
        digest: &Digest,
    ) -> (FillHandle, bool) {
        let key: FillKey = (client.name().to_owned(), digest.clone());
        let flight = self.running.join_or_lead(key, || {
            let (tx, rx) = watch::channel(Progress::Connecting);
            let handle = FillHandle {
                repo: Arc::from(repo),
                progress: rx,
                followers: Arc::new(()),
            };
            (handle, tx)
        });
        match flight {
            Flight::Joined(handle) => (handle, true),
            Flight::Leads(handle, tx, lease) => {
                let job = run::FillJob {
                    context: Arc::clone(&self.context),
                    client: Arc::clone(client),
                    repo: repo.to_owned(),
                    digest: digest.clone(),
                };
                tokio::spawn(job.run(tx, lease));
                (handle, false)
            }
        }
    }
}
