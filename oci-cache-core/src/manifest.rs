//! Manifests as the cache sees them: exact bytes (the digest is of those bytes), a media
//! type, and the few facts the engine needs. OCI image manifest and index and Docker schema 2
//! manifest and manifest list pass, when their shape says so too (`schemaVersion` 2, `config`
//! and `layers` for a manifest, `manifests` for an index); Docker schema 1 is refused, and so
//! is any other JSON.
//! See the OCI image spec, "Image Manifest" and "Image Index".

use bytes::Bytes;
use oci_spec::image::MediaType;

use crate::Digest;

mod shape;

use shape::Shape;

/// Largest manifest the cache accepts (the distribution spec's recommended 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Docker schema 2 manifest media type.
pub const DOCKER_MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema 2 manifest list media type.
pub const DOCKER_MANIFEST_LIST_V2: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 1 manifest media types (refused).
const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// The media types the cache serves.
const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    DOCKER_MANIFEST_V2,
    DOCKER_MANIFEST_LIST_V2,
];

/// The `Accept` header the cache sends upstream for manifests.
pub fn accept_header() -> String {
    [
        MediaType::ImageManifest.to_string(),
        MediaType::ImageIndex.to_string(),
        DOCKER_MANIFEST_V2.to_owned(),
        DOCKER_MANIFEST_LIST_V2.to_owned(),
    ]
    .join(", ")
}

/// Why a manifest is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Larger than [`MAX_MANIFEST_BYTES`].
    #[error("manifest larger than {MAX_MANIFEST_BYTES} bytes")]
    TooLarge,
    /// Not a JSON object.
    #[error("manifest is not a JSON object")]
    NotJson,
    /// Docker schema 1, which the cache does not serve.
    #[error("Docker schema 1 manifests are not supported; push the image with schema 2 or OCI")]
    Schema1,
    /// JSON, but not an OCI or Docker schema 2 manifest or index.
    #[error("not an OCI or Docker schema 2 manifest: {reason}")]
    NotAManifest {
        /// What is missing or wrong.
        reason: &'static str,
    },
}

/// A manifest: its exact bytes, digest and media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The exact bytes, as the upstream sent them.
    pub bytes: Bytes,
    /// The digest of `bytes`.
    pub digest: Digest,
    /// The media type to serve it with.
    pub media_type: String,
}

#[derive(serde::Deserialize)]
struct Probe {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<u32>,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    config: Option<Shape>,
    layers: Option<Shape>,
    manifests: Option<Shape>,
}

/// Checks a manifest's bytes and decides its media type: the `mediaType` field when present,
/// else `content_type` (from the upstream) when it names a manifest type, else the OCI index
/// type when the JSON has `manifests`, else the OCI image manifest type. The media type must
/// be one of the four served, `schemaVersion` must be 2, and the fields the type requires
/// must be there: `config` (an object) and `layers` (an array) for a manifest, `manifests`
/// (an array) for an index.
pub fn inspect(bytes: &[u8], content_type: Option<&str>) -> Result<String, ManifestError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge);
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|_| ManifestError::NotJson)?;
    let content_type = content_type.map(|c| c.split(';').next().unwrap_or(c).trim());
    if probe.schema_version == Some(1)
        || probe
            .media_type
            .as_deref()
            .or(content_type)
            .is_some_and(|t| DOCKER_SCHEMA1.contains(&t))
    {
        return Err(ManifestError::Schema1);
    }
    let media_type = probe
        .media_type
        .or_else(|| {
            content_type
                .filter(|c| MANIFEST_TYPES.contains(c))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| {
            if probe.manifests.is_some() {
                MediaType::ImageIndex.to_string()
            } else {
                MediaType::ImageManifest.to_string()
            }
        });
    let not = |reason| Err(ManifestError::NotAManifest { reason });
    if !MANIFEST_TYPES.contains(&media_type.as_str()) {
        return not("media type is not a manifest or index type");
    }
    if probe.schema_version != Some(2) {
        return not("schemaVersion is not 2");
    }
    if is_index(&media_type) {
        if probe.manifests != Some(Shape::Array) {
            return not("an index needs a manifests array");
        }
    } else if probe.config != Some(Shape::Object) || probe.layers != Some(Shape::Array) {
        return not("an image manifest needs a config object and a layers array");
    }
    Ok(media_type)
}

#[derive(serde::Deserialize)]
struct Descriptor {
    digest: String,
}

#[derive(serde::Deserialize)]
struct References {
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// The digests a manifest or index refers to (config, layers, child manifests); empty for
/// anything that is not one.
pub fn references(bytes: &[u8]) -> Vec<Digest> {
    let Ok(r) = serde_json::from_slice::<References>(bytes) else {
        return Vec::new();
    };
    r.config
        .iter()
        .chain(&r.layers)
        .chain(&r.manifests)
        .filter_map(|d| Digest::parse(&d.digest).ok())
        .collect()
}

/// True when the media type names an index (OCI index or Docker manifest list).
pub fn is_index(media_type: &str) -> bool {
    media_type == DOCKER_MANIFEST_LIST_V2 || media_type == MediaType::ImageIndex.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_field_wins() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{},"layers":[]}"#;
        assert_eq!(
            inspect(m, Some("application/json")).unwrap(),
            DOCKER_MANIFEST_V2
        );
        let m = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert_eq!(
            inspect(
                m,
                Some("application/vnd.docker.distribution.manifest.v2+json")
            )
            .unwrap(),
            DOCKER_MANIFEST_V2,
            "a manifest type from Content-Type is used when the field is absent"
        );
        assert_eq!(
            inspect(m, Some("text/html; charset=utf-8")).unwrap(),
            MediaType::ImageManifest.to_string(),
            "any other Content-Type is ignored"
        );
    }

    #[test]
    fn the_served_types_are_oci_spec_s() {
        assert!(MANIFEST_TYPES.contains(&MediaType::ImageManifest.to_string().as_str()));
        assert!(MANIFEST_TYPES.contains(&MediaType::ImageIndex.to_string().as_str()));
    }

    #[test]
    fn json_that_is_not_a_manifest_is_refused() {
        for (json, ct) in [
            ("{}", None),
            (
                r#"{"hello":"world"}"#,
                Some("application/vnd.oci.image.manifest.v1+json"),
            ),
            (r#"{"errors":[{"code":"UNKNOWN"}]}"#, None),
            (r#"{"schemaVersion":3,"config":{},"layers":[]}"#, None),
            (r#"{"config":{},"layers":[]}"#, None),
            (r#"{"schemaVersion":2,"config":{}}"#, None),
            (r#"{"schemaVersion":2,"layers":[]}"#, None),
            (r#"{"schemaVersion":2,"config":[],"layers":[]}"#, None),
            (r#"{"schemaVersion":2,"config":{},"layers":{}}"#, None),
            (r#"{"schemaVersion":2,"manifests":{}}"#, None),
            (
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","config":{},"layers":[]}"#,
                None,
            ),
            (
                r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","manifests":[]}"#,
                None,
            ),
            (
                r#"{"schemaVersion":2,"mediaType":"text/html","config":{},"layers":[]}"#,
                None,
            ),
        ] {
            assert!(
                matches!(
                    inspect(json.as_bytes(), ct),
                    Err(ManifestError::NotAManifest { .. })
                ),
                "{json}: {:?}",
                inspect(json.as_bytes(), ct)
            );
        }
    }

    #[test]
    fn index_detected_without_media_type() {
        let m = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(
            inspect(m, None).unwrap(),
            "application/vnd.oci.image.index.v1+json"
        );
        let m = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert_eq!(
            inspect(m, None).unwrap(),
            "application/vnd.oci.image.manifest.v1+json"
        );
    }

    #[test]
    fn references_lists_config_layers_and_children() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{a}"}},"layers":[{{"digest":"{b}"}}]}}"#
        );
        assert_eq!(references(m.as_bytes()), vec![a.clone(), b]);
        let i = format!(r#"{{"schemaVersion":2,"manifests":[{{"digest":"{a}"}}]}}"#);
        assert_eq!(references(i.as_bytes()), vec![a]);
        assert!(references(b"\x00binary layer").is_empty());
        assert!(references(br#"{"architecture":"amd64","rootfs":{}}"#).is_empty());
    }

    #[test]
    fn schema1_refused() {
        let m = br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert_eq!(inspect(m, None), Err(ManifestError::Schema1));
        let m = br#"{"schemaVersion":2}"#;
        assert_eq!(
            inspect(
                m,
                Some("application/vnd.docker.distribution.manifest.v1+prettyjws")
            ),
            Err(ManifestError::Schema1)
        );
    }

    #[test]
    fn oversized_and_non_json_refused() {
        assert_eq!(inspect(b"[1,2]", None), Err(ManifestError::NotJson));
        assert_eq!(inspect(b"nope", None), Err(ManifestError::NotJson));
        let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert_eq!(inspect(&big, None), Err(ManifestError::TooLarge));
    }
}
