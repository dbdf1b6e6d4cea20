//! A light client beside a load: one cached manifest fetched every [`EVERY`] on a thread
//! and runtime of its own (one keep-alive connection), so its latencies are the cache's
//! answer to a small request under the load, apart from the load's own clients, which
//! share the machine's cores and hash every byte they receive (their latencies include
//! their own queueing). Bounded by [`crate::mixed::CAP`] and stopped by [`Probe::finish`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::load::ACCEPT;
use crate::BoxError;

/// Time between two requests of the probe.
pub const EVERY: Duration = Duration::from_millis(20);

/// A running probe.
pub struct Probe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<Vec<Duration>, String>>,
}

impl Probe {
    /// Starts fetching `url` (a manifest) every [`EVERY`].
    pub fn start(url: String) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(probe(&url, &stopped))
        });
        Probe { stop, thread }
    }

    /// Stops the probe and returns the latencies it saw (blocking: call it off the
    /// runtime, e.g. in `spawn_blocking`).
    pub fn finish(self) -> Result<Vec<Duration>, BoxError> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.join() {
            Ok(result) => result.map_err(Into::into),
            Err(_) => Err("the probe thread panicked".into()),
        }
    }
}

async fn probe(url: &str, stop: &AtomicBool) -> Result<Vec<Duration>, String> {
    let client = crate::bench_client().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + crate::mixed::CAP;
    let mut seen = Vec::new();
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let sent = Instant::now();
        let resp = client
            .get(url)
            .header("accept", ACCEPT)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| format!("probe GET {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("probe GET {url}: {}", resp.status()));
        }
        resp.bytes()
            .await
            .map_err(|e| format!("probe GET {url}: {e}"))?;
        seen.push(sent.elapsed());
        tokio::time::sleep(EVERY).await;
    }
    Ok(seen)
}
