//! The `WWW-Authenticate` challenge of a registry (RFC 9110 section 11.6.1), as Docker's
//! token authentication uses it: `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.

use std::collections::BTreeMap;

/// A parsed challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Fetch a token from `realm` and send it as `Authorization: Bearer`.
    Bearer {
        /// The token endpoint URL.
        realm: String,
        /// The `service` parameter to pass to the token endpoint.
        service: Option<String>,
        /// The scope the registry asked for, if it named one.
        scope: Option<String>,
    },
    /// Send Basic credentials directly.
    Basic {
        /// The realm, informational.
        realm: Option<String>,
    },
}

/// Why a challenge could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// The header is not a well-formed challenge.
    #[error("malformed WWW-Authenticate header")]
    Malformed,
    /// The scheme is neither Bearer nor Basic.
    #[error("unsupported authentication scheme")]
    UnsupportedScheme,
    /// A Bearer challenge without a realm.
    #[error("bearer challenge without realm")]
    MissingRealm,
}

/// Parses the first challenge of a `WWW-Authenticate` value.
pub fn parse_challenge(value: &str) -> Result<Challenge, ChallengeError> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let params = parse_params(rest)?;
    if scheme.eq_ignore_ascii_case("bearer") {
        let realm = params
            .get("realm")
            .cloned()
            .ok_or(ChallengeError::MissingRealm)?;
        Ok(Challenge::Bearer {
            realm,
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        })
    } else if scheme.eq_ignore_ascii_case("basic") {
        Ok(Challenge::Basic {
            realm: params.get("realm").cloned(),
        })
    } else {
        Err(ChallengeError::UnsupportedScheme)
    }
}

/// Parses `key=value, key="quoted \" value"` pairs; keys are lowercased. Stops at a second
/// challenge (a token followed by a space instead of `=`).
fn parse_params(input: &str) -> Result<BTreeMap<String, String>, ChallengeError> {
    let mut out = BTreeMap::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            return Ok(out);
        }
        if chars.next() != Some('=') {
            // The start of another challenge: this one is complete.
            return Ok(out);
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => value.push(chars.next().ok_or(ChallengeError::Malformed)?),
                    Some(c) => value.push(c),
                    None => return Err(ChallengeError::Malformed),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.insert(key.to_ascii_lowercase(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_docker_hub_challenge() {
        let v = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#;
        assert_eq!(
            parse_challenge(v).unwrap(),
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull".into()),
            }
        );
    }

    #[test]
    fn parses_basic_and_unquoted_and_escapes() {
        assert_eq!(
            parse_challenge(r#"Basic realm="x y""#).unwrap(),
            Challenge::Basic {
                realm: Some("x y".into())
            }
        );
        let c = parse_challenge(r#"bearer Realm=http://a/t, service="s\"q""#).unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "http://a/t".into(),
                service: Some("s\"q".into()),
                scope: None
            }
        );
    }

    #[test]
    fn rejects_bad_challenges() {
        assert_eq!(
            parse_challenge("Bearer service=x"),
            Err(ChallengeError::MissingRealm)
        );
        assert_eq!(
            parse_challenge("Negotiate abc"),
            Err(ChallengeError::UnsupportedScheme)
        );
        assert_eq!(
            parse_challenge(r#"Bearer realm="unterminated"#),
            Err(ChallengeError::Malformed)
        );
    }

    proptest! {
        #[test]
        fn quoted_values_round_trip(realm in "[ -~]{0,40}", service in "[ -~]{0,40}") {
            let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
            let v = format!("Bearer realm=\"{}\",service=\"{}\"", q(&realm), q(&service));
            prop_assert_eq!(parse_challenge(&v).unwrap(), Challenge::Bearer { realm, service: Some(service), scope: None });
        }

        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = parse_challenge(&s);
        }
    }
}
