//! Repository names and references: never panic; round-trip through Display.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oci_cache_core::name::{Reference, RepositoryName};

fuzz_target!(|s: &str| {
    if let Ok(n) = RepositoryName::parse(s) {
        assert_eq!(n.as_str(), s);
        assert_eq!(RepositoryName::parse(&n.to_string()), Ok(n));
    }
    if let Ok(r) = Reference::parse(s) {
        assert_eq!(Reference::parse(&r.to_string()), Ok(r));
    }
});
