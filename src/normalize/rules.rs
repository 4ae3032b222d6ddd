//! The rule table (`normalize/rules.conf`) as data: parsed strictly, with the line
//! number in every error, like the binfmt table (`emulation/table.rs`).

use crate::digest::Digest;

/// The table xbake ships, compiled in.
pub const BUILTIN_RULES: &str = include_str!("../../normalize/rules.conf");

/// What a rule does to a matching file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Remove,
    Truncate,
    ShadowLastChange,
    PycMtime,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Remove => "remove",
            Action::Truncate => "truncate",
            Action::ShadowLastChange => "shadow-lastchg",
            Action::PycMtime => "pyc-mtime",
        }
    }

    fn parse(word: &str) -> Option<Action> {
        [
            Action::Remove,
            Action::Truncate,
            Action::ShadowLastChange,
            Action::PycMtime,
        ]
        .into_iter()
        .find(|a| a.name() == word)
    }
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub action: Action,
    /// As written: an absolute path, maybe with `*`/`**`.
    pub pattern: String,
    pub why: String,
    matcher: glob::Pattern,
}

impl Rule {
    /// `path` is absolute (`/var/log/dpkg.log`).
    pub fn matches(&self, path: &str) -> bool {
        self.matcher.matches_with(
            path,
            glob::MatchOptions {
                case_sensitive: true,
                // `*` stays inside one component; `**` crosses them.
                require_literal_separator: true,
                require_literal_leading_dot: false,
            },
        )
    }
}

/// A parsed table: its version, its rules in file order, and the sha256 of its text
/// (what the step key and the metadata carry).
#[derive(Clone, Debug)]
pub struct RuleSet {
    pub version: u32,
    pub rules: Vec<Rule>,
    pub digest: Digest,
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("normalize/rules.conf line {line}: {message}")]
pub struct RulesError {
    pub line: usize,
    pub message: String,
}

impl RuleSet {
    pub fn builtin() -> Result<RuleSet, RulesError> {
        RuleSet::parse(BUILTIN_RULES)
    }

    pub fn parse(text: &str) -> Result<RuleSet, RulesError> {
        let mut version = None;
        let mut rules = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let err = |message: String| RulesError { line, message };
            let content = raw.trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let (first, tail) = split_word(content);
            let (second, rest) = split_word(tail);
            if first == "version" {
                if version.is_some() {
                    return Err(err("a second version line".into()));
                }
                if !rest.is_empty() {
                    return Err(err(format!("unexpected text after the version: {rest:?}")));
                }
                version = Some(
                    second
                        .parse::<u32>()
                        .map_err(|_| err(format!("version {second:?} is not a whole number")))?,
                );
                continue;
            }
            if version.is_none() {
                return Err(err("the first line must be `version N`".into()));
            }
            let action = Action::parse(first).ok_or_else(|| {
                err(format!(
                    "unknown action {first:?}; expected remove, truncate, shadow-lastchg or pyc-mtime"
                ))
            })?;
            if !second.starts_with('/') {
                return Err(err(format!("pattern {second:?} is not an absolute path")));
            }
            if second.split('/').any(|c| c == ".." || c == ".") {
                return Err(err(format!("pattern {second:?} contains . or ..")));
            }
            if rest.is_empty() {
                return Err(err(format!("rule for {second} does not say why")));
            }
            if action == Action::ShadowLastChange && second.contains(['*', '?', '[']) {
                return Err(err(format!(
                    "shadow-lastchg needs a literal path (it reads the file before the step), not {second:?}"
                )));
            }
            let matcher =
                glob::Pattern::new(second).map_err(|e| err(format!("pattern {second:?}: {e}")))?;
            rules.push(Rule {
                action,
                pattern: second.to_string(),
                why: rest.to_string(),
                matcher,
            });
        }
        let version = version.ok_or(RulesError {
            line: text.lines().count(),
            message: "no `version N` line".into(),
        })?;
        let digest = Digest::of(text.as_bytes());
        Ok(RuleSet {
            version,
            rules,
            digest,
        })
    }

    /// The first rule for `path` (absolute), if any.
    pub fn rule_for(&self, path: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.matches(path))
    }
}

/// The first whitespace-separated word and the rest, trimmed.
fn split_word(text: &str) -> (&str, &str) {
    match text.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (text, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_parses_and_covers_the_issue_files() {
        let rules = RuleSet::builtin().unwrap();
        assert_eq!(rules.version, 1);
        for path in [
            "/var/cache/apt/pkgcache.bin",
            "/var/cache/apt/srcpkgcache.bin",
            "/var/cache/ldconfig/aux-cache",
            "/var/log/alternatives.log",
            "/var/log/apt/history.log",
            "/var/log/apt/term.log",
            "/var/log/dpkg.log",
            "/etc/machine-id",
            "/var/lib/dbus/machine-id",
            "/etc/shadow",
            "/usr/lib/python3/dist-packages/x/__pycache__/y.cpython-311.pyc",
        ] {
            assert!(rules.rule_for(path).is_some(), "{path}");
        }
        for path in [
            "/etc/passwd",
            "/var/log/dpkg.log.1",
            "/etc/machine-id2",
            "/a.py",
        ] {
            assert!(rules.rule_for(path).is_none(), "{path}");
        }
    }

    #[test]
    fn a_star_stays_inside_one_component() {
        let rules = RuleSet::parse("version 1\nremove /var/cache/*.bin because\n").unwrap();
        assert!(rules.rule_for("/var/cache/a.bin").is_some());
        assert!(rules.rule_for("/var/cache/apt/a.bin").is_none());
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let cases = [
            ("remove /x why\n", 1, "the first line must be `version N`"),
            ("version 1\n\nzap /x why\n", 3, "unknown action \"zap\""),
            ("version 1\nremove x why\n", 2, "not an absolute path"),
            ("version 1\nremove /x\n", 2, "does not say why"),
            ("version 1\nremove /a/../b why\n", 2, "contains . or .."),
            ("version one\n", 1, "is not a whole number"),
            ("version 1\nversion 2\n", 2, "a second version line"),
            (
                "version 1\nshadow-lastchg /etc/sh* why\n",
                2,
                "needs a literal path",
            ),
            ("version 1\nremove /a[ why\n", 2, "pattern \"/a[\""),
            ("# nothing\n", 1, "no `version N` line"),
        ];
        for (text, line, needle) in cases {
            let e = RuleSet::parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn the_digest_follows_the_text() {
        let a = RuleSet::parse("version 1\nremove /x why\n").unwrap();
        let b = RuleSet::parse("version 1\nremove /y why\n").unwrap();
        assert_ne!(a.digest, b.digest);
    }
}
