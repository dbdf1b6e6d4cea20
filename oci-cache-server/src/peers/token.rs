//! The peer token: how a replica proves to another that a request comes from a peer (it
//! knows the shared secret) and which client identity it already checked. A client cannot
//! make one without the secret, and one token is good only for its method, path and
//! upstream, for [`MAX_SKEW`] around the time it was made.
//!
//! `x-oci-cache-peer: v1 <unix seconds> <upstream> <identity> <hex HMAC-SHA256>`, where the
//! identity is `-` for an anonymous client or `u.` and the base64url user name, and the MAC
//! covers the version, time, method, path, upstream and identity.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::auth::Identity;

/// The header a peer request carries.
pub const PEER_HEADER: &str = "x-oci-cache-peer";

/// How far a token's time may be from the receiver's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(60);

/// The shared secret of the replicas, as the keyed MAC it makes (never shown by `Debug`).
#[derive(Clone)]
pub struct PeerSecret(Hmac<Sha256>);

impl std::fmt::Debug for PeerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerSecret(<redacted>)")
    }
}

/// Why a peer secret or token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerTokenError {
    /// The secret is too short to resist guessing.
    #[error("the peer secret must be at least {min} bytes long")]
    WeakSecret {
        /// The minimum length.
        min: usize,
    },
    /// The header is not a token of this version.
    #[error("malformed peer token")]
    Malformed,
    /// The token's time is too far from this replica's clock.
    #[error("peer token expired or from the future")]
    Expired,
    /// The MAC does not match: not made with the secret, or for another request.
    #[error("peer token does not verify")]
    BadMac,
}

/// Minimum secret length in bytes: a token on the wire gives an observer the MAC and its
/// input, so the secret must be too long to guess offline.
const MIN_SECRET: usize = 32;

impl PeerSecret {
    /// A secret of at least 32 bytes (leading and trailing whitespace, as in a file, is
    /// not part of it), e.g. `head -c 32 /dev/urandom | base64`.
    pub fn new(secret: &str) -> Result<Self, PeerTokenError> {
        let secret = secret.trim();
        if secret.len() < MIN_SECRET {
            return Err(PeerTokenError::WeakSecret { min: MIN_SECRET });
        }
        <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
            .map(Self)
            .map_err(|_| PeerTokenError::WeakSecret { min: MIN_SECRET })
    }

    fn mac(&self, fields: &[&str]) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        for field in fields {
            mac.update(field.as_bytes());
            mac.update(b"\n");
        }
        mac
    }

    /// The token for `method path` through `upstream` on behalf of `identity`, made now.
    pub fn sign(&self, method: &str, path: &str, upstream: &str, identity: &Identity) -> String {
        self.sign_at(unix_now(), method, path, upstream, identity)
    }

    fn sign_at(
        &self,
        when: u64,
        method: &str,
        path: &str,
        upstream: &str,
        identity: &Identity,
    ) -> String {
        let when = when.to_string();
        let who = encode_identity(identity);
        let mac = self.mac(&["v1", &when, method, path, upstream, &who]);
        let tag = hex::encode(mac.finalize().into_bytes());
        format!("v1 {when} {upstream} {who} {tag}")
    }

    /// The upstream and identity a token for `method path` vouches for.
    pub fn verify(
        &self,
        token: &str,
        method: &str,
        path: &str,
    ) -> Result<(String, Identity), PeerTokenError> {
        self.verify_at(unix_now(), token, method, path)
    }

    fn verify_at(
        &self,
        now: u64,
        token: &str,
        method: &str,
        path: &str,
    ) -> Result<(String, Identity), PeerTokenError> {
        let mut parts = token.split(' ');
        let (Some("v1"), Some(when), Some(upstream), Some(who), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(PeerTokenError::Malformed);
        };
        let at: u64 = when.parse().map_err(|_| PeerTokenError::Malformed)?;
        if now.abs_diff(at) > MAX_SKEW.as_secs() {
            return Err(PeerTokenError::Expired);
        }
        let tag = hex::decode(tag).map_err(|_| PeerTokenError::Malformed)?;
        self.mac(&["v1", when, method, path, upstream, who])
            .verify_slice(&tag)
            .map_err(|_| PeerTokenError::BadMac)?;
        let identity = decode_identity(who).ok_or(PeerTokenError::Malformed)?;
        Ok((upstream.to_owned(), identity))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn encode_identity(identity: &Identity) -> String {
    match identity {
        Identity::Anonymous => "-".to_owned(),
        Identity::User(name) => format!("u.{}", URL_SAFE_NO_PAD.encode(name)),
    }
}

fn decode_identity(field: &str) -> Option<Identity> {
    if field == "-" {
        return Some(Identity::Anonymous);
    }
    let name = URL_SAFE_NO_PAD.decode(field.strip_prefix("u.")?).ok()?;
    String::from_utf8(name).ok().map(Identity::User)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/v2/team/app/blobs/sha256:00";

    fn secret() -> PeerSecret {
        PeerSecret::new("a shared secret of the replicas, 32+ bytes").unwrap()
    }

    #[test]
    fn a_token_vouches_for_its_request_only() {
        let s = secret();
        let alice = Identity::User("alice".into());
        let token = s.sign_at(1000, "GET", PATH, "private", &alice);
        assert_eq!(
            s.verify_at(1000, &token, "GET", PATH),
            Ok(("private".to_owned(), alice.clone()))
        );
        assert_eq!(
            s.verify_at(1059, &token, "GET", PATH).map(|v| v.1),
            Ok(alice)
        );
        // Another path, method, time window or secret: refused.
        assert_eq!(
            s.verify_at(1000, &token, "GET", "/v2/team/other/blobs/sha256:00"),
            Err(PeerTokenError::BadMac)
        );
        assert_eq!(
            s.verify_at(1000, &token, "HEAD", PATH),
            Err(PeerTokenError::BadMac)
        );
        assert_eq!(
            s.verify_at(1061, &token, "GET", PATH),
            Err(PeerTokenError::Expired)
        );
        let other = PeerSecret::new("another secret of at least 32 bytes").unwrap();
        assert_eq!(
            other.verify_at(1000, &token, "GET", PATH),
            Err(PeerTokenError::BadMac)
        );
        // A client editing the identity or the upstream of a captured token: refused.
        let edited = token.replacen("private", "docker.io", 1);
        assert_eq!(
            s.verify_at(1000, &edited, "GET", PATH),
            Err(PeerTokenError::BadMac)
        );
        let bob = encode_identity(&Identity::User("bob".into()));
        let edited = token.replacen(&encode_identity(&Identity::User("alice".into())), &bob, 1);
        assert_eq!(
            s.verify_at(1000, &edited, "GET", PATH),
            Err(PeerTokenError::BadMac)
        );
    }

    #[test]
    fn anonymous_and_odd_names_round_trip() {
        let s = secret();
        for who in [
            Identity::Anonymous,
            Identity::User("ci bot/ü".into()),
            Identity::User(String::new()),
        ] {
            let token = s.sign_at(5, "GET", PATH, "docker.io", &who);
            assert!(token.is_ascii() && !token.contains('\n'));
            assert_eq!(s.verify_at(5, &token, "GET", PATH).map(|v| v.1), Ok(who));
        }
    }

    #[test]
    fn junk_is_malformed_and_weak_secrets_are_refused() {
        let s = secret();
        for junk in [
            "",
            "v1",
            "v2 1 a - 00",
            "v1 x a - 00",
            "v1 1 a - zz",
            "v1 1 a - 00 extra",
        ] {
            assert!(s.verify_at(1, junk, "GET", PATH).is_err(), "{junk}");
        }
        assert_eq!(
            PeerSecret::new("  short  ").err(),
            Some(PeerTokenError::WeakSecret { min: 32 })
        );
        assert_eq!(format!("{s:?}"), "PeerSecret(<redacted>)");
    }
}
