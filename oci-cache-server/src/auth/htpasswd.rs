//! htpasswd files (`user:hash` per line), bcrypt hashes only: the format
//! `htpasswd -B` writes and distribution's htpasswd auth reads.

use std::collections::HashMap;

/// Why an htpasswd file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HtpasswdError {
    /// A line is not `user:hash`.
    #[error("htpasswd line {line}: expected user:hash")]
    Malformed {
        /// 1-based line number.
        line: usize,
    },
    /// A hash is not bcrypt (`$2a$`, `$2b$`, `$2y$`).
    #[error("htpasswd line {line}: only bcrypt hashes are supported (htpasswd -B)")]
    NotBcrypt {
        /// 1-based line number.
        line: usize,
    },
}

/// Parses htpasswd text into user → bcrypt hash. Blank lines and `#` comments are skipped.
pub fn parse_htpasswd(text: &str) -> Result<HashMap<String, String>, HtpasswdError> {
    let mut users = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (user, hash) = line
            .split_once(':')
            .filter(|(u, h)| !u.is_empty() && !h.is_empty())
            .ok_or(HtpasswdError::Malformed { line: i + 1 })?;
        if !["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
            return Err(HtpasswdError::NotBcrypt { line: i + 1 });
        }
        users.insert(user.to_owned(), hash.to_owned());
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bcrypt_users_and_refuses_other_hashes() {
        let text = "# users\nalice:$2y$05$abcdefghijklmnopqrstuu5V3tGm4jE8Q9mGZ6mCw8O4qz0sE9T2\n\nbob:$2b$04$x\n";
        let users = parse_htpasswd(text).unwrap();
        assert_eq!(users.len(), 2);
        assert!(users["alice"].starts_with("$2y$"));
        assert_eq!(
            parse_htpasswd("carol:{SHA}abc"),
            Err(HtpasswdError::NotBcrypt { line: 1 })
        );
        assert_eq!(
            parse_htpasswd("nocolon"),
            Err(HtpasswdError::Malformed { line: 1 })
        );
    }
}
