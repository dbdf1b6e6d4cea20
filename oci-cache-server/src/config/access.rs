//! The `[auth]` section and each upstream's `access`, turned into an [`AccessPolicy`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::{secret, Config, ConfigError};
use crate::auth::{parse_htpasswd, Access, AccessPolicy, ClientAuth};

/// Client authentication.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// An htpasswd file with bcrypt hashes.
    pub htpasswd: Option<PathBuf>,
    /// Static bearer tokens.
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
}

/// A static token and the user it stands for.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// The user name the token authenticates as.
    pub user: String,
    /// The token inline.
    pub token: Option<String>,
    /// Environment variable holding the token.
    pub token_env: Option<String>,
    /// File holding the token.
    pub token_file: Option<PathBuf>,
}

impl std::fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEntry")
            .field("user", &self.user)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_env", &self.token_env)
            .field("token_file", &self.token_file)
            .finish()
    }
}

/// An upstream's `access`: `"anonymous"`, `"authenticated"` or a list of user names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum AccessEntry {
    /// `"anonymous"` or `"authenticated"`.
    Keyword(AccessKeyword),
    /// Only these users.
    Users(Vec<String>),
}

/// The keywords of [`AccessEntry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessKeyword {
    /// Anyone.
    Anonymous,
    /// Any authenticated user.
    Authenticated,
}

impl Config {
    /// Who may pull through which upstream. Refuses an upstream with credentials that
    /// would be open to anonymous clients without `access = "anonymous"` said explicitly,
    /// and user lists or `authenticated` without an `[auth]` section.
    pub fn access_policy(&self) -> Result<AccessPolicy, ConfigError> {
        let auth = self.auth.as_ref().map(build_client_auth).transpose()?;
        let mut access = HashMap::new();
        for u in &self.upstreams {
            let rule = match (&u.access, &auth) {
                (Some(AccessEntry::Keyword(AccessKeyword::Anonymous)), _) => Access::Anonymous,
                (Some(_), None) => {
                    return Err(ConfigError::Access(format!(
                        "upstream {}: access needs an [auth] section to authenticate clients",
                        u.name
                    )))
                }
                (Some(AccessEntry::Keyword(AccessKeyword::Authenticated)), Some(_)) => {
                    Access::Authenticated
                }
                (Some(AccessEntry::Users(users)), Some(_)) => Access::Users(users.clone()),
                (None, Some(_)) => Access::Authenticated,
                (None, None) if u.has_credentials() => {
                    return Err(ConfigError::Access(format!(
                        "upstream {} has credentials, so its cached images could be private: \
                         configure [auth], or set access = \"anonymous\" to open it to everyone",
                        u.name
                    )))
                }
                (None, None) => Access::Anonymous,
            };
            access.insert(u.name.clone(), rule);
        }
        Ok(AccessPolicy::new(auth.map(Arc::new), access))
    }
}

fn build_client_auth(section: &AuthSection) -> Result<ClientAuth, ConfigError> {
    let users = match &section.htpasswd {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::Access(format!("htpasswd {}: {e}", path.display())))?;
            parse_htpasswd(&text)
                .map_err(|e| ConfigError::Access(format!("{}: {e}", path.display())))?
        }
        None => HashMap::new(),
    };
    let mut tokens = HashMap::new();
    for t in &section.tokens {
        let owner = format!("token of user {}", t.user);
        let token = secret::resolve(
            &owner,
            t.token.as_deref(),
            t.token_env.as_deref(),
            t.token_file.as_deref(),
        )?
        .filter(|t| t.len() >= 16)
        .ok_or_else(|| {
            ConfigError::Access(format!(
                "{owner}: a token of at least 16 characters is required"
            ))
        })?;
        tokens.insert(token, t.user.clone());
    }
    if users.is_empty() && tokens.is_empty() {
        return Err(ConfigError::Access(
            "[auth] has neither htpasswd users nor tokens".into(),
        ));
    }
    Ok(ClientAuth::new(users, tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn credentials_without_explicit_anonymous_are_refused() {
        let c = config(
            "[[upstreams]]\nname = \"p\"\nurl = \"http://x\"\nusername = \"u\"\npassword = \"p\"\n",
        );
        let err = c.access_policy().unwrap_err().to_string();
        assert!(err.contains("has credentials"), "{err}");
        assert!(!err.contains("\"p\"\n"));
        let c = config("[[upstreams]]\nname = \"p\"\nurl = \"http://x\"\nusername = \"u\"\npassword = \"p\"\naccess = \"anonymous\"\n");
        assert!(c.access_policy().is_ok());
    }

    #[test]
    fn tokens_default_upstreams_to_authenticated() {
        let c = config(
            "[auth]\n[[auth.tokens]]\nuser = \"ci\"\ntoken = \"0123456789abcdef\"\n\
             [[upstreams]]\nname = \"a\"\nurl = \"http://x\"\n\
             [[upstreams]]\nname = \"b\"\nurl = \"http://y\"\naccess = \"anonymous\"\n",
        );
        let p = c.access_policy().unwrap();
        assert_eq!(p.rule("a"), Some(&Access::Authenticated));
        assert_eq!(p.rule("b"), Some(&Access::Anonymous));
        let short = config("[auth]\n[[auth.tokens]]\nuser = \"ci\"\ntoken = \"short\"\n");
        assert!(short.access_policy().is_err());
        let users_without_auth =
            config("[[upstreams]]\nname = \"a\"\nurl = \"http://x\"\naccess = [\"bob\"]\n");
        assert!(users_without_auth.access_policy().is_err());
    }
}
