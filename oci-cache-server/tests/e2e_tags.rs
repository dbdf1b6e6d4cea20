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

    // distribution 2.8 ignores `n` and `last` on tags/list (pagination came in v3): the
    // forwarding of both and of the `Link` header is tested against a fake upstream in
    // oci-cache-core/tests/engine_faults.rs; here the cache must still give the full list.
    let page = fetch(
        "GET",
        &format!("{}/v2/{name}/tags/list?n=1", cache.url()),
        Auth::None,
    );
    assert_eq!(page.status, 200, "{}", page.describe());
    auth.registry.settle();
    let forwarded = auth
        .registry
        .records()
        .iter()
        .any(|r| r.method == "GET" && r.uri.ends_with("/tags/list?n=1") && r.status == 200);
    assert!(
        forwarded,
        "the cache forwards n to the upstream\n{}",
        auth.logs()
    );

    let missing = fetch(
        "GET",
        &format!("{}/v2/test/nothing-here/tags/list", cache.url()),
        Auth::None,
    );
    assert_eq!(missing.status, 404, "{}", missing.describe());
}
