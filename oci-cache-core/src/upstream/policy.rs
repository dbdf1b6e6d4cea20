//! Which repository names an upstream may be asked for: allow and deny patterns.
//!
//! What a pattern means:
//! - `*` matches within one path segment, `**` across segments;
//! - `x/**` matches `x` itself and everything under it (so `deny = ["myorg/secret/**"]`
//!   also denies `myorg/secret`), and `a/**/b` matches `a/b`;
//! - on Docker Hub, where a one-segment name is asked for as `library/<name>`, a pattern
//!   without `/` also matches under `library/` (`deny = ["alpine"]` denies `library/alpine`);
//! - a pattern that could never match a repository name (empty, upper case, a leading,
//!   trailing or doubled `/`) is refused when the configuration is read, rather than
//!   silently matching nothing.

use glob::{MatchOptions, Pattern};

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
    /// Compiles the patterns; `docker_hub` adds the `library/` forms of one-segment patterns.
    pub(crate) fn new(
        allow: &[String],
        deny: &[String],
        docker_hub: bool,
    ) -> Result<Self, &'static str> {
        Ok(Self {
            allow: compile_all(allow, docker_hub)?,
            deny: compile_all(deny, docker_hub)?,
        })
    }

    /// Whether `repo` may be pulled.
    pub(crate) fn permits(&self, repo: &str) -> bool {
        let matches = |p: &Pattern| p.matches_with(repo, OPTIONS);
        !self.deny.iter().any(matches) && (self.allow.is_empty() || self.allow.iter().any(matches))
    }
}

fn compile_all(patterns: &[String], docker_hub: bool) -> Result<Vec<Pattern>, &'static str> {
    let mut out = Vec::new();
    for p in patterns {
        check(p)?;
        let mut forms = vec![p.clone()];
        if docker_hub && !p.contains('/') {
            forms.push(format!("library/{p}"));
        }
        for form in forms {
            // `x/**` also means `x`.
            if let Some(parent) = form.strip_suffix("/**") {
                out.push(Pattern::new(parent).map_err(|e| e.msg)?);
            }
            out.push(Pattern::new(&form).map_err(|e| e.msg)?);
        }
    }
    Ok(out)
}

/// Refuses a pattern that cannot match any repository name.
fn check(p: &str) -> Result<(), &'static str> {
    if p.is_empty() {
        return Err("a pattern must not be empty");
    }
    if p.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("repository names are lower case: a pattern with upper case matches nothing");
    }
    if p.starts_with('/') || p.ends_with('/') || p.contains("//") {
        return Err("a pattern must not start or end with / or contain //");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> NamePolicy {
        hub_policy(allow, deny, false)
    }

    fn hub_policy(allow: &[&str], deny: &[&str], hub: bool) -> NamePolicy {
        let v = |x: &[&str]| x.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        NamePolicy::new(&v(allow), &v(deny), hub).unwrap()
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
        assert!(NamePolicy::new(&["[".to_owned()], &[], false).is_err());
    }

    #[test]
    fn double_star_suffix_includes_the_parent_itself() {
        let p = policy(&[], &["myorg/secret/**"]);
        assert!(!p.permits("myorg/secret"), "the parent is denied too");
        assert!(!p.permits("myorg/secret/a/b"));
        assert!(
            p.permits("myorg/secretive"),
            "a sibling with the same prefix is not"
        );
        assert!(p.permits("myorg"));
        let p = policy(&["myorg/**"], &[]);
        assert!(p.permits("myorg"), "allow x/** allows x");
        assert!(p.permits("myorg/a"));
        assert!(!p.permits("myorgs/a"));
        let p = policy(&[], &["a/**/b"]);
        assert!(!p.permits("a/b"));
        assert!(!p.permits("a/x/y/b"));
        assert!(p.permits("a/x/c"));
    }

    #[test]
    fn one_segment_patterns_on_docker_hub_match_the_library_name() {
        let p = hub_policy(&[], &["alpine", "busy*"], true);
        assert!(!p.permits("library/alpine"));
        assert!(!p.permits("library/busybox"));
        assert!(p.permits("library/ubuntu"));
        assert!(p.permits("someone/alpine"));
        let p = hub_policy(&["alpine"], &[], true);
        assert!(p.permits("library/alpine"));
        assert!(!p.permits("library/ubuntu"));
        let elsewhere = hub_policy(&[], &["alpine"], false);
        assert!(elsewhere.permits("library/alpine"));
    }

    #[test]
    fn patterns_that_match_nothing_are_refused() {
        for bad in ["", "MyOrg/**", "/myorg", "myorg/", "myorg//x"] {
            assert!(
                NamePolicy::new(&[], &[bad.to_owned()], false).is_err(),
                "{bad:?}"
            );
        }
    }
}
