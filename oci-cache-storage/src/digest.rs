//! The validated content digest (`sha256:<64 hex>` or `sha512:<128 hex>`) and a streaming
//! verifier. Follows the OCI image spec, "Digests" section.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

/// A digest algorithm this project accepts. Only the two registered by the OCI image spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// `sha256`, 64 lowercase hex characters.
    Sha256,
    /// `sha512`, 128 lowercase hex characters.
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as it appears before the colon.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// Why a string is not a valid digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// No `:` separates algorithm and encoded part.
    #[error("digest has no algorithm separator")]
    MissingSeparator,
    /// The algorithm is not `sha256` or `sha512`.
    #[error("unsupported digest algorithm {algorithm:?}")]
    UnsupportedAlgorithm {
        /// The algorithm that was given (truncated to 32 characters).
        algorithm: String,
    },
    /// The encoded part is not lowercase hex of the algorithm's length.
    #[error("digest encoding is not {expected} lowercase hex characters")]
    BadEncoding {
        /// The expected number of hex characters.
        expected: usize,
    },
}

/// A validated content digest. Cheap to clone; `Display` prints the canonical form.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Parses and validates `algorithm:hex`.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let (alg, hex) = s.split_once(':').ok_or(DigestError::MissingSeparator)?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => {
                return Err(DigestError::UnsupportedAlgorithm {
                    algorithm: other.chars().take(32).collect(),
                })
            }
        };
        let expected = algorithm.hex_len();
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if hex.len() != expected || !hex.bytes().all(lower_hex) {
            return Err(DigestError::BadEncoding { expected });
        }
        Ok(Self {
            algorithm,
            hex: hex.to_owned(),
        })
    }

    /// The sha256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Self {
        Self {
            algorithm: Algorithm::Sha256,
            hex: hex::encode(Sha256::digest(bytes)),
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex encoding, without the algorithm prefix.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// A verifier that hashes bytes with this digest's algorithm.
    pub fn verifier(&self) -> Verifier {
        Verifier::new(self.algorithm)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Hashes a stream of chunks and counts its length; [`Verifier::finish`] gives the digest.
#[derive(Clone)]
pub struct Verifier {
    state: HashState,
    len: u64,
}

#[derive(Clone)]
enum HashState {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Verifier {
    /// A verifier for `algorithm`.
    pub fn new(algorithm: Algorithm) -> Self {
        let state = match algorithm {
            Algorithm::Sha256 => HashState::Sha256(Sha256::new()),
            Algorithm::Sha512 => HashState::Sha512(Sha512::new()),
        };
        Self { state, len: 0 }
    }

    /// Feeds the next chunk.
    pub fn update(&mut self, chunk: &[u8]) {
        self.len += chunk.len() as u64;
        match &mut self.state {
            HashState::Sha256(h) => h.update(chunk),
            HashState::Sha512(h) => h.update(chunk),
        }
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing has been fed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self.state {
            HashState::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            HashState::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algorithm, hex }
    }
}

impl Verifier {
    /// Checks that what was fed is `expected_size` bytes long (when given) and hashes to
    /// `expected`: the check every backend's commit makes before a blob becomes visible.
    pub fn check(
        &self,
        expected: &Digest,
        expected_size: Option<u64>,
    ) -> Result<(), crate::StorageError> {
        if let Some(size) = expected_size.filter(|s| *s != self.len) {
            return Err(crate::StorageError::SizeMismatch {
                expected: size,
                actual: self.len,
            });
        }
        let actual = self.clone().finish();
        if &actual != expected {
            return Err(crate::StorageError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        Ok(())
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_canonical_sha256() {
        let d = Digest::sha256_of(b"hello");
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
        assert_eq!(
            d.to_string(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }

    #[test]
    fn rejects_unknown_algorithm_uppercase_and_short() {
        assert!(matches!(
            Digest::parse("md5:abcd"),
            Err(DigestError::UnsupportedAlgorithm { .. })
        ));
        let upper = format!("sha256:{}", "A".repeat(64));
        assert_eq!(
            Digest::parse(&upper),
            Err(DigestError::BadEncoding { expected: 64 })
        );
        assert!(Digest::parse("sha256:abc").is_err());
        assert_eq!(Digest::parse("sha256"), Err(DigestError::MissingSeparator));
    }

    #[test]
    fn verifier_matches_one_shot_hash_in_chunks() {
        let data = vec![7u8; 100_000];
        let mut v = Verifier::new(Algorithm::Sha256);
        for c in data.chunks(333) {
            v.update(c);
        }
        assert_eq!(v.len(), 100_000);
        assert_eq!(v.finish(), Digest::sha256_of(&data));
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..64), sha512 in any::<bool>()) {
            let alg = if sha512 { Algorithm::Sha512 } else { Algorithm::Sha256 };
            let mut v = Verifier::new(alg);
            v.update(&bytes);
            let d = v.finish();
            prop_assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
        }

        #[test]
        fn parse_never_panics(s in ".{0,200}") {
            let _ = Digest::parse(&s);
        }
    }
}
