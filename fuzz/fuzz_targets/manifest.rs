//! Manifest inspection: never panics; what passes is JSON within the size limit and never
//! Docker schema 1.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oci_cache_core::manifest::{inspect, MAX_MANIFEST_BYTES};

fuzz_target!(|data: &[u8]| {
    if let Ok(media_type) = inspect(data, None) {
        assert!(data.len() <= MAX_MANIFEST_BYTES);
        assert!(![
            "application/vnd.docker.distribution.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
        ]
        .contains(&media_type.as_str()));
    }
});
