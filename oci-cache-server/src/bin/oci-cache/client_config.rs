//! `oci-cache config <client>`: the client-side configuration for the running config's
//! upstreams, ready to paste.

use std::fmt::Write as _;

use oci_cache_server::config::UpstreamEntry;

/// The clients the cache can print configuration for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientKind {
    /// containerd `hosts.toml` files (one per upstream, under `certs.d`).
    Containerd,
    /// k3s `registries.yaml`.
    K3s,
    /// rke2 `registries.yaml` (the k3s format, at rke2's path).
    Rke2,
    /// docker `daemon.json` (docker mirrors docker.io only).
    Docker,
    /// podman / CRI-O `registries.conf` (mirrors by path prefix).
    Podman,
}

/// Renders the configuration of `kind` for a cache reachable at `cache_url`
/// (e.g. `http://cache.internal:5000`).
pub(crate) fn render(kind: ClientKind, cache_url: &str, upstreams: &[UpstreamEntry]) -> String {
    let cache_url = cache_url.trim_end_matches('/');
    let cache_host = cache_url
        .split_once("://")
        .map_or(cache_url, |(_, rest)| rest);
    let insecure = cache_url.starts_with("http://");
    let mut out = String::new();
    match kind {
        ClientKind::Containerd => {
            for u in upstreams {
                let server = u.endpoints().into_iter().next().unwrap_or_default();
                let _ = write!(
                    out,
                    "# /etc/containerd/certs.d/{name}/hosts.toml\n\
                     server = \"{server}\"\n\n\
                     [host.\"{cache_url}\"]\n  capabilities = [\"pull\", \"resolve\"]\n\n",
                    name = u.name
                );
            }
        }
        ClientKind::K3s | ClientKind::Rke2 => {
            let dist = if kind == ClientKind::K3s {
                "k3s"
            } else {
                "rke2"
            };
            let _ = write!(
                out,
                "# /etc/rancher/{dist}/registries.yaml\n\
                 # When the cache is down, {dist} falls back to each registry itself (unless\n\
                 # started with --disable-default-registry-endpoint).\n\
                 mirrors:\n"
            );
            for u in upstreams {
                let _ = write!(
                    out,
                    "  \"{}\":\n    endpoint:\n      - \"{cache_url}\"\n",
                    u.name
                );
            }
        }
        ClientKind::Docker => {
            let _ = write!(
                out,
                "# /etc/docker/daemon.json (docker mirrors docker.io names only)\n\
                 {{\n  \"registry-mirrors\": [\"{cache_url}\"]{}\n}}\n",
                if insecure {
                    format!(",\n  \"insecure-registries\": [\"{cache_host}\"]")
                } else {
                    String::new()
                }
            );
        }
        ClientKind::Podman => {
            out.push_str("# /etc/containers/registries.conf.d/oci-cache.conf\n");
            for u in upstreams {
                let _ = write!(
                    out,
                    "\n[[registry]]\nprefix = \"{name}\"\nlocation = \"{name}\"\n\n\
                     [[registry.mirror]]\nlocation = \"{cache_host}/{name}\"\ninsecure = {insecure}\n",
                    name = u.name
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstreams() -> Vec<UpstreamEntry> {
        vec![
            UpstreamEntry::anonymous("docker.io", "https://registry-1.docker.io"),
            UpstreamEntry::anonymous("quay.io", "https://quay.io"),
        ]
    }

    #[test]
    fn containerd_gets_one_hosts_toml_per_upstream() {
        let out = render(ClientKind::Containerd, "http://cache:5000", &upstreams());
        assert!(out.contains(
            "# /etc/containerd/certs.d/quay.io/hosts.toml\nserver = \"https://quay.io\""
        ));
        assert_eq!(out.matches("[host.\"http://cache:5000\"]").count(), 2);
        let parsed: toml::Table = toml::from_str(out.split("\n\n# ").next().unwrap()).unwrap();
        assert_eq!(
            parsed["server"].as_str(),
            Some("https://registry-1.docker.io")
        );
    }

    #[test]
    fn docker_k3s_and_podman_point_at_the_cache() {
        let d = render(ClientKind::Docker, "http://cache:5000", &upstreams());
        assert!(d.contains("\"registry-mirrors\": [\"http://cache:5000\"]"));
        assert!(d.contains("\"insecure-registries\": [\"cache:5000\"]"));
        let k = render(ClientKind::K3s, "http://cache:5000", &upstreams());
        assert!(k.contains("  \"quay.io\":\n    endpoint:\n      - \"http://cache:5000\""));
        let p = render(ClientKind::Podman, "https://cache", &upstreams());
        assert!(p.contains("location = \"cache/quay.io\"\ninsecure = false"));
    }
}
