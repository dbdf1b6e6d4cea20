//! Digest parsing: never panics; whatever parses prints back to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oci_cache_core::Digest;

fuzz_target!(|s: &str| {
    if let Ok(d) = Digest::parse(s) {
        assert_eq!(d.to_string(), s);
        assert_eq!(Digest::parse(&d.to_string()), Ok(d));
    }
});
