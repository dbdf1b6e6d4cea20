//! End to end: the first run of an operator. Start-up failures name what is wrong and where
//! (no CA certificates and how to provide them, the path that cannot be created, the config
//! file's line, column and key, the S3 bucket that cannot be reached while `/readyz` fails
//! until it can), and `oci-cache check` reports line by line what a start would hit, with
//! the real registry (token auth) and a real S3 server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use support::cache::oci_cache_bin;
use support::process::run_with_timeout;
use support::s3::S3Server;
use support::{fetch, free_port, wait_until, Auth, AuthRegistry, Cache};

/// Runs `oci-cache ARGS` with `env` to its end (at most 60 s).
fn run(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(oci_cache_bin());
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    run_with_timeout(&mut cmd, Duration::from_secs(60)).unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path.display().to_string()
}

#[test]
fn start_up_failures_name_the_cause_and_the_place() {
    let dir = support::short_tempdir("first-run-");
    let data = dir.path().join("data").display().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let serve = |extra: &[&str], env: &[(&str, String)]| {
        let mut args = vec!["serve", "--listen", &listen];
        args.extend_from_slice(extra);
        run(&args, env)
    };

    // No CA certificates: the error says so and how to provide them.
    let empty = dir.path().join("no-certs");
    std::fs::create_dir_all(&empty).unwrap();
    let out = serve(
        &["--data-dir", &data],
        &[
            (
                "SSL_CERT_FILE",
                empty.join("none.pem").display().to_string(),
            ),
            ("SSL_CERT_DIR", empty.display().to_string()),
        ],
    );
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("https://registry-1.docker.io"), "{said}");
    assert!(said.contains("CA certificates"), "{said}");
    assert!(said.contains("SSL_CERT_FILE"), "{said}");
    assert!(!said.contains("invalid upstream URL"), "{said}");

    // A data directory that cannot be created: the path is named.
    let file = write(dir.path(), "a-file", "not a directory");
    let under_file = format!("{file}/data");
    let out = serve(&["--data-dir", &under_file], &[]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains(&under_file), "{said}");

    // A type error in the config file: line, column and key.
    let config = write(
        dir.path(),
        "bad.toml",
        "listen = \"127.0.0.1:5000\"\n\n[gc]\nmax_bytes = \"ten\"\n",
    );
    let out = serve(&["--config", &config, "--data-dir", &data], &[]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("line 4 column 13") && said.contains("gc.max_bytes"),
        "{said}"
    );
}

/// S3 unreachable at start: the cache says which bucket and endpoint and why, serves, and
/// `/readyz` fails until the bucket can be reached; then it passes.
#[test]
fn an_unreachable_bucket_is_named_and_readyz_fails_until_it_answers() {
    let s3_port = free_port();
    let endpoint = format!("http://127.0.0.1:{s3_port}");
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", oci_cache_testkit::s3::S3_ACCESS_KEY),
        (
            "AWS_SECRET_ACCESS_KEY",
            oci_cache_testkit::s3::S3_SECRET_KEY,
        ),
    ];
    let cache = Cache::start_with_config(
        "storage = \"s3://late/cache\"\n\n[[upstreams]]\nname = \"docker.io\"\nurl = \"http://127.0.0.1:9\"\n",
        &env,
    );
    wait_until(
        "the start-up probe to name the bucket",
        Duration::from_secs(30),
        || {
            let log = cache.log();
            (log.contains("storage cannot be reached") && log.contains("s3://late/cache"))
                .then_some(())
        },
        || cache.log_tail(),
    );
    assert!(cache.log().contains(&endpoint), "{}", cache.log_tail());
    let readyz = format!("{}/readyz", cache.url());
    assert_eq!(fetch("GET", &readyz, Auth::None).status, 503);
    let _s3 = S3Server::start_on(Some(s3_port), &["late"]);
    wait_until(
        "/readyz to pass once the bucket answers",
        Duration::from_secs(30),
        || (fetch("GET", &readyz, Auth::None).status == 200).then_some(()),
        || cache.log_tail(),
    );
}

#[test]
fn check_says_ok_line_by_line_for_a_good_configuration_and_names_each_fault_of_a_broken_one() {
    let auth = AuthRegistry::start(&["team/secret"]);
    let s3 = S3Server::start(&["okay"]);
    let dir = support::short_tempdir("check-");
    let data = dir.path().join("data").display().to_string();
    let s3_env: Vec<(&str, String)> = s3.aws_env();

    // Good: the real registry (token auth) and a bucket that takes writes.
    let good = write(
        dir.path(),
        "good.toml",
        &format!(
            "listen = \"127.0.0.1:{}\"\nstorage = \"s3://okay/cache\"\n\n[[upstreams]]\nname = \"docker.io\"\nurl = \"{}\"\n",
            free_port(),
            auth.registry.url()
        ),
    );
    let out = run(&["check", "--config", &good, "--data-dir", &data], &s3_env);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    for line in [
        "config",
        "upstreams",
        "listen",
        "spool",
        "storage",
        "upstream docker.io",
    ] {
        assert!(
            said.lines()
                .any(|l| l.starts_with("ok ") && l.contains(&format!("{line}:"))),
            "no ok line for {line}:\n{said}"
        );
    }
    assert!(!said.contains("FAIL"), "{said}");
    assert!(said.contains("put, get, list and delete work"), "{said}");
    assert!(
        s3.object_keys("okay", "cache").is_empty(),
        "the probe object was left behind: {:?}",
        s3.object_keys("okay", "cache")
    );

    // Broken: the listen address taken, a bucket refusing the keys, an upstream that is
    // down, a TLS file missing.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let broken = write(
        dir.path(),
        "broken.toml",
        &format!(
            "listen = \"{taken_addr}\"\nstorage = \"s3://okay/cache\"\n\n[tls]\ncert_file = \"/nonexistent/cert.pem\"\nkey_file = \"/nonexistent/key.pem\"\n\n[[upstreams]]\nname = \"down\"\nurl = \"http://127.0.0.1:{}\"\n",
            free_port()
        ),
    );
    let mut wrong_keys = s3_env.clone();
    wrong_keys.retain(|(k, _)| *k != "AWS_SECRET_ACCESS_KEY");
    wrong_keys.push(("AWS_SECRET_ACCESS_KEY", "wrong".to_owned()));
    let out = run(
        &["check", "--config", &broken, "--data-dir", &data],
        &wrong_keys,
    );
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    let fail = |what: &str, needle: &str| {
        assert!(
            said.lines()
                .any(|l| l.starts_with("FAIL") && l.contains(what) && l.contains(needle)),
            "no FAIL line for {what} naming {needle:?}:\n{said}"
        );
    };
    fail("listen:", &taken_addr.to_string());
    fail("tls:", "/nonexistent/cert.pem");
    fail("storage:", "s3://okay/cache");
    fail("upstream down:", "127.0.0.1");
    drop(taken);

    // A config error stops at the first line, with its place.
    let bad = write(dir.path(), "bad.toml", "[gc]\nbogus = 1\n");
    let out = run(&["check", "--config", &bad], &[]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    fail_line(&said, "config:", "line 2 column 1 (key `gc.bogus`)");
}

fn fail_line(said: &str, what: &str, needle: &str) {
    assert!(
        said.lines()
            .any(|l| l.starts_with("FAIL") && l.contains(what) && l.contains(needle)),
        "no FAIL line for {what} naming {needle:?}:\n{said}"
    );
}
