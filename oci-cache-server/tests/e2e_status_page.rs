//! End to end, in a real browser: after real pulls (skopeo, through the cache, from the
//! real registry), the status page opens in headless Chromium (Debian's chromium,
//! chromium-driver and python3-selenium) with no console errors; its figures, chart lines
//! and tables hold what `/status.json` reports; it fits a phone's width. The screenshots
//! are kept as test artifacts in `target/test-artifacts/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::process::run_with_timeout;
use support::skopeo::skopeo_copy_to_oci_dir;
use support::{require_tool, AuthRegistry, Cache};

#[test]
fn the_status_page_shows_in_a_browser_what_status_json_reports_after_real_pulls() {
    require_tool("chromium");
    require_tool("chromedriver");
    let python = Path::new("/usr/bin/python3");
    let selenium = Command::new(python)
        .args(["-c", "import selenium"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        selenium,
        "python3-selenium is missing (apt-get install python3-selenium; scripts/test installs it)"
    );
    let auth = AuthRegistry::start(&[]);
    let seeded = auth.seed();
    let cache = Cache::start_with_config(
        &format!(
            "[gc]\nmax_bytes = 1000000000\n\n[[upstreams]]\nname = \"docker.io\"\nurl = \"{}\"\n",
            auth.registry.url()
        ),
        &[],
    );
    let dir = support::short_tempdir("status-page-");
    for (i, image) in [&seeded.small, &seeded.multilayer].into_iter().enumerate() {
        let src = cache.docker_ref(&image.name_tag());
        skopeo_copy_to_oci_dir(&src, &dir.path().join(format!("img{i}")), false, None)
            .unwrap_or_else(|e| panic!("pull {}: {e}\n{}", image.name, cache.log_tail()));
    }
    // Pulled again: the second time from the cache.
    skopeo_copy_to_oci_dir(
        &cache.docker_ref(&seeded.small.name_tag()),
        &dir.path().join("again"),
        false,
        None,
    )
    .unwrap();
    support::wait_until(
        "the fills to be stored",
        Duration::from_secs(30),
        || {
            let m = support::lifecycle::scrape_metrics(&cache.url());
            (support::lifecycle::metric(&m, "oci_cache_fills_in_flight") == 0).then_some(())
        },
        || cache.log_tail(),
    );
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/status_page.py");
    let mut cmd = Command::new(python);
    cmd.arg(&script).arg(cache.url()).arg(&artifacts);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(120)).unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{said}");
    assert!(out.status.success(), "{said}\n{}", cache.log_tail());
    for shot in ["status-page.png", "status-page-phone.png"] {
        let len = std::fs::metadata(artifacts.join(shot)).map_or(0, |m| m.len());
        assert!(len > 10_000, "{shot}: {len} bytes");
    }
}
