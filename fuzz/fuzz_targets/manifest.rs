//! Manifest inspection: never panics; what passes is JSON within the size limit and never
//! Docker schema 1.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oci_cache_core::manifest::{inspect, MAX_MANIFEST_BYTES};

fuzz_target!(|data: &[u8]| {
    if let Ok(media_type) = inspect(data, None) {
        assert!(data.len() <= MAX_MANIFEST_BYTES);
        assert!(!media_type.starts_with("application/vnd.docker.distribution.manifest.v1"));
    }
});
