//! End to end: after real pulls through the `oci-cache` binary, `/metrics` passes
//! `promtool check metrics` (Debian `prometheus`) and its counters say what happened.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::{fetch, require_tool, Auth, AuthRegistry, Cache};

/// An integer sample (counters and the gauges read here are whole numbers).
fn metric(text: &str, sample: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {sample} in\n{text}"))
}

#[test]
fn metrics_after_real_pulls_pass_promtool_and_count_what_happened() {
    let promtool = require_tool("promtool");
    let auth = AuthRegistry::start(&[]);
    let seeded = auth.seed();
    let cache = Cache::start(&[("docker.io", auth.registry.url())]);
    let layer = seeded.multilayer.layers[0].clone();
    let url = format!(
        "{}/v2/{}/blobs/{layer}",
        cache.url(),
        seeded.multilayer.name
    );
    let cold = fetch("GET", &url, Auth::None);
    assert_eq!(cold.status, 200, "{}", cold.describe());
    // Wait until the fill's commit has landed (the client may finish reading before it
    // does), so the next GET is a storage hit and not a second lookup of the same fill.
    let in_flight = || {
        let text = fetch("GET", &format!("{}/metrics", cache.url()), Auth::None);
        metric(
            &String::from_utf8_lossy(&text.body),
            "oci_cache_fills_in_flight",
        )
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while in_flight() != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the fill never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let warm = fetch("GET", &url, Auth::None);
    assert_eq!(warm.status, 200);
    let manifest = format!(
        "{}/v2/{}/manifests/{}",
        cache.url(),
        seeded.small.name,
        seeded.small.tag
    );
    assert_eq!(fetch("GET", &manifest, Auth::None).status, 200);

    let scrape = fetch("GET", &format!("{}/metrics", cache.url()), Auth::None);
    assert_eq!(scrape.status, 200);
    let text = String::from_utf8(scrape.body.clone()).unwrap();
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let hits = metric(
        &text,
        r#"oci_cache_lookups_total{kind="blob",result="hit"}"#,
    );
    let misses = metric(
        &text,
        r#"oci_cache_lookups_total{kind="blob",result="miss"}"#,
    );
    assert_eq!(misses, 1, "one cold GET");
    assert!(hits >= 1, "the warm GET was a hit");
    let size = u64::try_from(cold.body.len()).unwrap();
    assert_eq!(metric(&text, "oci_cache_bytes_from_upstream_total"), size);
    assert_eq!(
        metric(
            &text,
            r#"oci_cache_lookups_total{kind="manifest",result="miss"}"#
        ),
        1
    );
    assert!(
        metric(
            &text,
            r#"oci_cache_upstream_requests_total{upstream="docker.io"}"#
        ) >= 2
    );
    assert_eq!(
        metric(
            &text,
            r#"oci_cache_http_requests_total{route="manifest",status="200"}"#
        ),
        1
    );
    assert_eq!(
        metric(
            &text,
            r#"oci_cache_http_request_duration_seconds_count{route="manifest"}"#
        ),
        1
    );
    assert_eq!(auth.registry.blob_gets(Some(&layer)), 1);
}
