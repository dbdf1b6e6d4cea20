//! Secrets given inline, by environment variable or by file (a mounted Kubernetes secret).

use std::path::Path;

use super::ConfigError;

/// Reads the one secret among `inline`, `env` and `file` that is set; `None` when none is.
pub(super) fn resolve(
    owner: &str,
    inline: Option<&str>,
    env: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<String>, ConfigError> {
    let err = |reason: String| ConfigError::Secret {
        owner: owner.to_owned(),
        reason,
    };
    match (inline, env, file) {
        (Some(v), None, None) => Ok(Some(v.to_owned())),
        (None, Some(var), None) => std::env::var(var)
            .map(Some)
            .map_err(|_| err(format!("environment variable {var} is not set"))),
        (None, None, Some(path)) => std::fs::read_to_string(path)
            .map(|s| Some(s.trim_end_matches(['\r', '\n']).to_owned()))
            .map_err(|e| err(format!("{}: {e}", path.display()))),
        (None, None, None) => Ok(None),
        _ => Err(err(
            "give only one of the inline, _env and _file forms".into()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_form_and_refuses_two() {
        assert_eq!(
            resolve("u", Some("x"), None, None).unwrap().as_deref(),
            Some("x")
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s");
        std::fs::write(&f, "from-file\n").unwrap();
        assert_eq!(
            resolve("u", None, None, Some(&f)).unwrap().as_deref(),
            Some("from-file")
        );
        assert!(resolve("u", None, Some("OCI_CACHE_SURELY_UNSET_VAR"), None).is_err());
        assert!(resolve("u", Some("a"), None, Some(&f)).is_err());
        assert_eq!(resolve("u", None, None, None).unwrap(), None);
    }
}
