//! Normalisation after run steps: the files whose *content* carries the build time or
//! randomness (package-manager logs, apt's and ldconfig's caches, machine ids, shadow's
//! last-change day, .pyc timestamps) are fixed by a small versioned rule table
//! (`normalize/rules.conf`), the way debuerreotype makes Debian's images reproducible.
//! Clamping mtimes (layer/pack.rs) cannot reach file contents; this does, and nothing
//! else.

mod apply;
pub mod rules;

pub use apply::{Applied, Before, apply, before_step, pyc_mtime, shadow_lastchg};
pub use rules::{Action, BUILTIN_RULES, Rule, RuleSet, RulesError};

use std::sync::OnceLock;

/// The shipped rule table, parsed once. An error here is a bug in the shipped file (a
/// unit test parses it), reported rather than panicking.
pub fn builtin() -> Result<&'static RuleSet, RulesError> {
    static RULES: OnceLock<Result<RuleSet, RulesError>> = OnceLock::new();
    RULES
        .get_or_init(RuleSet::builtin)
        .as_ref()
        .map_err(Clone::clone)
}
