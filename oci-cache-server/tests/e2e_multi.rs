//! End to end: several upstreams, upstream credentials and client access
//! control. Real registries (CNCF distribution behind token servers) stand for
//! docker.io, quay.io and ghcr.io and hold the SAME repository names with
//! DIFFERENT content, so a digest tells which upstream an image came from; real
//! clients (containerd, skopeo, dockerd, reqwest) pull through one `oci-cache`
//! started from a TOML config file.

// Test helpers outside `#[test]` functions panic on failure like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use support::cache::{run_cli, serve_expecting_refusal};
use support::fetch::fetch_with;
use support::process::run_ok;
use support::{
    dead_url, fetch, require_tool, sha256_bytes, short_tempdir, skopeo_copy_to_oci_dir,
    skopeo_inspect_digest, skopeo_inspect_raw, write_hosts_toml, Auth, AuthRegistry, Cache,
    Containerd, Dockerd, Registry, SeedOptions, Seeded, TokenOptions,
};

/// Small images: one 64 KiB layer for the "multilayer" image. `seed` picks the content.
fn small_images(seed: u64) -> SeedOptions {
    SeedOptions {
        seed,
        layers: 1,
        layer_kib: 64,
    }
}

/// How many finished requests a registry has logged.
fn request_count(reg: &Registry) -> usize {
    reg.records().len()
}

/// Every request path (with query) a registry has logged.
fn request_uris(reg: &Registry) -> Vec<String> {
    reg.records().into_iter().map(|r| r.uri).collect()
}

/// No request of `reg` came from `agent` (e.g. containerd reaching it directly).
fn assert_no_requests_from(reg: &Registry, agent: &str, what: &str) {
    let direct: Vec<_> = reg
        .records()
        .into_iter()
        .filter(|r| r.user_agent.to_lowercase().contains(agent))
        .collect();
    assert!(
        direct.is_empty(),
        "{agent} reached {what} directly instead of through the cache: {direct:#?}"
    );
}

/// The TOML of one `[[upstreams]]` entry without credentials.
fn upstream_toml(name: &str, url: &str) -> String {
    format!("[[upstreams]]\nname = \"{name}\"\nurl = \"{url}\"\n\n")
}

/// A TOML string literal for a path.
fn toml_path(p: &std::path::Path) -> String {
    format!("{:?}", p.display().to_string())
}

// ---------------------------------------------------------------------------
// Three upstreams holding the same names with different content.
// ---------------------------------------------------------------------------

/// docker.io, quay.io and ghcr.io (reachable also as the Host `ghcr-cache.test`)
/// behind one cache; each registry seeded with its own content under the same
/// names, and docker.io also holding the official image `library/e2elib`.
struct ThreeUpstreams {
    cache: Cache,
    hub: AuthRegistry,
    quay: AuthRegistry,
    ghcr: AuthRegistry,
    hub_img: Seeded,
    quay_img: Seeded,
    ghcr_img: Seeded,
    /// The digest of docker.io's `library/e2elib:latest`.
    lib_digest: String,
}

impl ThreeUpstreams {
    fn start() -> ThreeUpstreams {
        let hub = AuthRegistry::start(&[]);
        let quay = AuthRegistry::start(&[]);
        let ghcr = AuthRegistry::start(&[]);
        let hub_img = hub.seed_with(small_images(11));
        let quay_img = quay.seed_with(small_images(12));
        let ghcr_img = ghcr.seed_with(small_images(13));
        // The same names hold different content on each upstream.
        for (a, b) in [
            (&hub_img, &quay_img),
            (&hub_img, &ghcr_img),
            (&quay_img, &ghcr_img),
        ] {
            assert_ne!(a.small.digest, b.small.digest);
            assert_ne!(a.index.digest, b.index.digest);
            assert_ne!(a.multilayer.digest, b.multilayer.digest);
        }
        // An official image: library/e2elib on the docker.io registry.
        let lib_digest = hub.copy_within(&hub_img.multilayer.name_tag(), "library/e2elib:latest");
        assert_eq!(lib_digest, hub_img.multilayer.digest);
        let config = format!(
            "{}{}{}hosts = [\"ghcr-cache.test\"]\n",
            upstream_toml("docker.io", &hub.registry.url()),
            upstream_toml("quay.io", &quay.registry.url()),
            upstream_toml("ghcr.io", &ghcr.registry.url()),
        );
        let cache = Cache::start_with_config(&config, &[]);
        ThreeUpstreams {
            cache,
            hub,
            quay,
            ghcr,
            hub_img,
            quay_img,
            ghcr_img,
            lib_digest,
        }
    }

    /// Each upstream's name, registry and content.
    fn regs(&self) -> [(&'static str, &AuthRegistry, &Seeded); 3] {
        [
            ("docker.io", &self.hub, &self.hub_img),
            ("quay.io", &self.quay, &self.quay_img),
            ("ghcr.io", &self.ghcr, &self.ghcr_img),
        ]
    }

    /// Every registry's logs, for failure messages.
    fn all_logs(&self) -> String {
        self.regs()
            .iter()
            .map(|(n, r, _)| format!("===== {n} =====\n{}", r.logs()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[test]
fn containerd_with_only_a_default_hosts_toml_pulls_each_upstreams_own_content() {
    let w = ThreeUpstreams::start();
    let regs = w.regs();
    // containerd with ONLY a _default hosts.toml: the cache for every registry,
    // the fallback server dead, so a pull that bypassed the cache would fail.
    let ctrd = Containerd::start();
    let hosts = ctrd.hosts_dir("hosts");
    write_hosts_toml(&hosts, "_default", &w.cache.url(), &dead_url());
    let entries: Vec<_> = std::fs::read_dir(&hosts)
        .expect("read hosts dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, ["_default"]);
    for (upstream, reg, seeded) in regs {
        for (img, all) in [(&seeded.small, false), (&seeded.index, true)] {
            let image_ref = format!("{upstream}/{}", img.name_tag());
            ctrd.pull(&image_ref, &hosts, all).unwrap_or_else(|e| {
                panic!(
                    "ctr pull {image_ref} through the cache failed: {e}\n{}\n{}\n{}",
                    ctrd.log_tail(),
                    w.cache.log_tail(),
                    w.all_logs()
                )
            });
            assert_eq!(
                ctrd.image_digest(&image_ref).as_deref(),
                Some(img.digest.as_str()),
                "{image_ref} did not come from {upstream}\n{}",
                reg.registry.request_summary()
            );
        }
    }
    let content = ctrd.content_digests();
    for (upstream, _, seeded) in regs {
        for layer in seeded.small.layers.iter().chain(&seeded.index.layers) {
            assert!(
                content.contains(layer),
                "{upstream}'s layer {layer} missing from containerd's content store"
            );
        }
    }
    // Each registry was asked (by the cache, never by containerd) for its own
    // blobs only: every layer of another upstream is unknown to it, and was
    // never requested from it.
    for (upstream, reg, seeded) in regs {
        assert_no_requests_from(&reg.registry, "containerd", upstream);
        let uris = request_uris(&reg.registry);
        for layer in &seeded.small.layers {
            assert_eq!(
                reg.registry.blob_gets(Some(layer)),
                1,
                "{upstream} should serve its own layer {layer} once\n{}",
                reg.registry.request_summary()
            );
        }
        for (other, _, other_seeded) in regs {
            if other == upstream {
                continue;
            }
            for layer in other_seeded
                .small
                .layers
                .iter()
                .chain(&other_seeded.index.layers)
            {
                assert!(
                    !uris.iter().any(|u| u.contains(layer.as_str())),
                    "{upstream} was asked for {other}'s layer {layer}\n{}",
                    reg.registry.request_summary()
                );
            }
        }
        assert!(
            uris.iter()
                .any(|u| u.starts_with("/v2/test/small/manifests/latest")),
            "{upstream} never saw the manifest request\n{}",
            reg.registry.request_summary()
        );
    }
}

#[test]
fn a_path_prefix_picks_the_upstream_and_no_prefix_means_the_first() {
    let w = ThreeUpstreams::start();
    let cache = &w.cache;
    // skopeo through the path prefix /v2/<upstream>/<repo>/...: the same tag,
    // each upstream's digest (tags are kept per upstream).
    for (upstream, _, seeded) in w.regs() {
        let reference = cache.docker_ref(&format!("{upstream}/test/small:latest"));
        assert_eq!(
            skopeo_inspect_digest(&reference, None),
            seeded.small.digest,
            "{reference}"
        );
    }
    let out = short_tempdir("e2e-multi-");
    let digest = skopeo_copy_to_oci_dir(
        &cache.docker_ref("quay.io/test/multilayer:latest"),
        &out.path().join("quay-multilayer"),
        false,
        None,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", cache.log_tail(), w.all_logs()));
    assert_eq!(digest, w.quay_img.multilayer.digest);
    assert_eq!(
        w.quay
            .registry
            .blob_gets(Some(&w.quay_img.multilayer.layers[0])),
        1,
        "{}",
        w.quay.registry.request_summary()
    );
    assert_eq!(
        w.hub
            .registry
            .blob_gets(Some(&w.hub_img.multilayer.layers[0])),
        0,
        "{}",
        w.hub.registry.request_summary()
    );
    // No prefix: the default upstream (the first, docker.io).
    assert_eq!(
        skopeo_inspect_digest(&cache.docker_ref("test/small:latest"), None),
        w.hub_img.small.digest
    );
}

#[test]
fn a_single_segment_docker_io_name_is_an_official_library_image() {
    let w = ThreeUpstreams::start();
    let out = short_tempdir("e2e-multi-");
    let digest = skopeo_copy_to_oci_dir(
        &w.cache.docker_ref("e2elib:latest"),
        &out.path().join("e2elib"),
        false,
        None,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", w.cache.log_tail(), w.hub.logs()));
    assert_eq!(digest, w.lib_digest);
    assert!(
        request_uris(&w.hub.registry)
            .iter()
            .any(|u| u == "/v2/library/e2elib/manifests/latest"),
        "{}",
        w.hub.registry.request_summary()
    );
}

#[test]
fn docker_hub_aliases_and_a_listed_host_name_pick_their_upstream() {
    let w = ThreeUpstreams::start();
    let cache = &w.cache;
    // Docker Hub's aliases name the docker.io upstream.
    for alias in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
        let url = format!("{}/v2/test/small/manifests/latest?ns={alias}", cache.url());
        let answer = fetch("GET", &url, Auth::None);
        assert_eq!(answer.status, 200, "{alias}: {}", answer.describe());
        assert_eq!(
            sha256_bytes(&answer.body),
            w.hub_img.small.digest,
            "{alias}"
        );
    }
    // A Host name listed in `hosts` selects its upstream.
    let answer = fetch_with(
        "GET",
        &format!("{}/v2/test/small/manifests/latest", cache.url()),
        Auth::None,
        &[("Host", &format!("ghcr-cache.test:{}", cache.port))],
    );
    assert_eq!(answer.status, 200, "{}", answer.describe());
    assert_eq!(sha256_bytes(&answer.body), w.ghcr_img.small.digest);
}

#[test]
fn an_unknown_ns_is_name_unknown_and_reaches_no_registry_or_token_server() {
    let w = ThreeUpstreams::start();
    let cache = &w.cache;
    let regs = w.regs();
    // The cache holds docker.io's layer: an unknown ns must not reach it either.
    let layer = &w.hub_img.small.layers[0];
    let stored = fetch(
        "GET",
        &format!("{}/v2/test/small/blobs/{layer}", cache.url()),
        Auth::None,
    );
    assert_eq!(stored.status, 200, "{}", stored.describe());
    assert_eq!(sha256_bytes(&stored.body), *layer);

    let before: Vec<usize> = regs
        .iter()
        .map(|(_, r, _)| request_count(&r.registry))
        .collect();
    let tokens_before: Vec<usize> = regs
        .iter()
        .map(|(_, r, _)| r.token.requests().len())
        .collect();
    for path in [
        "/v2/test/small/manifests/latest?ns=evil.example".to_owned(),
        format!("/v2/test/small/blobs/{layer}?ns=evil.example"),
    ] {
        let answer = fetch("GET", &format!("{}{path}", cache.url()), Auth::None);
        assert_eq!(answer.status, 404, "{path}: {}", answer.describe());
        assert_eq!(
            answer.error_code().as_deref(),
            Some("NAME_UNKNOWN"),
            "{path}: {}",
            answer.describe()
        );
    }
    let after: Vec<usize> = regs
        .iter()
        .map(|(_, r, _)| request_count(&r.registry))
        .collect();
    let tokens_after: Vec<usize> = regs
        .iter()
        .map(|(_, r, _)| r.token.requests().len())
        .collect();
    assert_eq!(
        before,
        after,
        "an unknown ns reached a registry\n{}",
        w.all_logs()
    );
    assert_eq!(
        tokens_before, tokens_after,
        "an unknown ns reached a token server"
    );
}

// ---------------------------------------------------------------------------
// A private upstream: credentials for the cache, access control for clients.
// ---------------------------------------------------------------------------

const UPSTREAM_USER: &str = "cacheuser";
const UPSTREAM_PASS: &str = "upstream-pass-7f3a9c-never-log-me";
const CI_TOKEN: &str = "ci-token-0123456789abcdef-e2e";
const ALICE_PASS: &str = "alice-pw-5e1d";
const PRIVATE_MANIFEST: &str = "/v2/test/private/manifests/latest";

/// A registry whose test/private only `UPSTREAM_USER` may read, the secrets a
/// deployment would mount (the upstream password in a file, an htpasswd file
/// with alice), and the cache's TOML credentials for the upstream.
struct PrivateUpstream {
    reg: AuthRegistry,
    /// The digest of test/private:latest.
    private_digest: String,
    /// Its one layer.
    layer: String,
    /// `username = ...` and `password_file = ...` lines of an `[[upstreams]]` entry.
    creds_toml: String,
    htpasswd: PathBuf,
    _secrets: tempfile::TempDir,
}

impl PrivateUpstream {
    fn start() -> PrivateUpstream {
        require_tool("htpasswd");
        let reg = AuthRegistry::start_with(TokenOptions {
            user: Some(format!("{UPSTREAM_USER}:{UPSTREAM_PASS}")),
            private: vec!["test/private".to_owned()],
        });
        let seeded = reg.seed_with(small_images(21));
        let private_digest = reg.copy_within(&seeded.multilayer.name_tag(), "test/private:latest");
        let layer = seeded.multilayer.layers[0].clone();
        let private_direct = reg.registry.docker_ref("test/private:latest");
        assert!(
            skopeo_inspect_raw(&private_direct, None).is_err(),
            "the registry lets anonymous users read test/private"
        );

        // Secrets as a Kubernetes deployment would mount them, and an htpasswd file.
        let secrets = short_tempdir("e2e-secrets-");
        let password_file = secrets.path().join("upstream-password");
        std::fs::write(&password_file, format!("{UPSTREAM_PASS}\n")).expect("write password file");
        let htpasswd_out = run_ok(
            Command::new("htpasswd").args(["-nbB", "alice", ALICE_PASS]),
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| panic!("htpasswd failed: {e}"));
        let htpasswd_line = String::from_utf8_lossy(&htpasswd_out).trim().to_owned();
        assert!(htpasswd_line.starts_with("alice:$2"), "{htpasswd_line}");
        let htpasswd = secrets.path().join("htpasswd");
        std::fs::write(&htpasswd, format!("{htpasswd_line}\n")).expect("write htpasswd");
        let creds_toml = format!(
            "username = \"{UPSTREAM_USER}\"\npassword_file = {}\n",
            toml_path(&password_file)
        );
        PrivateUpstream {
            reg,
            private_digest,
            layer,
            creds_toml,
            htpasswd,
            _secrets: secrets,
        }
    }

    /// A cache with `[auth]` (alice in htpasswd, user ci with a static token)
    /// in front of the registry as `private.example` (any authenticated user)
    /// and as `alice-only.example` (`access = ["alice"]`), logging at debug.
    fn cache(&self) -> Cache {
        let creds = &self.creds_toml;
        let config = format!(
            "[auth]\nhtpasswd = {htpasswd}\n\
             [[auth.tokens]]\nuser = \"ci\"\ntoken_env = \"OCI_CACHE_E2E_CI_TOKEN\"\n\n\
             {private}{creds}\n\
             {alice_only}{creds}access = [\"alice\"]\n",
            htpasswd = toml_path(&self.htpasswd),
            private = upstream_toml("private.example", &self.reg.registry.url()),
            alice_only = upstream_toml("alice-only.example", &self.reg.registry.url()),
        );
        Cache::start_with_config(
            &config,
            &[("OCI_CACHE_E2E_CI_TOKEN", CI_TOKEN), ("RUST_LOG", "debug")],
        )
    }
}

/// No secret ever reaches the cache's log (debug level), which shows the
/// requests for the private manifest.
fn assert_no_secret_in_the_log(cache: &Cache) {
    let log = cache.log();
    assert!(log.contains(PRIVATE_MANIFEST), "{log}");
    for (what, secret) in [
        ("the upstream password", UPSTREAM_PASS),
        ("the client token", CI_TOKEN),
        ("alice's password", ALICE_PASS),
    ] {
        assert!(!log.contains(secret), "{what} appears in the cache's log");
    }
}

#[test]
fn upstream_credentials_without_auth_are_refused_unless_the_upstream_is_opened_to_everyone() {
    let p = PrivateUpstream::start();
    // With credentials and no [auth], the cache refuses to start unless the
    // upstream is opened to everyone explicitly.
    let open_config = format!(
        "{}{}",
        upstream_toml("private.example", &p.reg.registry.url()),
        p.creds_toml
    );
    let (status, text) = serve_expecting_refusal(&open_config, &[])
        .unwrap_or_else(|e| panic!("the cache did not refuse credentials without [auth]: {e}"));
    assert!(!status.success(), "{text}");
    assert!(text.contains("private.example"), "{text}");
    assert!(
        !text.contains(UPSTREAM_PASS),
        "the refusal shows the password: {text}"
    );
    let anonymous_ok =
        Cache::start_with_config(&format!("{open_config}access = \"anonymous\"\n"), &[]);
    assert_eq!(
        skopeo_inspect_digest(&anonymous_ok.docker_ref("test/private:latest"), None),
        p.private_digest,
        "an explicitly anonymous upstream serves its private images to everyone"
    );
    assert!(!anonymous_ok.log().contains(UPSTREAM_PASS));
}

#[test]
fn anonymous_clients_and_wrong_credentials_are_challenged_and_never_reach_the_registry() {
    let p = PrivateUpstream::start();
    let cache = p.cache();
    let url = |path: &str| format!("{}{path}", cache.url());
    // Anonymous clients are challenged (no upstream is anonymous), and never
    // reach the registry.
    let before = request_count(&p.reg.registry);
    let answer = fetch("GET", &url("/v2/"), Auth::None);
    assert_eq!(answer.status, 401, "{}", answer.describe());
    assert_eq!(
        answer.header("www-authenticate").as_deref(),
        Some("Basic realm=\"oci-cache\""),
        "{}",
        answer.describe()
    );
    for (method, auth, what) in [
        ("GET", Auth::None, "anonymous"),
        ("HEAD", Auth::None, "anonymous"),
        (
            "GET",
            Auth::Bearer("not-the-token-at-all"),
            "wrong bearer token",
        ),
        (
            "GET",
            Auth::Basic("ci", "wrong-token-wrong-token"),
            "wrong token",
        ),
        ("GET", Auth::Basic("alice", "wrong"), "wrong password"),
    ] {
        let answer = fetch(method, &url(PRIVATE_MANIFEST), auth);
        assert_eq!(answer.status, 401, "{method} {what}: {}", answer.describe());
        assert!(
            answer.header("www-authenticate").is_some(),
            "{what}: {}",
            answer.describe()
        );
    }
    assert_eq!(
        request_count(&p.reg.registry),
        before,
        "unauthenticated requests reached the registry\n{}",
        p.reg.registry.request_summary()
    );

    assert!(
        skopeo_inspect_raw(&cache.docker_ref("test/private:latest"), None).is_err(),
        "skopeo read the private manifest through the cache without credentials"
    );
    assert_no_secret_in_the_log(&cache);
}

/// skopeo with the static token copies test/private through `cache` into a
/// fresh OCI layout; returns the layout's directory (kept alive) and path.
fn copy_private_with_the_ci_token(
    p: &PrivateUpstream,
    cache: &Cache,
) -> (tempfile::TempDir, PathBuf) {
    let out = short_tempdir("e2e-private-");
    let dir = out.path().join("private");
    let ci_creds = format!("ci:{CI_TOKEN}");
    let digest = skopeo_copy_to_oci_dir(
        &cache.docker_ref("test/private:latest"),
        &dir,
        false,
        Some(&ci_creds),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", cache.log_tail(), p.reg.logs()));
    assert_eq!(digest, p.private_digest);
    (out, dir)
}

#[test]
fn a_client_token_pulls_a_private_image_with_the_caches_upstream_credentials() {
    let p = PrivateUpstream::start();
    let cache = p.cache();
    // skopeo with the static token pulls the private image through the cache,
    // which authenticates upstream with the password from the file.
    let _copy = copy_private_with_the_ci_token(&p, &cache);
    let token_requests = p.reg.token.requests();
    assert!(
        token_requests
            .iter()
            .any(|l| l.contains(&format!("sub={UPSTREAM_USER}"))
                && l.contains("test/private")
                && l.contains("\"pull\"")),
        "the cache did not use its upstream credentials: {token_requests:#?}"
    );
    assert_eq!(p.reg.registry.blob_gets(Some(&p.layer)), 1);
    assert_no_secret_in_the_log(&cache);
}

#[test]
fn a_stored_private_blob_is_served_only_to_authenticated_clients_and_from_the_cache() {
    let p = PrivateUpstream::start();
    let cache = p.cache();
    let url = |path: &str| format!("{}{path}", cache.url());
    let layer = &p.layer;
    let blob_path = format!("/v2/test/private/blobs/{layer}");
    let (_copy, dir) = copy_private_with_the_ci_token(&p, &cache);
    let blob_bytes = std::fs::read(
        dir.join("blobs/sha256")
            .join(layer.trim_start_matches("sha256:")),
    )
    .expect("the copied layer");

    // The blob is now stored; anonymous clients still get 401 and an OCI error,
    // never its bytes: by its repository, by ns, by another repository name.
    let before = request_count(&p.reg.registry);
    for path in [
        blob_path.clone(),
        format!("{blob_path}?ns=private.example"),
        format!("/v2/test/small/blobs/{layer}"),
        format!("/v2/private.example/test/private/blobs/{layer}"),
    ] {
        for method in ["GET", "HEAD"] {
            let answer = fetch(method, &url(&path), Auth::None);
            assert_eq!(answer.status, 401, "{method} {path}: {}", answer.describe());
            assert_eq!(
                answer.header("www-authenticate").as_deref(),
                Some("Basic realm=\"oci-cache\""),
                "{method} {path}"
            );
            if method == "GET" {
                assert_eq!(
                    answer.error_code().as_deref(),
                    Some("UNAUTHORIZED"),
                    "{path}: {}",
                    answer.describe()
                );
                assert!(
                    answer.body.len() < 1024 && answer.body != blob_bytes,
                    "{path}: the body is not just an error"
                );
                assert_ne!(sha256_bytes(&answer.body), *layer);
            } else {
                assert!(answer.body.is_empty());
            }
            assert_ne!(
                answer.header("docker-content-digest").as_deref(),
                Some(layer.as_str()),
                "{method} {path} names the blob"
            );
        }
    }
    // With the token (Bearer) it is served, from the cache alone.
    let answer = fetch("GET", &url(&blob_path), Auth::Bearer(CI_TOKEN));
    assert_eq!(answer.status, 200, "{}", answer.describe());
    assert_eq!(sha256_bytes(&answer.body), *layer);
    assert!(answer.body == blob_bytes);
    assert_eq!(
        request_count(&p.reg.registry),
        before,
        "serving a stored blob reached the registry\n{}",
        p.reg.registry.request_summary()
    );
    assert_no_secret_in_the_log(&cache);
}

#[test]
fn containerd_pulls_a_private_image_as_an_htpasswd_user_and_not_without() {
    let p = PrivateUpstream::start();
    let cache = p.cache();
    // containerd with an htpasswd user (Basic), through a _default hosts.toml.
    let ctrd = Containerd::start();
    let hosts = ctrd.hosts_dir("hosts");
    write_hosts_toml(&hosts, "_default", &cache.url(), &dead_url());
    let image_ref = "private.example/test/private:latest";
    assert!(
        ctrd.pull(image_ref, &hosts, false).is_err(),
        "containerd pulled the private image without credentials"
    );
    ctrd.pull_as(
        image_ref,
        &hosts,
        false,
        Some(&format!("alice:{ALICE_PASS}")),
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}\n{}\n{}",
            ctrd.log_tail(),
            cache.log_tail(),
            p.reg.logs()
        )
    });
    assert_eq!(
        ctrd.image_digest(image_ref).as_deref(),
        Some(p.private_digest.as_str())
    );
    assert_no_requests_from(&p.reg.registry, "containerd", "the registry");
    assert_no_secret_in_the_log(&cache);
}

#[test]
fn an_upstream_open_to_alice_only_denies_other_authenticated_users() {
    let p = PrivateUpstream::start();
    let cache = p.cache();
    // access = ["alice"]: alice may, ci (authenticated) is denied with 403.
    let alice_only = format!("{}{PRIVATE_MANIFEST}?ns=alice-only.example", cache.url());
    let answer = fetch("GET", &alice_only, Auth::Bearer(CI_TOKEN));
    assert_eq!(answer.status, 403, "{}", answer.describe());
    assert_eq!(answer.error_code().as_deref(), Some("DENIED"));
    let answer = fetch("GET", &alice_only, Auth::None);
    assert_eq!(answer.status, 401, "{}", answer.describe());
    let answer = fetch("GET", &alice_only, Auth::Basic("alice", ALICE_PASS));
    assert_eq!(answer.status, 200, "{}", answer.describe());
    assert_eq!(sha256_bytes(&answer.body), p.private_digest);
    assert_no_secret_in_the_log(&cache);
}

// ---------------------------------------------------------------------------
// Docker's daemon and the printed client configurations.
// ---------------------------------------------------------------------------

#[test]
fn docker_daemon_pulls_docker_io_images_through_the_cache_as_registry_mirror() {
    let hub = AuthRegistry::start(&[]);
    let seeded = hub.seed_with(small_images(31));
    let lib_digest = hub.copy_within(&seeded.index_docker.name_tag(), "library/e2edocker:latest");
    // docker.io is the default upstream (docker mirrors docker.io names only, and
    // asks the mirror without any ns); another upstream leads nowhere.
    let config = format!(
        "{}{}",
        upstream_toml("docker.io", &hub.registry.url()),
        upstream_toml("quay.io", &dead_url())
    );
    let cache = Cache::start_with_config(&config, &[]);
    let dockerd = Dockerd::try_start(&cache.url()).unwrap_or_else(|e| {
        panic!("\n\n*** dockerd could not start in this environment ***\n{e}\n")
    });

    let image = seeded.small.name_tag();
    let out = dockerd.pull(&image).unwrap_or_else(|e| {
        panic!(
            "docker pull {image} failed: {e}\n{}\n{}\n{}",
            dockerd.log_tail(),
            cache.log_tail(),
            hub.logs()
        )
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("Digest: {}", seeded.small.digest)),
        "{stdout}"
    );
    assert_eq!(
        dockerd.repo_digests(&image),
        [format!("test/small@{}", seeded.small.digest)]
    );

    // An official image by its short name (library/e2edocker), a manifest list.
    dockerd.pull("e2edocker:latest").unwrap_or_else(|e| {
        panic!(
            "docker pull e2edocker failed: {e}\n{}\n{}",
            dockerd.log_tail(),
            cache.log_tail()
        )
    });
    assert_eq!(
        dockerd.repo_digests("e2edocker:latest"),
        [format!("e2edocker@{lib_digest}")]
    );

    // The requests went through the cache, which fetched from the registry.
    let log = cache.log();
    for path in [
        "/v2/test/small/manifests/latest",
        "/v2/library/e2edocker/manifests/latest",
    ] {
        assert!(log.contains(path), "the cache never saw {path}\n{log}");
    }
    for layer in &seeded.small.layers {
        assert!(
            log.contains(&format!("/v2/test/small/blobs/{layer}")),
            "{log}"
        );
        assert_eq!(hub.registry.blob_gets(Some(layer)), 1);
    }
    assert_no_requests_from(&hub.registry, "docker/", "the registry");
    assert!(
        request_uris(&hub.registry)
            .iter()
            .any(|u| u == "/v2/library/e2edocker/manifests/latest"),
        "{}",
        hub.registry.request_summary()
    );
    // dockerd's own account: each pull tried the mirror, and only the mirror.
    let daemon_log = dockerd.log();
    for name in ["test/small", "e2edocker"] {
        assert!(
            daemon_log.contains(&format!("Trying to pull {name} from {}/", cache.url())),
            "dockerd did not use the mirror for {name}\n{}",
            dockerd.log_tail()
        );
    }
    assert!(
        !daemon_log.contains("registry-1.docker.io"),
        "dockerd fell back to Docker Hub\n{}",
        dockerd.log_tail()
    );
}

/// The blocks of `oci-cache config containerd`: (upstream name, hosts.toml text).
fn containerd_blocks(out: &str) -> Vec<(String, String)> {
    const MARK: &str = "# /etc/containerd/certs.d/";
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix(MARK) {
            let name = rest
                .strip_suffix("/hosts.toml")
                .unwrap_or_else(|| panic!("unexpected header line {line:?}"));
            blocks.push((name.to_owned(), String::new()));
        } else if let Some((_, text)) = blocks.last_mut() {
            text.push_str(line);
            text.push('\n');
        } else {
            assert!(
                line.trim().is_empty() || line.starts_with('#'),
                "text before the first block: {line:?}"
            );
        }
    }
    blocks
}

/// A cache of docker.io (a real registry), quay.io and ghcr.io (two URLs),
/// and `oci-cache config CLIENT` run on its config file.
struct PrintedConfigs {
    hub: AuthRegistry,
    cache: Cache,
}

impl PrintedConfigs {
    fn start() -> PrintedConfigs {
        let hub = AuthRegistry::start(&[]);
        let config = format!(
            "{}{}[[upstreams]]\nname = \"ghcr.io\"\nurls = [\"{}\", \"{}\"]\n",
            upstream_toml("docker.io", &hub.registry.url()),
            upstream_toml("quay.io", "https://quay.io"),
            "https://ghcr.io",
            "https://ghcr-backup.invalid",
        );
        let cache = Cache::start_with_config(&config, &[]);
        PrintedConfigs { hub, cache }
    }

    /// What `oci-cache config CLIENT --config FILE --cache-url URL` prints.
    fn print(&self, client: &str) -> String {
        let cfg = self.cache.config_path();
        run_cli(&[
            OsStr::new("config"),
            OsStr::new(client),
            OsStr::new("--config"),
            cfg.as_os_str(),
            OsStr::new("--cache-url"),
            OsStr::new(&self.cache.url()),
        ])
        .unwrap_or_else(|e| panic!("oci-cache config {client} failed: {e}"))
    }
}

#[test]
fn printed_containerd_config_has_one_hosts_toml_per_upstream_naming_the_cache() {
    let p = PrintedConfigs::start();
    let cache = &p.cache;
    let out = p.print("containerd");
    let blocks = containerd_blocks(&out);
    let names: Vec<&str> = blocks.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["docker.io", "quay.io", "ghcr.io"], "{out}");
    let servers = [
        p.hub.registry.url(),
        "https://quay.io".to_owned(),
        "https://ghcr.io".to_owned(),
    ];
    for ((name, text), server) in blocks.iter().zip(&servers) {
        let parsed: toml::Table = toml::from_str(text)
            .unwrap_or_else(|e| panic!("the {name} block is not TOML ({e}):\n{text}"));
        assert_eq!(
            parsed["server"].as_str(),
            Some(server.as_str()),
            "{name}:\n{text}"
        );
        let hosts = parsed["host"].as_table().expect("[host] table");
        assert_eq!(
            hosts.keys().collect::<Vec<_>>(),
            [&cache.url()],
            "{name}:\n{text}"
        );
        let caps: BTreeSet<&str> = hosts[&cache.url()]["capabilities"]
            .as_array()
            .expect("capabilities")
            .iter()
            .filter_map(toml::Value::as_str)
            .collect();
        assert_eq!(caps, BTreeSet::from(["pull", "resolve"]), "{name}:\n{text}");
    }
}

#[test]
fn the_printed_docker_io_hosts_toml_used_as_is_makes_ctr_pull_through_the_cache() {
    let p = PrintedConfigs::start();
    let (hub, cache) = (&p.hub, &p.cache);
    let seeded = hub.seed_with(small_images(41));
    let blocks = containerd_blocks(&p.print("containerd"));
    assert_eq!(blocks[0].0, "docker.io");
    // The printed docker.io block, used as is: containerd pulls through the
    // cache (its `server` is the registry itself, so the registry's log shows
    // whether containerd went around the cache).
    let ctrd = Containerd::start();
    let hosts = ctrd.hosts_dir("certs.d");
    let dir = hosts.join("docker.io");
    std::fs::create_dir_all(&dir).expect("create certs.d/docker.io");
    std::fs::write(dir.join("hosts.toml"), &blocks[0].1).expect("write hosts.toml");
    for (img, all) in [(&seeded.multilayer, false), (&seeded.index, true)] {
        let image_ref = format!("docker.io/{}", img.name_tag());
        ctrd.pull(&image_ref, &hosts, all).unwrap_or_else(|e| {
            panic!(
                "{e}\n{}\n{}\n{}",
                ctrd.log_tail(),
                cache.log_tail(),
                hub.logs()
            )
        });
        assert_eq!(
            ctrd.image_digest(&image_ref).as_deref(),
            Some(img.digest.as_str())
        );
    }
    assert_no_requests_from(&hub.registry, "containerd", "the registry");
    let log = cache.log();
    assert!(
        log.contains("/v2/test/multilayer/manifests/latest"),
        "the cache never saw the pull\n{log}"
    );
}

#[test]
fn printed_docker_k3s_and_podman_configs_name_the_cache() {
    let p = PrintedConfigs::start();
    let cache = &p.cache;
    let docker = p.print("docker");
    let json: String = docker
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let daemon: serde_json::Value = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("daemon.json is not JSON ({e}):\n{docker}"));
    assert_eq!(daemon["registry-mirrors"], serde_json::json!([cache.url()]));
    assert_eq!(
        daemon["insecure-registries"],
        serde_json::json!([cache.host()])
    );
    for client in ["k3s", "podman"] {
        let text = p.print(client);
        for name in ["docker.io", "quay.io", "ghcr.io"] {
            assert!(text.contains(name), "{client} config lacks {name}:\n{text}");
        }
        assert!(text.contains(&cache.host()), "{client}:\n{text}");
    }
}
