//! Which repository names an upstream may be asked for: allow and deny patterns.

use glob::{MatchOptions, Pattern, PatternError};

/// `*` stays within a path segment; `**` spans segments.
const OPTIONS: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

/// Compiled allow and deny patterns.
#[derive(Debug, Default)]
pub(crate) struct NamePolicy {
    allow: Vec<Pattern>,
    deny: Vec<Pattern>,
}

impl NamePolicy {
    pub(crate) fn new(allow: &[String], deny: &[String]) -> Result<Self, PatternError> {
        let compile = |p: &[String]| {
            p.iter()
                .map(|s| Pattern::new(s))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            allow: compile(allow)?,
            deny: compile(deny)?,
        })
    }

    /// Whether `repo` may be pulled.
    pub(crate) fn permits(&self, repo: &str) -> bool {
        let matches = |p: &Pattern| p.matches_with(repo, OPTIONS);
        !self.deny.iter().any(matches) && (self.allow.is_empty() || self.allow.iter().any(matches))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> NamePolicy {
        let v = |x: &[&str]| x.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        NamePolicy::new(&v(allow), &v(deny)).unwrap()
    }

    #[test]
    fn deny_wins_and_star_stays_in_a_segment() {
        let p = policy(&["library/*", "myorg/**"], &["myorg/secret/**"]);
        assert!(p.permits("library/alpine"));
        assert!(!p.permits("library/a/b"), "* does not cross /");
        assert!(p.permits("myorg/team/app"));
        assert!(!p.permits("myorg/secret/key"));
        assert!(!p.permits("other/app"));
        assert!(policy(&[], &[]).permits("anything/at/all"));
        assert!(!policy(&[], &["*"]).permits("single"));
        assert!(NamePolicy::new(&["[".to_owned()], &[]).is_err());
    }
}
