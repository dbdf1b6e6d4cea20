//! End to end: an upstream that needs credentials, and who may pull through it. The
//! cache holds the upstream's credentials; clients authenticate to the cache (static
//! tokens, htpasswd users) and the access rules decide; secrets never reach the log.

// Test helpers outside `#[test]` functions panic on failure like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use support::cache::serve_expecting_refusal;
use support::multi::*;
use support::process::run_ok;
use support::{
    dead_url, fetch, require_tool, sha256_bytes, short_tempdir, skopeo_copy_to_oci_dir,
    skopeo_inspect_digest, skopeo_inspect_raw, write_hosts_toml, Auth, AuthRegistry, Cache,
    Containerd, TokenOptions,
};

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
