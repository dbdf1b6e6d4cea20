//! Seeding a registry: tests/fixtures/make_images.py builds OCI layouts and
//! skopeo pushes them, including a Docker v2s2 manifest list.

use std::process::Command;
use std::time::Duration;

use super::fixture;
use super::process::run_ok;
use super::registry::Registry;
use super::skopeo::{skopeo_copy, skopeo_inspect_digest};
use super::tools::{require_tool, short_tempdir};

/// One pushed image.
#[derive(Clone, Debug)]
pub struct Image {
    /// Repository name, e.g. `test/multilayer`.
    pub name: String,
    /// The tag it was pushed under.
    pub tag: String,
    /// Digest of the top-level manifest or index, as the registry serves it.
    pub digest: String,
    /// Layer digests (of every platform, for an index), when known.
    pub layers: Vec<String>,
}

impl Image {
    /// `NAME:TAG`.
    pub fn name_tag(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }
}

/// The standard set of seeded images.
pub struct Seeded {
    /// Single-platform, one layer of a few KB.
    pub small: Image,
    /// Single-platform, several layers of ~10 MiB of random data.
    pub multilayer: Image,
    /// OCI image index of linux/amd64 and linux/arm64.
    pub index: Image,
    /// The same two platforms as a Docker v2s2 manifest list.
    pub index_docker: Image,
    /// make_images.py's JSON summary.
    pub summary: serde_json::Value,
}

/// Options for [`seed_images`].
#[derive(Clone, Copy, Debug)]
pub struct SeedOptions {
    /// Seed for the deterministic content.
    pub seed: u64,
    /// Layers of the multilayer image.
    pub layers: u32,
    /// KiB per multilayer layer.
    pub layer_kib: u32,
}

impl Default for SeedOptions {
    fn default() -> Self {
        SeedOptions {
            seed: 1,
            layers: 4,
            layer_kib: 10 * 1024,
        }
    }
}

/// Builds the images and pushes them to `registry` (with `creds` when it needs
/// a token to push).
pub fn seed_images(registry: &Registry, creds: Option<&str>, opts: SeedOptions) -> Seeded {
    require_tool("python3");
    let dir = short_tempdir("oci-images-");
    let out = run_ok(
        Command::new("python3")
            .arg(fixture("make_images.py"))
            .arg("--out")
            .arg(dir.path())
            .args(["--seed", &opts.seed.to_string()])
            .args(["--layers", &opts.layers.to_string()])
            .args(["--layer-kib", &opts.layer_kib.to_string()]),
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| panic!("make_images.py failed: {e}"));
    let summary: serde_json::Value =
        serde_json::from_slice(&out).expect("make_images.py prints JSON");
    let layout = |which: &str| format!("oci:{}:latest", dir.path().join(which).display());
    let push = |which: &str, name: &str, all: bool, extra: &[&str]| {
        skopeo_copy(
            &layout(which),
            &registry.docker_ref(&format!("{name}:latest")),
            all,
            extra,
            None,
            creds,
        )
        .unwrap_or_else(|e| {
            panic!(
                "pushing {which} as {name} failed: {e}\n{}",
                registry.log_tail()
            )
        });
    };
    push("small", "test/small", false, &["--preserve-digests"]);
    push(
        "multilayer",
        "test/multilayer",
        false,
        &["--preserve-digests"],
    );
    push("index", "test/index", true, &["--preserve-digests"]);
    push("index", "test/index-docker", true, &["--format", "v2s2"]);

    let layers = |v: &serde_json::Value| -> Vec<String> {
        v["layers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let image = |name: &str, digest: String, layers: Vec<String>| Image {
        name: name.to_owned(),
        tag: "latest".to_owned(),
        digest,
        layers,
    };
    let str_of = |v: &serde_json::Value| v.as_str().expect("digest in summary").to_owned();
    let index_layers: Vec<String> = ["linux/amd64", "linux/arm64"]
        .iter()
        .flat_map(|p| layers(&summary["index"]["platforms"][*p]))
        .collect();
    let small = image(
        "test/small",
        str_of(&summary["small"]["manifest"]),
        layers(&summary["small"]),
    );
    let multilayer = image(
        "test/multilayer",
        str_of(&summary["multilayer"]["manifest"]),
        layers(&summary["multilayer"]),
    );
    let index = image(
        "test/index",
        str_of(&summary["index"]["index"]),
        index_layers.clone(),
    );
    // Converting to v2s2 rewrites the manifests (not the layers): ask the registry.
    let docker_digest =
        skopeo_inspect_digest(&registry.docker_ref("test/index-docker:latest"), creds);
    let index_docker = image("test/index-docker", docker_digest, index_layers);
    for img in [&small, &multilayer, &index, &index_docker] {
        let served = skopeo_inspect_digest(&registry.docker_ref(&img.name_tag()), creds);
        assert_eq!(
            served, img.digest,
            "the registry serves {} under another digest",
            img.name
        );
    }
    Seeded {
        small,
        multilayer,
        index,
        index_docker,
        summary,
    }
}

/// The digests of the manifests an index or manifest list points at.
pub fn child_manifests(raw: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(raw).expect("manifest JSON");
    v["manifests"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["digest"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
