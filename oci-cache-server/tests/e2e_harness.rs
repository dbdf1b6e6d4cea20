//! Checks of the e2e harness itself, straight against the real registry (no
//! cache): if these fail, the e2e_pull failures mean nothing.

// Test helpers outside `#[test]` functions panic on failure like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{
    free_port, http_status, seed_images, skopeo_copy, skopeo_copy_to_dir, skopeo_copy_to_oci_dir,
    skopeo_inspect_digest, skopeo_inspect_raw, write_hosts_toml, AuthRegistry, Containerd,
    SeedOptions, PUSH_CREDS,
};

#[test]
fn registry_with_token_auth_serves_seeded_images_to_skopeo() {
    let auth = AuthRegistry::start(&["test/private"]);
    let reg = &auth.registry;
    // Token auth is on: /v2/ challenges anonymous clients.
    assert_eq!(http_status(reg.port, "/v2/"), Some(401));

    let seeded = auth.seed();
    let creds = Some(PUSH_CREDS);

    // Single-platform multi-layer image: copied digest-exact, every blob verified.
    let out = support::short_tempdir("e2e-harness-");
    let digest = skopeo_copy_to_oci_dir(
        &reg.docker_ref(&seeded.multilayer.name_tag()),
        &out.path().join("multilayer"),
        false,
        None,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", auth.logs()));
    assert_eq!(digest, seeded.multilayer.digest);
    assert_eq!(seeded.multilayer.layers.len(), 4);

    // The access log counts exactly one GET per layer for that copy, and none
    // for blobs nobody downloaded.
    for layer in &seeded.multilayer.layers {
        assert_eq!(
            reg.blob_gets(Some(layer)),
            1,
            "GETs of {layer}\n{}",
            reg.request_summary()
        );
        let rec = &reg.blob_get_records(Some(layer))[0];
        assert_eq!(rec.status, 200);
        assert!(
            rec.written > 8 * 1024 * 1024,
            "layer of ~10 MiB, logged {} bytes",
            rec.written
        );
    }
    assert_eq!(reg.blob_gets(Some(&seeded.small.layers[0])), 0);
    assert!(
        reg.manifest_requests()
            .iter()
            .any(|r| r.path() == "/v2/test/multilayer/manifests/latest"),
        "{}",
        reg.request_summary()
    );

    // The OCI index, all platforms.
    let digest = skopeo_copy_to_oci_dir(
        &reg.docker_ref(&seeded.index.name_tag()),
        &out.path().join("index"),
        true,
        None,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", auth.logs()));
    assert_eq!(digest, seeded.index.digest);
    for layer in &seeded.index.layers {
        assert_eq!(
            reg.blob_gets(Some(layer)),
            1,
            "GETs of {layer}\n{}",
            reg.request_summary()
        );
    }

    // The Docker manifest list: really a v2s2 list, with the same platforms.
    let raw = skopeo_inspect_raw(&reg.docker_ref(&seeded.index_docker.name_tag()), None)
        .expect("inspect list");
    let list: serde_json::Value = serde_json::from_slice(&raw).expect("manifest list JSON");
    assert_eq!(
        list["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    assert_eq!(list["manifests"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        list["manifests"][0]["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    skopeo_copy_to_dir(
        &reg.docker_ref(&seeded.index_docker.name_tag()),
        &out.path().join("index-docker"),
        true,
        None,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", auth.logs()));
    let manifest = std::fs::read(out.path().join("index-docker").join("manifest.json"))
        .expect("manifest.json");
    assert_eq!(support::sha256_bytes(&manifest), seeded.index_docker.digest);

    // Anonymous users may not push; private repositories need credentials.
    let small_src = reg.docker_ref(&seeded.small.name_tag());
    let denied = skopeo_copy(
        &small_src,
        &reg.docker_ref("test/anon-push:latest"),
        false,
        &[],
        None,
        None,
    );
    assert!(denied.is_err(), "an anonymous push was accepted");
    skopeo_copy(
        &small_src,
        &reg.docker_ref("test/private:latest"),
        false,
        &[],
        None,
        creds,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", auth.logs()));
    assert!(skopeo_inspect_raw(&reg.docker_ref("test/private:latest"), None).is_err());
    assert_eq!(
        skopeo_inspect_digest(&reg.docker_ref("test/private:latest"), creds),
        seeded.small.digest
    );

    // The token server saw anonymous pulls and authenticated pushes.
    let requests = auth.token.requests();
    assert!(
        requests
            .iter()
            .any(|l| l.contains("sub=anonymous") && l.contains("\"pull\"")),
        "{requests:#?}"
    );
    assert!(
        requests
            .iter()
            .any(|l| l.contains("sub=pusher") && l.contains("\"push\"")),
        "{requests:#?}"
    );
}

#[test]
fn registry_without_auth_accepts_anonymous_pushes() {
    let reg = support::Registry::start_default();
    assert_eq!(http_status(reg.port, "/v2/"), Some(200));
    let opts = SeedOptions {
        seed: 2,
        layers: 2,
        layer_kib: 256,
    };
    let seeded = seed_images(&reg, None, opts);
    assert_eq!(seeded.multilayer.layers.len(), 2);
    assert_eq!(
        skopeo_inspect_digest(&reg.docker_ref(&seeded.index.name_tag()), None),
        seeded.index.digest
    );
}

#[test]
fn containerd_pulls_directly_from_token_registry_with_hosts_toml() {
    let auth = AuthRegistry::start(&["test/private"]);
    let reg = &auth.registry;
    let seeded = auth.seed();
    let ctrd = Containerd::start();
    let hosts = ctrd.hosts_dir("hosts");
    let dead = format!("http://127.0.0.1:{}", free_port());
    write_hosts_toml(&hosts, "docker.io", &reg.url(), &dead);

    let multilayer = format!("docker.io/{}", seeded.multilayer.name_tag());
    ctrd.pull(&multilayer, &hosts, false)
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", ctrd.log_tail(), auth.logs()));
    assert_eq!(
        ctrd.image_digest(&multilayer).as_deref(),
        Some(seeded.multilayer.digest.as_str())
    );

    let index = format!("docker.io/{}", seeded.index.name_tag());
    ctrd.pull(&index, &hosts, true)
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", ctrd.log_tail(), auth.logs()));
    assert_eq!(
        ctrd.image_digest(&index).as_deref(),
        Some(seeded.index.digest.as_str())
    );
    let content = ctrd.content_digests();
    for layer in seeded.index.layers.iter().chain(&seeded.multilayer.layers) {
        assert!(
            content.contains(layer),
            "{layer} missing from containerd's content store"
        );
    }

    // containerd names the upstream in ?ns= and resolves the tag with HEAD.
    let manifests = reg.manifest_requests();
    assert!(
        manifests
            .iter()
            .any(|r| r.method == "HEAD"
                && r.uri == "/v2/test/multilayer/manifests/latest?ns=docker.io"),
        "{}",
        reg.request_summary()
    );

    // With credentials containerd uses the OAuth2 POST form: a private repo.
    skopeo_copy(
        &reg.docker_ref(&seeded.small.name_tag()),
        &reg.docker_ref("test/private:latest"),
        false,
        &[],
        None,
        Some(PUSH_CREDS),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", auth.logs()));
    let private = "docker.io/test/private:latest";
    assert!(
        ctrd.pull(private, &hosts, false).is_err(),
        "anonymous pull of a private repo worked"
    );
    ctrd.pull_as(private, &hosts, false, Some(PUSH_CREDS))
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", ctrd.log_tail(), auth.logs()));
    assert_eq!(
        ctrd.image_digest(private).as_deref(),
        Some(seeded.small.digest.as_str())
    );
    assert!(
        auth.token
            .requests()
            .iter()
            .any(|l| l.contains("method=POST") && l.contains("sub=pusher")),
        "{:#?}",
        auth.token.requests()
    );
}
