//! `${NAME}` expansion in recipe values.
//!
//! Deliberately smaller than a shell's: `${NAME}` is replaced, `$$` is a literal `$`, and
//! any other `$` stays as written, so `PATH: /x:$PATH` reaches the image config
//! unchanged and the program reading it (a shell, usually) expands it there. RUN text is
//! never expanded here: the shell does that with the variables in its environment.

use std::collections::BTreeMap;

use super::error::Problem;
use super::fields::is_var_name;

/// The variables visible at one point of the recipe. A name set again replaces the
/// earlier value (an env step overriding a build arg, say).
#[derive(Clone, Debug, Default)]
pub(super) struct Scope {
    vars: BTreeMap<String, String>,
}

impl Scope {
    pub fn set(&mut self, name: &str, value: &str) {
        self.vars.insert(name.to_string(), value.to_string());
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Expands `text`, naming the known variables if it refers to an unknown one.
    pub fn expand(&self, text: &str) -> Result<String, Problem> {
        expand_with(text, |name| self.get(name)).map_err(|error| match error {
            ExpandError::Unknown(name) => Problem::UnknownVariable {
                name,
                known: self.known_names(),
            },
            other => other.into_problem(text),
        })
    }

    fn known_names(&self) -> String {
        if self.vars.is_empty() {
            return "none".to_string();
        }
        self.vars.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// Checks only the `${…}` syntax of `text`, so a recipe with an unterminated `${` fails
/// when it is loaded rather than when a platform is planned.
pub(super) fn check_syntax(text: &str) -> Result<(), Problem> {
    match expand_with(text, |_| Some("")) {
        Ok(_) | Err(ExpandError::Unknown(_)) => Ok(()),
        Err(other) => Err(other.into_problem(text)),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum ExpandError {
    Unterminated,
    BadName(String),
    Unknown(String),
}

impl ExpandError {
    fn into_problem(self, text: &str) -> Problem {
        let text = text.to_string();
        match self {
            ExpandError::Unterminated => Problem::UnterminatedVariable { text },
            ExpandError::BadName(name) => Problem::BadVariable { name, text },
            ExpandError::Unknown(name) => Problem::UnknownVariable {
                name,
                known: String::new(),
            },
        }
    }
}

fn expand_with<'v>(
    text: &str,
    lookup: impl Fn(&str) -> Option<&'v str>,
) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail.find('}').ok_or(ExpandError::Unterminated)?;
            let name = &tail[..end];
            if !is_var_name(name) {
                return Err(ExpandError::BadName(name.to_string()));
            }
            let value = lookup(name).ok_or_else(|| ExpandError::Unknown(name.to_string()))?;
            out.push_str(value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(vars: &[(&str, &str)]) -> Scope {
        let mut scope = Scope::default();
        for (name, value) in vars {
            scope.set(name, value);
        }
        scope
    }

    #[test]
    fn replaces_braced_names_and_keeps_other_dollars() {
        let s = scope(&[("TARGETARCH", "arm"), ("TARGETVARIANT", "v7"), ("E", "")]);
        let cases = [
            (
                "busybox-${TARGETARCH}${TARGETVARIANT}.tar",
                "busybox-armv7.tar",
            ),
            ("${E}x${E}", "x"),
            ("cost: $$5", "cost: $5"),
            ("$${TARGETARCH}", "${TARGETARCH}"),
            ("/usr/bin:$PATH", "/usr/bin:$PATH"),
            ("trailing $", "trailing $"),
            ("$ {TARGETARCH}", "$ {TARGETARCH}"),
            ("$$$", "$$"),
            ("no dollars", "no dollars"),
            ("ünï${TARGETARCH}cödé", "ünïarmcödé"),
        ];
        for (text, want) in cases {
            assert_eq!(s.expand(text).unwrap(), want, "expanding {text:?}");
        }
    }

    #[test]
    fn unknown_names_are_named_with_the_known_ones() {
        let err = scope(&[("B", "1"), ("A", "2")])
            .expand("x${NOPE}")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown variable ${NOPE}; known: A, B",
            "{err:?}"
        );
    }

    #[test]
    fn syntax_errors() {
        let s = scope(&[("A", "1")]);
        assert!(matches!(
            s.expand("a${A"),
            Err(Problem::UnterminatedVariable { .. })
        ));
        assert!(matches!(
            s.expand("${}"),
            Err(Problem::BadVariable { name, .. }) if name.is_empty()
        ));
        assert!(matches!(
            s.expand("${A:-x}"),
            Err(Problem::BadVariable { name, .. }) if name == "A:-x"
        ));
        assert!(check_syntax("${UNKNOWN_IS_FINE_HERE}").is_ok());
        assert!(matches!(
            check_syntax("${OPEN"),
            Err(Problem::UnterminatedVariable { .. })
        ));
    }
}
