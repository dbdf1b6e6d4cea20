//! End to end: the tag list is answered from the real upstream registry through the
//! `oci-cache` binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{fetch, Auth, AuthRegistry, Cache};

#[test]
fn tags_list_is_answered_from_the_upstream() {
    let auth = AuthRegistry::start(&[]);
    let seeded = auth.seed();
    let name = &seeded.small.name;
    let base = format!("{name}:{}", seeded.small.tag);
    for t in ["v2", "v3"] {
        auth.copy_within(&base, &format!("{name}:{t}"));
    }
    let mut expected = vec![seeded.small.tag.clone(), "v2".to_owned(), "v3".to_owned()];
    expected.sort();
    let cache = Cache::start(&[("docker.io", auth.registry.url())]);

    let all = fetch(
        "GET",
        &format!("{}/v2/{name}/tags/list", cache.url()),
        Auth::None,
    );
    assert_eq!(all.status, 200, "{}", all.describe());
    let tags: Vec<String> = serde_json::from_value(all.json()["tags"].clone()).unwrap();
    assert_eq!(tags, expected);

    // A page is cut from the fresh stored list (distribution 2.8 ignores `n` and `last`
    // anyway): one tag, a `Link` to the next page on the client's route, no upstream request.
    auth.registry.settle();
    let before = auth.registry.records().len();
    let page = fetch(
        "GET",
        &format!("{}/v2/{name}/tags/list?n=1", cache.url()),
        Auth::None,
    );
    assert_eq!(page.status, 200, "{}", page.describe());
    let tags: Vec<String> = serde_json::from_value(page.json()["tags"].clone()).unwrap();
    assert_eq!(tags, expected[..1]);
    assert_eq!(
        page.header("link"),
        Some(format!(
            "</v2/{name}/tags/list?n=1&last={}>; rel=\"next\"",
            expected[0]
        )),
        "{}",
        page.describe()
    );
    auth.registry.settle();
    assert_eq!(auth.registry.records().len(), before, "{}", auth.logs());

    let missing = fetch(
        "GET",
        &format!("{}/v2/test/nothing-here/tags/list", cache.url()),
        Auth::None,
    );
    assert_eq!(missing.status, 404, "{}", missing.describe());
    // The spec's code for a repository that does not exist (as distribution answers).
    let body = String::from_utf8_lossy(&missing.body);
    assert!(body.contains("\"NAME_UNKNOWN\""), "{body}");
    let missing_manifest = fetch(
        "GET",
        &format!("{}/v2/test/nothing-here/manifests/v1", cache.url()),
        Auth::None,
    );
    assert_eq!(
        missing_manifest.status,
        404,
        "{}",
        missing_manifest.describe()
    );
    // The request log names the upstream of tag-list and manifest requests, failed ones too.
    let log = cache.log();
    for route in ["tags", "manifest"] {
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("route=\"{route}\""))
                    && l.contains("status=404")
                    && l.contains("upstream=\"docker.io\"")),
            "{route}:\n{log}"
        );
    }
}

/// `skopeo inspect` (which lists the repository's tags) of an image pulled a minute earlier
/// works with the upstream stopped: the cache answers the tag list from the tags it holds,
/// marked stale in the log; a list it saw before is served as it was.
#[test]
fn skopeo_inspect_works_offline_after_a_pull() {
    support::require_tool("skopeo");
    let mut auth = AuthRegistry::start(&[]);
    let seeded = auth.seed();
    let small = seeded.small.clone();
    let multi = seeded.multilayer.clone();
    auth.copy_within(&small.name_tag(), &format!("{}:v2", small.name));
    let cache = Cache::start(&[("docker.io", auth.registry.url())]);
    let out = support::short_tempdir("e2e-tags-offline-");
    // small: pulled only (the cache never saw its tag list); multilayer: its list seen too.
    support::skopeo_copy_to_oci_dir(
        &cache.docker_ref(&small.name_tag()),
        &out.path().join("small"),
        false,
        None,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", cache.log_tail()));
    let seen = fetch(
        "GET",
        &format!("{}/v2/{}/tags/list", cache.url(), multi.name),
        Auth::None,
    );
    assert_eq!(seen.status, 200, "{}", seen.describe());
    support::skopeo_copy_to_oci_dir(
        &cache.docker_ref(&multi.name_tag()),
        &out.path().join("multi"),
        false,
        None,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", cache.log_tail()));

    auth.registry.stop();
    let inspect = |image: &support::Image| {
        let mut cmd = std::process::Command::new("skopeo");
        cmd.args(["inspect", "--tls-verify=false"])
            .arg(cache.docker_ref(&image.name_tag()));
        let out = support::process::run_ok(&mut cmd, std::time::Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("skopeo inspect offline: {e}\n{}", cache.log_tail()));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let tags: Vec<String> = serde_json::from_value(v["RepoTags"].clone()).unwrap();
        tags
    };
    // Only the tag the cache holds (v2 was never pulled through it).
    assert_eq!(inspect(&small), vec![small.tag.clone()]);
    assert_eq!(inspect(&multi), vec![multi.tag.clone()]);
    let log = cache.log();
    assert!(
        log.lines()
            .any(|l| l.contains("route=\"tags\"") && l.contains("cache=\"stale\"")),
        "{log}"
    );
    // And in the metrics.
    let metrics = fetch("GET", &format!("{}/metrics", cache.url()), Auth::None);
    assert_eq!(metrics.status, 200, "{}", metrics.describe());
    let text = String::from_utf8_lossy(&metrics.body);
    let stale: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("oci_cache_lookups_total{kind=\"tags\",result=\"stale\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no stale tag-list counter in\n{text}"));
    // small's list (never seen, built from the tags held); multilayer's is still fresh.
    assert_eq!(stale, 1, "tag lists served stale\n{text}");
}

/// The real registry predates the referrers API: its 404 is passed on, so clients fall back
/// to the referrers tag schema (`sha256-<hex>` tags), which works through the cache.
#[test]
fn without_the_referrers_api_the_tag_schema_works_through_the_cache() {
    let auth = AuthRegistry::start(&[]);
    let seeded = auth.seed();
    let subject = seeded.multilayer.digest.clone();
    let name = &seeded.multilayer.name;
    let schema_tag = subject.replace(':', "-");
    let referrer = auth.copy_within(&seeded.small.name_tag(), &format!("{name}:{schema_tag}"));
    let cache = Cache::start(&[("docker.io", auth.registry.url())]);
    let referrers = fetch(
        "GET",
        &format!("{}/v2/{name}/referrers/{subject}", cache.url()),
        Auth::None,
    );
    assert_eq!(referrers.status, 404, "{}", referrers.describe());
    let by_tag = fetch(
        "GET",
        &format!("{}/v2/{name}/manifests/{schema_tag}", cache.url()),
        Auth::None,
    );
    assert_eq!(by_tag.status, 200, "{}", by_tag.describe());
    assert_eq!(support::sha256_bytes(&by_tag.body), referrer);
}

/// The same after a restart: the tags the cache holds are its tag records on disk.
#[test]
fn skopeo_inspect_works_offline_after_a_restart() {
    support::require_tool("skopeo");
    let mut auth = AuthRegistry::start(&[]);
    let seeded = auth.seed();
    let small = seeded.small.clone();
    let mut home = support::cache_home::CacheHome::new(&format!(
        "[[upstreams]]\nname = \"docker.io\"\nurl = \"{}\"\n",
        auth.registry.url()
    ));
    let mut cache = home.start();
    let host = cache.url().trim_start_matches("http://").to_owned();
    let image = format!("docker://{host}/{}", small.name_tag());
    let out = support::short_tempdir("e2e-tags-restart-");
    support::skopeo_copy_to_oci_dir(&image, &out.path().join("small"), false, None)
        .unwrap_or_else(|e| panic!("{e}\n{}", cache.log_tail()));
    cache.stop();
    auth.registry.stop();
    let cache = home.start();
    let host = cache.url().trim_start_matches("http://").to_owned();
    let mut cmd = std::process::Command::new("skopeo");
    cmd.args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{host}/{}", small.name_tag()));
    let out = support::process::run_ok(&mut cmd, std::time::Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("skopeo inspect after a restart: {e}\n{}", cache.log_tail()));
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let tags: Vec<String> = serde_json::from_value(v["RepoTags"].clone()).unwrap();
    assert_eq!(tags, vec![small.tag.clone()]);
}
