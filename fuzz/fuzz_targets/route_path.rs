//! Request paths: never panic; a parsed route keeps the name it was given.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oci_cache_core::route::{parse_path, Route};

fuzz_target!(|s: &str| {
    match parse_path(s) {
        Ok(Route::Manifest { name, reference }) => {
            assert_eq!(s, format!("/v2/{name}/manifests/{reference}"));
        }
        Ok(Route::Blob { name, digest }) => {
            assert_eq!(s, format!("/v2/{name}/blobs/{digest}"));
        }
        Ok(Route::Referrers { name, digest }) => {
            assert_eq!(s, format!("/v2/{name}/referrers/{digest}"));
        }
        _ => {}
    }
});
