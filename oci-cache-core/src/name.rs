//! Repository names and manifest references, by the grammar of the OCI distribution spec
//! ("Pulling manifests": `<name>` and `<reference>`), matched by hand: it is small, and
//! `oci_spec`'s regex (kept as the oracle of a differential test below) cost 150 ms to
//! compile on the first request and a few MiB of memory.

use std::fmt;

use crate::Digest;

/// Longest repository name the spec allows.
const NAME_MAX: usize = 255;
/// Longest tag the spec allows.
const TAG_MAX: usize = 128;

/// Why a name or reference is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The repository name does not match the spec's grammar.
    #[error("invalid repository name")]
    InvalidName,
    /// The reference is neither a valid tag nor a valid digest.
    #[error("invalid reference: {0}")]
    InvalidReference(&'static str),
}

/// A repository name such as `library/alpine`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepositoryName(String);

impl RepositoryName {
    /// Validates `s` against the distribution-spec name grammar.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() || s.len() > NAME_MAX || !s.split('/').all(is_path_component) {
            return Err(NameError::InvalidName);
        }
        Ok(Self(s.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name's path components.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a manifest request names: a mutable tag or an immutable digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A tag, `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
    Tag(String),
    /// A digest.
    Digest(Digest),
}

impl Reference {
    /// Parses a `<reference>` path component: a digest if it contains `:`, else a tag.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.contains(':') {
            return Digest::parse(s)
                .map(Reference::Digest)
                .map_err(|_| NameError::InvalidReference("digest"));
        }
        if is_tag(s) {
            Ok(Reference::Tag(s.to_owned()))
        } else {
            Err(NameError::InvalidReference("tag"))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

/// True when `c` is a name's path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: &u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        let run = b[i..].iter().take_while(|x| alnum(x)).count();
        if run == 0 {
            // Empty component, or a separator at the start, the end or after another.
            return false;
        }
        i += run;
        let sep = match b.get(i) {
            None => return true,
            Some(b'.') => 1,
            Some(b'_') => 1 + usize::from(b.get(i + 1) == Some(&b'_')),
            Some(b'-') => b[i..].iter().take_while(|x| **x == b'-').count(),
            Some(_) => return false,
        };
        i += sep;
    }
}

/// True when `s` is a valid tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn is_tag(s: &str) -> bool {
    let b = s.as_bytes();
    let word = |x: &u8| x.is_ascii_alphanumeric() || *x == b'_';
    !b.is_empty()
        && b.len() <= TAG_MAX
        && word(&b[0])
        && b[1..].iter().all(|x| word(x) || *x == b'.' || *x == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_spec_names() {
        for n in [
            "alpine",
            "library/alpine",
            "a/b/c",
            "my-org/my_repo.x",
            "a__b",
            "a--b",
        ] {
            assert!(RepositoryName::parse(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn rejects_bad_names() {
        for n in [
            "", "Alpine", "a//b", "/a", "a/", "-a", "a:b", "a@b", "../etc", "a/../b", "a b",
        ] {
            assert!(RepositoryName::parse(n).is_err(), "{n}");
        }
        assert!(RepositoryName::parse(&"a".repeat(256)).is_err());
    }

    #[test]
    fn parses_tags_and_digests() {
        assert_eq!(
            Reference::parse("v1.2_3-x").unwrap(),
            Reference::Tag("v1.2_3-x".into())
        );
        let d = Digest::sha256_of(b"x");
        assert_eq!(
            Reference::parse(&d.to_string()).unwrap(),
            Reference::Digest(d)
        );
        assert!(Reference::parse(".x").is_err());
        assert!(Reference::parse(&"a".repeat(129)).is_err());
        assert!(Reference::parse("md5:00").is_err());
    }

    /// The oracle: `oci_spec`'s reference grammar, as this module used before.
    fn oci_spec_accepts_name(s: &str) -> bool {
        let full = format!("parse.invalid/{s}");
        !s.contains([':', '@'])
            && oci_spec::distribution::Reference::try_from(full.as_str())
                .is_ok_and(|r| r.repository() == s && r.tag().is_none_or(|t| t == "latest"))
    }

    fn oci_spec_accepts_tag(s: &str) -> bool {
        let full = format!("parse.invalid/t:{s}");
        oci_spec::distribution::Reference::try_from(full.as_str()).is_ok_and(|r| r.tag() == Some(s))
    }

    proptest! {
        #[test]
        fn names_match_oci_spec(s in "[a-z0-9._/A-]{0,40}") {
            prop_assert_eq!(RepositoryName::parse(&s).is_ok(), oci_spec_accepts_name(&s), "{:?}", s);
        }

        #[test]
        fn names_of_valid_shape_match_oci_spec(s in "[a-z0-9]{1,4}([._-]{1,3}[a-z0-9]{1,4}){0,3}(/[a-z0-9]{1,4}([._-]{1,2}[a-z0-9]{1,3}){0,2}){0,3}") {
            prop_assert_eq!(RepositoryName::parse(&s).is_ok(), oci_spec_accepts_name(&s), "{:?}", s);
        }

        #[test]
        fn tags_match_oci_spec(s in "[A-Za-z0-9._-]{0,130}") {
            prop_assert_eq!(Reference::parse(&s).is_ok(), oci_spec_accepts_tag(&s), "{:?}", s);
        }

        #[test]
        fn valid_names_round_trip(s in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}([._-][a-z0-9]{1,4})?){0,3}") {
            prop_assert_eq!(RepositoryName::parse(&s).unwrap().to_string(), s);
        }

        #[test]
        fn reference_display_round_trips(s in "[A-Za-z0-9_][A-Za-z0-9._-]{0,127}") {
            let r = Reference::parse(&s).unwrap();
            prop_assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
        }

        #[test]
        fn parsers_never_panic(s in ".{0,300}") {
            let _ = RepositoryName::parse(&s);
            let _ = Reference::parse(&s);
        }
    }
}
