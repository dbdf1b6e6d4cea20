//! Bearer tokens from a registry's token endpoint, cached per scope until `expires_in` ends.
//! See Docker's "Token Authentication Specification".

use parking_lot::Mutex;
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

/// Tokens are renewed this long before they expire.
const RENEW_MARGIN: Duration = Duration::from_secs(5);
/// The spec's default lifetime when the endpoint gives none.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

/// A bearer token. `Debug` never shows it.
#[derive(Clone)]
pub(crate) struct Token {
    value: String,
    expires: Instant,
}

impl Token {
    pub(crate) fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<redacted>")
            .field("expires", &self.expires)
            .finish()
    }
}

/// The token endpoint's answer.
#[derive(serde::Deserialize)]
pub(crate) struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

impl TokenResponse {
    /// The token, with its expiry counted from `received`.
    pub(crate) fn into_token(self, received: Instant) -> Option<Token> {
        let value = self.token.or(self.access_token).filter(|t| !t.is_empty())?;
        let lifetime = self
            .expires_in
            .filter(|s| *s > 0)
            .map_or(DEFAULT_LIFETIME, Duration::from_secs);
        Some(Token {
            value,
            expires: received + lifetime,
        })
    }
}

/// Tokens by scope.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<String, Token>>,
}

impl TokenCache {
    /// A token for `scope` that is still good for [`RENEW_MARGIN`].
    pub(crate) fn get(&self, scope: &str) -> Option<Token> {
        let tokens = self.tokens.lock();
        tokens
            .get(scope)
            .filter(|t| t.expires > Instant::now() + RENEW_MARGIN)
            .cloned()
    }

    /// Remembers a token for `scope`.
    pub(crate) fn put(&self, scope: &str, token: Token) {
        let mut tokens = self.tokens.lock();
        tokens.retain(|_, t| t.expires > Instant::now());
        tokens.insert(scope.to_owned(), token);
    }

    /// Forgets the token for `scope` (after the upstream refused it).
    pub(crate) fn forget(&self, scope: &str) {
        let mut tokens = self.tokens.lock();
        tokens.remove(scope);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(json: &str) -> TokenResponse {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn token_or_access_token_and_default_lifetime() {
        let now = Instant::now();
        let t = response(r#"{"access_token":"a"}"#).into_token(now).unwrap();
        assert_eq!(t.value(), "a");
        assert_eq!(t.expires, now + DEFAULT_LIFETIME);
        let t = response(r#"{"token":"b","expires_in":300}"#)
            .into_token(now)
            .unwrap();
        assert_eq!(t.expires, now + Duration::from_secs(300));
        assert!(response(r#"{"expires_in":300}"#).into_token(now).is_none());
    }

    #[test]
    fn cache_drops_tokens_near_expiry() {
        let cache = TokenCache::default();
        let soon = response(r#"{"token":"x","expires_in":2}"#)
            .into_token(Instant::now())
            .unwrap();
        cache.put("s", soon);
        assert!(cache.get("s").is_none());
        let later = response(r#"{"token":"y","expires_in":600}"#)
            .into_token(Instant::now())
            .unwrap();
        cache.put("s", later);
        assert_eq!(cache.get("s").unwrap().value(), "y");
        assert!(!format!("{:?}", cache.get("s").unwrap()).contains('y'));
        cache.forget("s");
        assert!(cache.get("s").is_none());
    }
}
