//! End to end: every request of the OCI distribution-spec v1.1.1 conformance suite's pull
//! workflow (read-only: the content is seeded into the real upstream registry, as the suite
//! runs against a registry it may not push to), sent to the cache, gets the status, headers
//! and error codes the suite checks (`conformance/01_pull_test.go`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::fetch::fetch_with;
use support::{Auth, AuthRegistry, Cache};

const MANIFEST_ACCEPT: (&str, &str) = ("accept", "application/vnd.oci.image.manifest.v1+json");
/// The error codes the suite accepts in a 400 body.
const SPEC_CODES: [&str; 14] = [
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
];

#[test]
fn the_pull_workflow_of_the_conformance_suite_passes_through_the_cache() {
    let auth = AuthRegistry::start(&[]);
    let seeded = auth.seed();
    // An OCI image manifest (the suite asks with the OCI media type only).
    let image = &seeded.multilayer;
    let cache = Cache::start(&[("docker.io", auth.registry.url())]);
    let base = format!("{}/v2/{}", cache.url(), image.name);
    let manifest = fetch_with(
        "GET",
        &format!("{base}/manifests/{}", image.digest),
        Auth::None,
        &[MANIFEST_ACCEPT],
    );
    assert_eq!(manifest.status, 200, "{}", manifest.describe());
    let config = manifest.json()["config"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let dummy = support::sha256_bytes(b"conformance: no such blob");
    let request = |method: &str, path: &str, accept: bool| {
        let headers: &[(&str, &str)] = if accept { &[MANIFEST_ACCEPT] } else { &[] };
        fetch_with(method, &format!("{base}{path}"), Auth::None, headers)
    };

    // Setup: the tag comes from the environment in read-only mode; the list must answer.
    let tags = request("GET", "/tags/list", false);
    assert_eq!(tags.status, 200, "tags/list: {}", tags.describe());

    // Pull blobs.
    let a = request("HEAD", &format!("/blobs/{dummy}"), false);
    assert_eq!(a.status, 404, "HEAD nonexistent blob: {}", a.describe());
    let a = request("HEAD", &format!("/blobs/{config}"), false);
    assert_eq!(a.status, 200, "HEAD existing blob: {}", a.describe());
    assert_eq!(
        a.header("docker-content-digest").as_deref(),
        Some(config.as_str())
    );
    let a = request("GET", &format!("/blobs/{dummy}"), false);
    assert_eq!(a.status, 404, "GET nonexistent blob: {}", a.describe());
    let a = request("GET", &format!("/blobs/{config}"), false);
    assert_eq!(a.status, 200, "GET existing blob: {}", a.describe());
    assert_eq!(support::sha256_bytes(&a.body), config);

    // Pull manifests.
    let digest = image.digest.as_str();
    for method in ["HEAD", "GET"] {
        let a = request(method, "/manifests/.INVALID_MANIFEST_NAME", true);
        assert_eq!(
            a.status,
            404,
            "{method} nonexistent manifest: {}",
            a.describe()
        );
        if method == "GET" {
            assert_eq!(a.error_code().as_deref(), Some("MANIFEST_UNKNOWN"));
        }
        for reference in [digest, image.tag.as_str()] {
            let a = request(method, &format!("/manifests/{reference}"), true);
            assert_eq!(
                a.status,
                200,
                "{method} manifest {reference}: {}",
                a.describe()
            );
            assert_eq!(a.header("docker-content-digest").as_deref(), Some(digest));
        }
    }

    // Error codes: a manifest PUT to an invalid digest is 400 or 404, and a 400 carries an
    // OCI error code.
    let a = fetch_with(
        "PUT",
        &format!("{base}/manifests/sha256:totallywrong"),
        Auth::None,
        &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
    );
    assert!(
        a.status == 400 || a.status == 404,
        "PUT invalid manifest: {}",
        a.describe()
    );
    if a.status == 400 {
        let code = a.error_code().unwrap_or_default();
        assert!(SPEC_CODES.contains(&code.as_str()), "{}", a.describe());
    }

    // Teardown in read-only mode deletes nothing; a DELETE is answered 405 (allowed by the
    // suite's teardown) and removes nothing.
    let a = request("DELETE", &format!("/manifests/{digest}"), false);
    assert_eq!(a.status, 405, "{}", a.describe());
    let a = request("GET", &format!("/manifests/{digest}"), true);
    assert_eq!(a.status, 200, "{}", a.describe());
}
