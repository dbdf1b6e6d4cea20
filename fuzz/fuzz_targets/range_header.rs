//! `Range` headers: never panic; a parsed range formats and parses back to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oci_cache_core::range::{format_range, parse_range};

fuzz_target!(|s: &str| {
    if let Ok(Some(r)) = parse_range(s) {
        assert_eq!(parse_range(&format_range(r)), Ok(Some(r)));
        if let Some(resolved) = r.resolve(1 << 20) {
            assert!(resolved.start < resolved.end && resolved.end <= 1 << 20);
        }
    }
});
