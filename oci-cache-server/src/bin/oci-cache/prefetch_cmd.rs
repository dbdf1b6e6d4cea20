//! `oci-cache prefetch`: fill the cache's storage with images before a rollout, with a
//! progress bar on a terminal and a summary at the end.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use oci_cache_core::prefetch::{PrefetchEvent, PrefetchReport};
use oci_cache_core::{Engine, Upstreams};

/// Reads references: the arguments, then the file's lines (blank lines and `#` comments
/// skipped).
pub(crate) fn references(
    args: &[String],
    file: Option<&std::path::Path>,
) -> std::io::Result<Vec<String>> {
    let mut refs = args.to_vec();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)?;
        refs.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    Ok(refs)
}

/// Prefetches `refs`, drawing a byte progress bar on a terminal.
pub(crate) async fn run(engine: &Engine, upstreams: &Upstreams, refs: &[String]) -> PrefetchReport {
    let bar = ProgressBar::with_draw_target(
        Some(0),
        if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {msg}")
    {
        bar.set_style(style);
    }
    let queued = AtomicU64::new(0);
    let report = engine
        .prefetch(upstreams, refs, &|event| match event {
            PrefetchEvent::BlobQueued { size } => {
                bar.set_length(queued.fetch_add(size, Ordering::Relaxed) + size);
            }
            PrefetchEvent::BlobDone { size, .. } => bar.inc(size),
        })
        .await;
    bar.finish_and_clear();
    report
}

/// The summary printed at the end.
pub(crate) fn summary(report: &PrefetchReport) -> String {
    let mut out = String::new();
    for (r, why) in &report.failures {
        let _ = writeln!(out, "failed {r}: {why}");
    }
    let _ = writeln!(
        out,
        "prefetched {} images ({} manifests, {} blobs), downloaded {} bytes in {:.1} s; {} failed",
        report.images,
        report.manifests,
        report.blobs,
        report.bytes,
        report.elapsed.as_secs_f64(),
        report.failures.len()
    );
    out
}
