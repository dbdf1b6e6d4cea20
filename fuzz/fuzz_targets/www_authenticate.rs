//! `WWW-Authenticate` challenges: never panic; a challenge printed with its realm quoted
//! parses back to the same realm.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oci_cache_core::auth::{parse_challenge, Challenge};

fuzz_target!(|s: &str| {
    if let Ok(Challenge::Bearer { realm, service, .. }) = parse_challenge(s) {
        let quote = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
        let mut printed = format!("Bearer realm=\"{}\"", quote(&realm));
        if let Some(svc) = &service {
            printed.push_str(&format!(",service=\"{}\"", quote(svc)));
        }
        match parse_challenge(&printed) {
            Ok(Challenge::Bearer { realm: r2, service: s2, .. }) => {
                assert_eq!((r2, s2), (realm, service));
            }
            other => panic!("reprinted challenge did not parse: {other:?}"),
        }
    }
});
