//! End to end: the clients a platform team runs, configured as the cache prints it
//! (`oci-cache config ...`): containerd's hosts.toml, ctr, dockerd as a registry mirror,
//! k3s and podman.

// Test helpers outside `#[test]` functions panic on failure like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::ffi::OsStr;

use support::cache::run_cli;
use support::multi::*;
use support::{dead_url, AuthRegistry, Cache, Containerd, Dockerd};

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
