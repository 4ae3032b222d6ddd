//! Saying *why* two versions of a file differ, without extracting anything: for text the
//! first differing lines with a little context (as `diff -u` shows a hunk), for binary
//! data the sizes and the first differing byte; and which of xbake's normalisation rules
//! (normalize/rules.conf) covers a path, so that a difference confined to such files can
//! be named for what it is: an image built without those rules.
//!
//! Everything here is pure and works on bounded samples (the first `SAMPLE_LIMIT` bytes
//! of each side), so a comparison never holds more than that per file.

use crate::layer::whiteout;
use crate::normalize::{Action, Rule, RuleSet};
use serde::Serialize;

/// How much of each side of a differing file is read to explain it.
pub const SAMPLE_LIMIT: usize = 1 << 20;
/// Lines of unchanged context shown before the first differing line.
const CONTEXT_LINES: usize = 3;
/// Differing lines shown per side.
const CHANGED_LINES: usize = 3;
/// Characters shown of one line.
const LINE_CHARS: usize = 160;

/// The first bytes of one side of a file, and its whole size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub bytes: Vec<u8>,
    pub size: u64,
}

impl Sample {
    fn truncated(&self) -> bool {
        (self.bytes.len() as u64) < self.size
    }

    /// Valid UTF-8 without NUL (a sequence cut by the sample's end is allowed): the
    /// heuristic git and diff(1) use to tell text from binary.
    fn is_text(&self) -> bool {
        if self.bytes.contains(&0) {
            return false;
        }
        match std::str::from_utf8(&self.bytes) {
            Ok(_) => true,
            Err(e) => e.error_len().is_none() && self.truncated(),
        }
    }
}

/// How the contents of one path differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContentDiff {
    /// Both sides are text.
    pub text: bool,
    pub a_size: u64,
    pub b_size: u64,
    /// The offset of the first differing byte; none when the compared samples agree
    /// (both files are longer than what was compared).
    pub first_difference: Option<u64>,
    /// Bytes compared per side at most.
    pub compared: u64,
    /// Text only: the 1-based number of the first differing line.
    pub line: Option<usize>,
    /// Text only: context lines (` `), then the first differing lines of A (`-`) and of
    /// B (`+`), each cut to a bounded length.
    pub lines: Vec<String>,
}

pub fn explain_content(a: &Sample, b: &Sample) -> ContentDiff {
    let common = a
        .bytes
        .iter()
        .zip(&b.bytes)
        .take_while(|(x, y)| x == y)
        .count();
    let shorter = a.bytes.len().min(b.bytes.len());
    let first_difference = if common < shorter {
        Some(common as u64)
    } else if (!a.truncated() && a.bytes.len() == shorter)
        || (!b.truncated() && b.bytes.len() == shorter)
    {
        // One side ends here and the other goes on (or both end with different sizes).
        (a.size != b.size).then_some(shorter as u64)
    } else {
        None
    };
    let mut diff = ContentDiff {
        text: a.is_text() && b.is_text(),
        a_size: a.size,
        b_size: b.size,
        first_difference,
        compared: SAMPLE_LIMIT as u64,
        line: None,
        lines: Vec::new(),
    };
    if diff.text {
        (diff.line, diff.lines) = first_differing_lines(a, b);
    }
    diff
}

/// Lines with their newline; a sample's last, possibly cut, line is left out.
fn lines(sample: &Sample) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = sample.bytes.split_inclusive(|&c| c == b'\n').collect();
    if sample.truncated() {
        lines.pop();
    }
    lines
}

fn first_differing_lines(a: &Sample, b: &Sample) -> (Option<usize>, Vec<String>) {
    let (la, lb) = (lines(a), lines(b));
    let prefix = la.iter().zip(&lb).take_while(|(x, y)| x == y).count();
    if prefix == la.len() && prefix == lb.len() {
        return (None, Vec::new());
    }
    // A common tail is known only when both sides were read whole.
    let suffix = if a.truncated() || b.truncated() {
        0
    } else {
        la[prefix..]
            .iter()
            .rev()
            .zip(lb[prefix..].iter().rev())
            .take_while(|(x, y)| x == y)
            .count()
    };
    let mut out = Vec::new();
    for line in &la[prefix.saturating_sub(CONTEXT_LINES)..prefix] {
        out.push(show(' ', line));
    }
    for (mark, side) in [('-', &la), ('+', &lb)] {
        let changed = &side[prefix..side.len() - suffix];
        for line in changed.iter().take(CHANGED_LINES) {
            out.push(show(mark, line));
        }
        if changed.len() > CHANGED_LINES {
            out.push(format!(
                "{mark}… {} more lines",
                changed.len() - CHANGED_LINES
            ));
        }
    }
    (Some(prefix + 1), out)
}

/// One line as shown: its mark, its text cut to `LINE_CHARS`, and a note when it has no
/// newline (the difference may be just that).
fn show(mark: char, line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let (body, newline) = match text.strip_suffix('\n') {
        Some(body) => (body, true),
        None => (&*text, false),
    };
    let mut shown: String = body.chars().take(LINE_CHARS).collect();
    if body.chars().count() > LINE_CHARS {
        shown.push('…');
    }
    if !newline {
        shown.push_str(" (no newline at end of file)");
    }
    format!("{mark}{shown}")
}

/// The normalisation rule that covers `path` (absolute). A whiteout
/// (`/var/cache/apt/.wh.pkgcache.bin`) is covered by the rule for the path it deletes:
/// that is how a `remove` rule shows in a layer whose base held the file.
pub fn covering_rule<'r>(rules: &'r RuleSet, path: &str) -> Option<&'r Rule> {
    if let Some(rule) = rules.rule_for(path) {
        return Some(rule);
    }
    let (dir, name) = path.rsplit_once('/')?;
    let deleted = name.strip_prefix(whiteout::WHITEOUT_PREFIX)?;
    if deleted.is_empty() || name == whiteout::OPAQUE_MARKER {
        return None;
    }
    rules.rule_for(&format!("{dir}/{deleted}"))
}

/// What a rule is, for a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleRef {
    pub action: &'static str,
    pub pattern: String,
    pub why: String,
}

impl From<&Rule> for RuleRef {
    fn from(rule: &Rule) -> RuleRef {
        RuleRef {
            action: rule.action.name(),
            pattern: rule.pattern.clone(),
            why: rule.why.clone(),
        }
    }
}

/// One side of a covered path, as far as the report knows it: absent, a regular file
/// of this size, or anything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Absent,
    File(u64),
    Other,
}

/// Which side (`'A'` or `'B'`) shows the file as the rule would *not* have left it: a
/// non-empty file where `truncate` empties it, a present one where `remove` deletes it.
/// `None` when it cannot be told (the other actions edit inside the file).
pub fn unnormalised_side(action: Action, a: Side, b: Side) -> Option<char> {
    let raw = |s: Side| match action {
        Action::Truncate => matches!(s, Side::File(n) if n > 0),
        Action::Remove => matches!(s, Side::File(_)),
        Action::ShadowLastChange | Action::PycMtime => false,
    };
    let clean = |s: Side| match action {
        Action::Truncate => matches!(s, Side::File(0) | Side::Absent),
        Action::Remove => matches!(s, Side::Absent),
        Action::ShadowLastChange | Action::PycMtime => false,
    };
    match (raw(a) && clean(b), raw(b) && clean(a)) {
        (true, false) => Some('A'),
        (false, true) => Some('B'),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(bytes: &[u8]) -> Sample {
        Sample {
            bytes: bytes.to_vec(),
            size: bytes.len() as u64,
        }
    }

    #[test]
    fn text_shows_context_and_the_first_differing_lines() {
        let a = sample(b"one\ntwo\nthree\nfour\nfive\nsix\n");
        let b = sample(b"one\ntwo\nthree\nfour\nFIVE\nsix\n");
        let d = explain_content(&a, &b);
        assert!(d.text);
        assert_eq!(d.line, Some(5));
        assert_eq!(d.first_difference, Some(19));
        assert_eq!(d.lines, [" two", " three", " four", "-five", "+FIVE"]);
    }

    #[test]
    fn an_emptied_log_shows_the_lines_it_lost() {
        let d = explain_content(&sample(b""), &sample(b"1700000000123\n"));
        assert!(d.text);
        assert_eq!(d.line, Some(1));
        assert_eq!(d.lines, ["+1700000000123"]);
        assert_eq!((d.a_size, d.b_size, d.first_difference), (0, 14, Some(0)));
    }

    #[test]
    fn long_changes_and_long_lines_are_cut() {
        let a: String = (0..10).map(|i| format!("a{i}\n")).collect();
        let b = format!("{}\n", "x".repeat(500));
        let d = explain_content(&sample(a.as_bytes()), &sample(b.as_bytes()));
        assert_eq!(d.lines.len(), 3 + 1 + 1);
        assert_eq!(d.lines[3], "-… 7 more lines");
        assert_eq!(d.lines[4].chars().count(), 1 + LINE_CHARS + 1);
        assert!(d.lines[4].ends_with('…'));
    }

    #[test]
    fn a_missing_final_newline_is_named() {
        let d = explain_content(&sample(b"x\n"), &sample(b"x"));
        assert_eq!(d.lines, ["-x", "+x (no newline at end of file)"]);
        assert_eq!(d.first_difference, Some(1));
    }

    #[test]
    fn binary_gives_sizes_and_the_first_differing_offset() {
        let mut a = vec![0u8; 4096];
        let mut b = a.clone();
        b[1234] = 7;
        b.push(1);
        let d = explain_content(&sample(&a), &sample(&b));
        assert!(!d.text);
        assert!(d.lines.is_empty() && d.line.is_none());
        assert_eq!((d.a_size, d.b_size), (4096, 4097));
        assert_eq!(d.first_difference, Some(1234));
        // One a prefix of the other: the difference is where the shorter ends.
        a.truncate(100);
        let d = explain_content(&sample(&a), &sample(&[0u8; 200]));
        assert_eq!(d.first_difference, Some(100));
        // Invalid UTF-8 is binary too.
        assert!(!explain_content(&sample(b"\xff\n"), &sample(b"a\n")).text);
    }

    #[test]
    fn samples_that_agree_leave_the_offset_open() {
        let cut = |size| Sample {
            bytes: vec![b'a'; 16],
            size,
        };
        let d = explain_content(&cut(1 << 30), &cut((1 << 30) + 1));
        assert_eq!(d.first_difference, None);
        assert_eq!(d.line, None);
        // Text cut in the middle of a character is still text.
        let mut bytes = b"ab\n".to_vec();
        bytes.extend_from_slice(&"é".as_bytes()[..1]);
        let s = Sample { bytes, size: 100 };
        assert!(s.is_text());
    }

    #[test]
    fn rules_cover_their_paths_and_the_whiteouts_of_them() {
        let rules = RuleSet::builtin().unwrap();
        let rule = covering_rule(&rules, "/var/log/dpkg.log").unwrap();
        assert_eq!(rule.action, Action::Truncate);
        let rule = covering_rule(&rules, "/var/cache/apt/.wh.pkgcache.bin").unwrap();
        assert_eq!(rule.pattern, "/var/cache/apt/pkgcache.bin");
        for path in [
            "/etc/passwd",
            "/var/log/.wh..wh..opq",
            "/var/log/.wh.other",
            "/",
        ] {
            assert!(covering_rule(&rules, path).is_none(), "{path}");
        }
    }

    #[test]
    fn the_side_left_unnormalised_is_told_where_it_can_be() {
        use Side::*;
        assert_eq!(
            unnormalised_side(Action::Truncate, File(0), File(9)),
            Some('B')
        );
        assert_eq!(
            unnormalised_side(Action::Remove, File(9), Absent),
            Some('A')
        );
        assert_eq!(unnormalised_side(Action::Remove, Absent, Other), None);
        assert_eq!(unnormalised_side(Action::Truncate, File(3), File(9)), None);
        assert_eq!(unnormalised_side(Action::PycMtime, File(3), File(3)), None);
    }
}
