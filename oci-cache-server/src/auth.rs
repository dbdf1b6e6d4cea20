//! Client access control: who is asking (htpasswd users with bcrypt hashes, static bearer
//! tokens) and whether they may pull through an upstream. Off unless configured.

mod htpasswd;
mod password;

use std::collections::HashMap;
use std::sync::Arc;

use base64::prelude::{Engine as _, BASE64_STANDARD};
use http::HeaderMap;
use sha2::{Digest as _, Sha256};

pub use htpasswd::{parse_htpasswd, HtpasswdError};

use password::Passwords;

/// The realm of the `WWW-Authenticate: Basic` challenge.
pub const REALM: &str = "oci-cache";

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No credentials.
    Anonymous,
    /// A user whose credentials were verified.
    User(String),
}

/// Who may pull through an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Anyone who can reach the port.
    Anonymous,
    /// Any authenticated user.
    Authenticated,
    /// Only these users.
    Users(Vec<String>),
}

impl Access {
    /// Whether `identity` may pull.
    pub fn allows(&self, identity: &Identity) -> bool {
        match (self, identity) {
            (Access::Anonymous, _) | (Access::Authenticated, Identity::User(_)) => true,
            (Access::Users(users), Identity::User(u)) => users.iter().any(|x| x == u),
            _ => false,
        }
    }
}

/// Who may pull through which upstream; open to everyone unless configured.
#[derive(Debug, Default)]
pub struct AccessPolicy {
    auth: Option<Arc<ClientAuth>>,
    rules: HashMap<String, Access>,
}

impl AccessPolicy {
    /// A policy: `auth` identifies clients; `rules` maps upstream names to their access
    /// (an upstream missing from `rules` is anonymous only when `auth` is `None`).
    pub fn new(auth: Option<Arc<ClientAuth>>, rules: HashMap<String, Access>) -> Self {
        Self { auth, rules }
    }

    /// The rule for an upstream.
    pub fn rule(&self, upstream: &str) -> Option<&Access> {
        self.rules.get(upstream)
    }

    /// Identifies the client (anonymous when client auth is off).
    pub async fn identify(&self, headers: &HeaderMap) -> Result<Identity, AuthError> {
        match &self.auth {
            Some(auth) => auth.identify(headers).await,
            None => Ok(Identity::Anonymous),
        }
    }

    /// Whether `identity` may pull through `upstream`.
    pub fn allows(&self, upstream: &str, identity: &Identity) -> bool {
        match self.rules.get(upstream) {
            Some(rule) => rule.allows(identity),
            None => self.auth.is_none(),
        }
    }

    /// Whether client authentication is configured.
    pub fn authenticates(&self) -> bool {
        self.auth.is_some()
    }

    /// Whether an anonymous client may use at least one upstream (then `GET /v2/` answers
    /// 200 without credentials; else 401, so clients log in).
    pub fn anonymous_welcome(&self) -> bool {
        self.auth.is_none() || self.rules.values().any(|r| *r == Access::Anonymous)
    }
}

/// Why a client could not be identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Credentials were presented and are wrong (401).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Every password check slot is busy; the client should retry shortly (429).
    #[error("too many password checks at once, retry shortly")]
    Busy,
}

/// The users and tokens clients may present. `Debug` shows user names only.
pub struct ClientAuth {
    passwords: Passwords,
    tokens: HashMap<String, String>,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("passwords", &self.passwords)
            .field("token_users", &self.tokens.values().collect::<Vec<_>>())
            .finish()
    }
}

impl ClientAuth {
    /// Users from htpasswd entries (user → bcrypt hash) and static tokens (token → user).
    /// Computes one bcrypt hash (the dummy checked for unknown users; see `password`).
    pub fn new(users: HashMap<String, String>, tokens: HashMap<String, String>) -> Self {
        Self {
            passwords: Passwords::new(users),
            tokens,
        }
    }

    /// bcrypt checks started so far (answers from the caches of right and wrong
    /// credentials are not checks).
    pub fn bcrypt_checks(&self) -> u64 {
        self.passwords.bcrypt_runs()
    }

    /// Identifies the client from its `Authorization` header: none is anonymous; Basic is
    /// checked against htpasswd (or a static token given as the password); Bearer against
    /// the static tokens.
    pub async fn identify(self: &Arc<Self>, headers: &HeaderMap) -> Result<Identity, AuthError> {
        use AuthError::InvalidCredentials;
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Ok(Identity::Anonymous);
        };
        let value = value.to_str().map_err(|_| InvalidCredentials)?.trim();
        let (scheme, rest) = value.split_once(' ').ok_or(InvalidCredentials)?;
        if scheme.eq_ignore_ascii_case("bearer") {
            return self.by_token(rest.trim()).ok_or(InvalidCredentials);
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(InvalidCredentials);
        }
        let decoded = BASE64_STANDARD
            .decode(rest.trim())
            .map_err(|_| InvalidCredentials)?;
        let decoded = String::from_utf8(decoded).map_err(|_| InvalidCredentials)?;
        let (user, password) = decoded.split_once(':').ok_or(InvalidCredentials)?;
        if let Some(Identity::User(token_user)) = self.by_token(password) {
            if token_user == user {
                return Ok(Identity::User(token_user));
            }
        }
        self.check_password(user, password).await
    }

    fn by_token(&self, token: &str) -> Option<Identity> {
        // Compare through hashes so the lookup time does not depend on the token's bytes.
        let wanted = Sha256::digest(token.as_bytes());
        self.tokens
            .iter()
            .find(|(t, _)| Sha256::digest(t.as_bytes()) == wanted)
            .map(|(_, user)| Identity::User(user.clone()))
    }

    async fn check_password(&self, user: &str, password: &str) -> Result<Identity, AuthError> {
        self.passwords.check(user, password).await?;
        Ok(Identity::User(user.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Arc<ClientAuth> {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let users = HashMap::from([("alice".to_owned(), hash)]);
        let tokens = HashMap::from([("tok-123".to_owned(), "ci".to_owned())]);
        Arc::new(ClientAuth::new(users, tokens))
    }

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[tokio::test]
    async fn basic_bearer_and_anonymous_identities() {
        let a = auth();
        assert_eq!(a.identify(&HeaderMap::new()).await, Ok(Identity::Anonymous));
        // alice:pw
        assert_eq!(
            a.identify(&headers("Basic YWxpY2U6cHc=")).await,
            Ok(Identity::User("alice".into()))
        );
        // alice:pw again, from the verified cache
        assert_eq!(
            a.identify(&headers("Basic YWxpY2U6cHc=")).await,
            Ok(Identity::User("alice".into()))
        );
        // alice:wrong
        assert_eq!(
            a.identify(&headers("Basic YWxpY2U6d3Jvbmc=")).await,
            Err(AuthError::InvalidCredentials)
        );
        assert_eq!(
            a.identify(&headers("Bearer tok-123")).await,
            Ok(Identity::User("ci".into()))
        );
        assert_eq!(
            a.identify(&headers("Bearer nope")).await,
            Err(AuthError::InvalidCredentials)
        );
        // ci:tok-123 as Basic
        assert_eq!(
            a.identify(&headers("Basic Y2k6dG9rLTEyMw==")).await,
            Ok(Identity::User("ci".into()))
        );
        assert_eq!(
            a.identify(&headers("Digest x")).await,
            Err(AuthError::InvalidCredentials)
        );
        let debug = format!("{a:?}");
        assert!(
            !debug.contains("tok-123") && !debug.contains("$2"),
            "{debug}"
        );
    }

    #[test]
    fn access_rules() {
        let alice = Identity::User("alice".into());
        assert!(Access::Anonymous.allows(&Identity::Anonymous));
        assert!(!Access::Authenticated.allows(&Identity::Anonymous));
        assert!(Access::Authenticated.allows(&alice));
        assert!(Access::Users(vec!["alice".into()]).allows(&alice));
        assert!(!Access::Users(vec!["bob".into()]).allows(&alice));
    }
}
