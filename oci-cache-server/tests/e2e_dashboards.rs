//! What ships for Prometheus and Grafana is checked: `deploy/prometheus/alerts.yaml` passes
//! `promtool check rules` and its unit tests (`promtool test rules`), and every metric the
//! alerts and the Grafana dashboard (`deploy/grafana/oci-cache.json`) name is one a real
//! `/metrics` scrape of the binary offers (a replica with a storage limit, after a pull).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::lifecycle::scrape_metrics;
use support::process::run_ok;
use support::{fetch, free_port, require_tool, Auth, AuthRegistry, Cache};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The sample names a scrape can have: from each `# TYPE NAME KIND` line, NAME (gauges),
/// NAME_total (counters) or NAME_bucket, NAME_sum, NAME_count (histograms).
fn exported(scrape: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in scrape.lines() {
        let mut parts = line.split_whitespace();
        if (parts.next(), parts.next()) != (Some("#"), Some("TYPE")) {
            continue;
        }
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                names.insert(format!("{}_total", name.trim_end_matches("_total")));
            }
            "histogram" => {
                for suffix in ["bucket", "sum", "count"] {
                    names.insert(format!("{name}_{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// The `oci_cache_*` names in `text`.
fn named(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("oci_cache_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

/// The latency panel's `histogram_quantile` needs cumulative buckets ending in `+Inf`
/// equal to `_count`.
fn assert_histogram_is_well_formed(scrape: &str, name: &str) {
    let bucket = format!("{name}_bucket{{");
    let values: Vec<(String, f64)> = scrape
        .lines()
        .filter(|l| l.starts_with(&bucket))
        .map(|l| {
            let le = l.split("le=\"").nth(1).unwrap().split('"').next().unwrap();
            let v = l.rsplit(' ').next().unwrap().parse().unwrap();
            (le.to_owned(), v)
        })
        .collect();
    assert!(values.len() > 2, "no {name} buckets in\n{scrape}");
    assert!(
        values.windows(2).all(|w| w[0].1 <= w[1].1),
        "buckets not cumulative: {values:?}"
    );
    let count: f64 = scrape
        .lines()
        .find(|l| l.starts_with(&format!("{name}_count{{")))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    let last = values.last().unwrap();
    assert_eq!(last.0, "+Inf", "{values:?}");
    assert!(
        (last.1 - count).abs() < 0.5 && count >= 1.0,
        "+Inf {} vs count {count}",
        last.1
    );
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let promtool = require_tool("promtool");
    let dir = deploy().join("prometheus");
    for args in [
        vec!["check", "rules", "alerts.yaml"],
        vec!["test", "rules", "alerts_test.yaml"],
    ] {
        let mut cmd = Command::new(&promtool);
        cmd.args(&args).current_dir(&dir);
        run_ok(&mut cmd, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn alerts_and_the_dashboard_name_only_metrics_the_cache_exports() {
    let auth = AuthRegistry::start(&[]);
    let seeded = auth.seed();
    let dir = support::short_tempdir("dash-");
    let port = free_port();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "a peer secret of at least thirty-two bytes").unwrap();
    // One replica of a fleet (of itself) with a limit: the peer and limit metrics exist.
    let config = format!(
        "peers = [\"http://127.0.0.1:{port}\"]\npeer_secret_file = \"{}\"\n\n[gc]\nmax_bytes = 1000000000\n\n\
         [[upstreams]]\nname = \"docker.io\"\nurl = \"{}\"\n",
        secret.display(),
        auth.registry.url()
    );
    let cache = Cache::start_with_config_on(&config, &[], port);
    let layer = &seeded.multilayer.layers[0];
    let url = format!(
        "{}/v2/{}/blobs/{layer}",
        cache.url(),
        seeded.multilayer.name
    );
    assert_eq!(fetch("GET", &url, Auth::None).status, 200);
    let scrape = scrape_metrics(&cache.url());
    assert_histogram_is_well_formed(&scrape, "oci_cache_upstream_latency_seconds");
    let offered = exported(&scrape);
    for file in [
        "prometheus/alerts.yaml",
        "prometheus/alerts_test.yaml",
        "grafana/oci-cache.json",
    ] {
        let text = std::fs::read_to_string(deploy().join(file)).unwrap();
        let names = named(&text);
        assert!(names.len() >= 5, "{file} names only {names:?}");
        let unknown: Vec<&String> = names.difference(&offered).collect();
        assert!(
            unknown.is_empty(),
            "{file} names metrics the cache does not export: {unknown:?}\nexported: {offered:?}"
        );
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy().join("grafana/oci-cache.json")).unwrap(),
    )
    .unwrap();
    let queries = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .count();
    assert!(queries >= 10, "{queries} queries");
}
