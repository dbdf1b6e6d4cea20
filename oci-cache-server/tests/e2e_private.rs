//! End to end: private stays private. Two real registries: a plain one as `docker.io`
//! (anonymous) and a token-auth one as `private` (the cache holds credentials; access is
//! alice's only). After alice pulls `private.example/team/secret:v1` with containerd, an anonymous
//! client asks for every digest of that image through every docker.io route (default,
//! `?ns=docker.io`, `/v2/docker.io/` prefix, `Host`), by GET, HEAD and range, and gets 404
//! without a byte of it; bob and anonymous clients get 401/403 on the private routes. After
//! a restart with both registries stopped, alice pulls the image again offline through
//! her own route, and the anonymous client still gets nothing. On the filesystem store and
//! on S3 (s3s-fs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::cache_home::CacheHome;
use support::fetch::fetch_with;
use support::process::run_ok;
use support::s3::S3Server;
use support::{
    require_tool, write_hosts_toml, Auth, AuthRegistry, Containerd, Registry, SeedOptions,
    TokenOptions,
};

const UPSTREAM_USER: &str = "cacheuser";
const UPSTREAM_PASS: &str = "upstream-pass-private-e2e";
const ALICE_PASS: &str = "alice-pw-e2e-private";
const BUCKET: &str = "oci";

fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

struct World {
    public: Registry,
    private: AuthRegistry,
    home: CacheHome,
    secret_digest: String,
    _secrets: tempfile::TempDir,
}

fn world(storage: Option<(&S3Server, &str)>) -> World {
    require_tool("htpasswd");
    let public = Registry::start_default();
    support::seed_images(
        &public,
        None,
        SeedOptions {
            seed: 61,
            ..SeedOptions::default()
        },
    );
    let private = AuthRegistry::start_with(TokenOptions {
        user: Some(format!("{UPSTREAM_USER}:{UPSTREAM_PASS}")),
        private: vec!["team/secret".to_owned()],
    });
    let seeded = private.seed_with(SeedOptions {
        seed: 62,
        ..SeedOptions::default()
    });
    let secret_digest = private.copy_within(&seeded.multilayer.name_tag(), "team/secret:v1");

    let secrets = support::short_tempdir("e2e-private-secrets-");
    let password_file = secrets.path().join("upstream-password");
    std::fs::write(&password_file, UPSTREAM_PASS).unwrap();
    let line = run_ok(
        Command::new("htpasswd").args(["-nbB", "alice", ALICE_PASS]),
        Duration::from_secs(30),
    )
    .unwrap();
    let htpasswd = secrets.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        String::from_utf8_lossy(&line).trim().to_owned() + "\n",
    )
    .unwrap();
    let storage_line = storage.map_or(String::new(), |(_, prefix)| {
        format!("storage = \"s3://{BUCKET}/{prefix}\"\n")
    });
    let config = format!(
        "{storage_line}\
         [auth]\nhtpasswd = {htpasswd}\n\n\
         [[upstreams]]\nname = \"docker.io\"\nurl = \"{public}\"\nhosts = [\"docker-cache.test\"]\naccess = \"anonymous\"\n\n\
         [[upstreams]]\nname = \"private.example\"\nurl = \"{private}\"\nhosts = [\"private-cache.test\"]\n\
         username = \"{UPSTREAM_USER}\"\npassword_file = {password}\naccess = [\"alice\"]\n",
        htpasswd = toml_path(&htpasswd),
        public = public.url(),
        private = private.registry.url(),
        password = toml_path(&password_file),
    );
    let mut home = CacheHome::new(&config);
    if let Some((s3, _)) = storage {
        home = home.with_env(&s3.aws_env());
    }
    World {
        public,
        private,
        home,
        secret_digest,
        _secrets: secrets,
    }
}

/// Every docker.io route to `digest` (as a blob and as a manifest) in `repo`.
fn docker_io_routes(cache: &str, repo: &str, digest: &str) -> Vec<(String, Option<&'static str>)> {
    let mut out = Vec::new();
    for kind in ["blobs", "manifests"] {
        out.push((format!("{cache}/v2/{repo}/{kind}/{digest}"), None));
        out.push((
            format!("{cache}/v2/{repo}/{kind}/{digest}?ns=docker.io"),
            None,
        ));
        out.push((format!("{cache}/v2/docker.io/{repo}/{kind}/{digest}"), None));
        out.push((
            format!("{cache}/v2/{repo}/{kind}/{digest}"),
            Some("docker-cache.test"),
        ));
    }
    out
}

/// Anonymous clients (and bob) try every route to every digest of the private image:
/// nothing comes back but errors, and no byte of it.
fn assert_nothing_leaks(cache: &str, digests: &BTreeSet<String>, secret_bytes: &[Vec<u8>]) {
    for digest in digests {
        for repo in ["team/secret", "test/small", "library/x"] {
            for (url, host) in docker_io_routes(cache, repo, digest) {
                for (method, range) in [("GET", None), ("HEAD", None), ("GET", Some("bytes=0-9"))] {
                    let mut headers: Vec<(&str, &str)> = Vec::new();
                    if let Some(h) = host {
                        headers.push(("host", h));
                    }
                    if let Some(r) = range {
                        headers.push(("range", r));
                    }
                    let answer = fetch_with(method, &url, Auth::None, &headers);
                    assert!(
                        !(200..300).contains(&answer.status),
                        "anonymous {method} {url} host={host:?} range={range:?}: {}",
                        answer.describe()
                    );
                    for secret in secret_bytes {
                        let probe = &secret[..secret.len().min(64)];
                        assert!(
                            probe.len() < 16
                                || !answer.body.windows(probe.len()).any(|w| w == probe),
                            "{method} {url}: the body holds private bytes"
                        );
                    }
                }
            }
        }
        // The private routes: anonymous 401, a wrong password 401.
        for url in [
            format!("{cache}/v2/team/secret/blobs/{digest}?ns=private.example"),
            format!("{cache}/v2/private.example/team/secret/blobs/{digest}"),
        ] {
            for auth in [Auth::None, Auth::Basic("alice", "wrong")] {
                let answer = fetch_with("GET", &url, auth, &[]);
                assert_eq!(answer.status, 401, "{url} {auth:?}: {}", answer.describe());
            }
        }
    }
}

/// alice pulls the private image with a fresh containerd through the cache; returns the
/// digests containerd fetched.
fn alice_pulls(cache_url: &str, expected: &str, context: &dyn Fn() -> String) -> BTreeSet<String> {
    let ctrd = Containerd::start();
    let hosts = ctrd.hosts_dir("hosts");
    write_hosts_toml(&hosts, "private.example", cache_url, "http://127.0.0.1:9");
    let image = "private.example/team/secret:v1";
    assert!(
        ctrd.pull(image, &hosts, false).is_err(),
        "containerd pulled the private image without credentials"
    );
    ctrd.pull_as(image, &hosts, false, Some(&format!("alice:{ALICE_PASS}")))
        .unwrap_or_else(|e| panic!("alice's pull: {e}\n{}\n{}", ctrd.log_tail(), context()));
    assert_eq!(ctrd.image_digest(image).as_deref(), Some(expected));
    ctrd.content_digests().into_iter().collect()
}

fn private_stays_private(storage: Option<(&S3Server, &str)>) {
    let mut w = world(storage);
    let mut cache = w.home.start();
    let digests = alice_pulls(&cache.url(), &w.secret_digest, &|| cache.log_tail());
    assert!(digests.len() >= 3, "{digests:?}");
    // The bytes, as alice reads them, to look for in every other answer.
    let secret_bytes: Vec<Vec<u8>> = digests
        .iter()
        .map(|d| {
            let url = format!(
                "{}/v2/team/secret/blobs/{d}?ns=private.example",
                cache.url()
            );
            let answer = fetch_with("GET", &url, Auth::Basic("alice", ALICE_PASS), &[]);
            assert_eq!(answer.status, 200, "{}", answer.describe());
            answer.body
        })
        .collect();
    // Wait until the fills are stored (the last byte goes to the client before the commit).
    support::wait_until(
        "alice's fills to be stored",
        Duration::from_secs(20),
        || {
            let m = support::lifecycle::scrape_metrics(&cache.url());
            (support::lifecycle::metric(&m, "oci_cache_fills_in_flight") == 0).then_some(())
        },
        || cache.log_tail(),
    );

    let private_requests = w.private.registry.records().len();
    assert_nothing_leaks(&cache.url(), &digests, &secret_bytes);
    assert_eq!(
        w.private.registry.records().len(),
        private_requests,
        "requests through docker.io routes reached the private registry"
    );
    // The operator pages name the private repository only to alice: not to an anonymous
    // viewer, nor to one with a wrong password, on any page.
    for page in ["/", "/status", "/status.json", "/metrics"] {
        for auth in [Auth::None, Auth::Basic("alice", "wrong-password")] {
            let answer = fetch_with("GET", &format!("{}{page}", cache.url()), auth, &[]);
            assert!(
                answer.status == 200 || answer.status == 401,
                "{page}: {}",
                answer.describe()
            );
            assert!(
                !String::from_utf8_lossy(&answer.body).contains("team/secret"),
                "{page} named the private repository: {}",
                answer.describe()
            );
        }
    }
    for page in ["/", "/status.json"] {
        let status = fetch_with(
            "GET",
            &format!("{}{page}", cache.url()),
            Auth::Basic("alice", ALICE_PASS),
            &[],
        );
        assert!(
            String::from_utf8_lossy(&status.body).contains("private.example/team/secret:v1"),
            "{page}: {}",
            status.describe()
        );
    }

    // The request log names the upstream of manifest requests and blob HEADs and carries no
    // colour codes (its stderr is a file, not a terminal).
    let secret = digests.iter().next().unwrap();
    let head = fetch_with(
        "HEAD",
        &format!(
            "{}/v2/team/secret/blobs/{secret}?ns=private.example",
            cache.url()
        ),
        Auth::Basic("alice", ALICE_PASS),
        &[],
    );
    assert_eq!(head.status, 200, "{}", head.describe());
    let log = cache.log();
    for (method, route) in [("GET", "manifest"), ("HEAD", "blob")] {
        assert!(
            log.lines().any(|l| l.contains(&format!("method={method}"))
                && l.contains(&format!("route=\"{route}\""))
                && l.contains("upstream=\"private.example\"")
                && l.contains("status=200")),
            "{method} {route}:\n{log}"
        );
    }
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file:\n{log}"
    );

    // Restart with both registries stopped: alice pulls offline through her route; the
    // anonymous client still gets nothing (nothing can confirm its routes now).
    cache.stop();
    w.public.stop();
    w.private.registry.stop();
    let cache = w.home.start();
    let again = alice_pulls(&cache.url(), &w.secret_digest, &|| cache.log_tail());
    assert_eq!(again, digests);
    assert_nothing_leaks(&cache.url(), &digests, &secret_bytes);
}

#[test]
fn private_stays_private_on_the_filesystem_store() {
    private_stays_private(None);
}

#[test]
fn private_stays_private_on_s3() {
    let s3 = S3Server::start(&[BUCKET]);
    private_stays_private(Some((&s3, "private-e2e")));
}
