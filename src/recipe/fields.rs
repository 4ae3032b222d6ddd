//! The syntax of single recipe values (modes, owners, ports, signals, names, paths).
//! Pure functions; the callers attach locations to what they reject.

use std::path::{Component, Path, PathBuf};

/// `[A-Za-z_][A-Za-z0-9_]*`: what a shell accepts as a variable name, so every env
/// and build-arg name can be exported into a RUN step's environment.
pub(super) fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Permission bits written in octal: `0644`, `644`, `4755`, or with YAML 1.2's `0o`
/// prefix. The recipe reads the scalar's text, never a YAML integer, so an unquoted
/// `mode: 0644` or `mode: 644` means rw-r--r-- too, not decimal 644.
pub(super) fn parse_mode(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return None;
    }
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
}

/// `uid:gid` or a lone `uid` (meaning uid:uid, as docker's `--chown=1000` does), numeric
/// only: names would need the image's /etc/passwd, which COPY does not read.
pub(super) fn parse_owner(text: &str) -> Option<(u32, u32)> {
    let number = |s: &str| {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u32>().ok()
    };
    match text.split_once(':') {
        Some((uid, gid)) => Some((number(uid)?, number(gid)?)),
        None => number(text).map(|id| (id, id)),
    }
}

/// `name`, `uid`, `uid:gid`, `name:group`: resolved against the image's /etc/passwd
/// later, so only the shape is checked here.
pub(super) fn is_valid_user(text: &str) -> bool {
    let part_ok = |s: &str| !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c == ':');
    match text.split_once(':') {
        Some((user, group)) => part_ok(user) && part_ok(group),
        None => part_ok(text),
    }
}

/// `8080`, `8080/tcp`, `53/udp`, `9/sctp`, returned in the image config's `PORT/proto`
/// form (the OCI image spec defaults the protocol to tcp).
pub(super) fn normalize_port(text: &str) -> Option<String> {
    let (port, proto) = text.split_once('/').unwrap_or((text, "tcp"));
    let valid_port = !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && matches!(port.parse::<u16>(), Ok(1..));
    let proto = proto.to_ascii_lowercase();
    (valid_port && matches!(proto.as_str(), "tcp" | "udp" | "sctp"))
        .then(|| format!("{port}/{proto}"))
}

/// Linux signal names (signal(7)), without the `SIG` prefix.
const SIGNAL_NAMES: &[&str] = &[
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "IOT", "BUS", "FPE", "KILL", "USR1", "SEGV",
    "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU",
    "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "POLL", "PWR", "SYS", "RTMIN", "RTMAX",
];

/// `SIGTERM`, `TERM`, `SIGRTMIN+3`, or a number 1-64 (Linux has 64 signals). Kept as
/// written in the config; runtimes parse all of these forms.
pub(super) fn is_valid_stop_signal(text: &str) -> bool {
    if let Ok(number) = text.parse::<u8>() {
        return (1..=64).contains(&number);
    }
    let name = text.strip_prefix("SIG").unwrap_or(text);
    let (base, offset) = match name.split_once(['+', '-']) {
        Some((base, offset)) if base.starts_with("RT") => (base, Some(offset)),
        _ => (name, None),
    };
    let offset_ok = offset.is_none_or(|o| matches!(o.parse::<u8>(), Ok(1..=30)));
    SIGNAL_NAMES.contains(&base) && offset_ok
}

/// A duration as Go's `time.ParseDuration` reads it (what Docker's HEALTHCHECK flags
/// and compose files use): `30s`, `1m30s`, `1.5h`, `500ms`, `250us`, `0`; in
/// nanoseconds. Negative and out-of-range durations are None.
pub(super) fn parse_duration(text: &str) -> Option<u64> {
    const UNITS: &[(&str, u64)] = &[
        ("ns", 1),
        ("us", 1_000),
        ("\u{b5}s", 1_000),
        ("\u{3bc}s", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
        let whole_len = digits(rest);
        let whole = &rest[..whole_len];
        rest = &rest[whole_len..];
        let fraction = match rest.strip_prefix('.') {
            Some(after) => {
                let len = digits(after);
                rest = &after[len..];
                &after[..len]
            }
            None => "",
        };
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        let (_, scale) = UNITS.iter().find(|(name, _)| *name == &rest[..unit_len])?;
        rest = &rest[unit_len..];
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let mut part = whole.checked_mul(*scale)?;
        // The fraction to nanosecond precision, truncated; the digits past what a
        // u64 holds cannot matter at any unit.
        let mut unit = *scale;
        for digit in fraction.bytes().take(19) {
            unit /= 10;
            part = part.checked_add(u64::from(digit - b'0') * unit)?;
        }
        total = total.checked_add(part)?;
    }
    // Go's Duration is an int64.
    (total <= i64::MAX as u64).then_some(total)
}

pub(super) fn is_absolute(path: &str) -> bool {
    path.starts_with('/')
}

/// Normalises a relative path lexically (`a/./b/../c` → `a/c`) and returns it only if it
/// stays inside the folder it is relative to. Lexical only: symlinks are the caller's
/// business (copy sources are canonicalised on disk later).
pub(super) fn relative_inside(path: &Path) -> Option<PathBuf> {
    let mut kept: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => kept.push(name),
            Component::CurDir => {}
            Component::ParentDir => {
                kept.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(kept.iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_names() {
        for ok in ["A", "_x", "PATH", "a1_B2"] {
            assert!(is_var_name(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A.B", "É", "A B"] {
            assert!(!is_var_name(bad), "{bad}");
        }
    }

    #[test]
    fn modes_are_octal_text() {
        assert_eq!(parse_mode("0644"), Some(0o644));
        assert_eq!(parse_mode("644"), Some(0o644));
        assert_eq!(parse_mode("0o755"), Some(0o755));
        assert_eq!(parse_mode("4755"), Some(0o4755));
        assert_eq!(parse_mode("07777"), Some(0o7777));
        for bad in [
            "0999",
            "",
            "0o",
            "10000",
            "-644",
            "rw-r--r--",
            "0x1ff",
            "000000",
        ] {
            assert_eq!(parse_mode(bad), None, "{bad}");
        }
    }

    #[test]
    fn owners_are_numeric() {
        assert_eq!(parse_owner("1000:1000"), Some((1000, 1000)));
        assert_eq!(parse_owner("1000"), Some((1000, 1000)));
        assert_eq!(parse_owner("0:42"), Some((0, 42)));
        for bad in [
            "root",
            "1000:",
            ":1000",
            "1000:staff",
            "-1",
            "+5",
            "1:2:3",
            "99999999999",
        ] {
            assert_eq!(parse_owner(bad), None, "{bad}");
        }
    }

    #[test]
    fn users_may_be_names_or_ids() {
        for ok in ["nobody", "1000", "1000:1000", "app:staff", "app:100"] {
            assert!(is_valid_user(ok), "{ok}");
        }
        for bad in ["", ":", "a:", ":b", "a:b:c", "a b"] {
            assert!(!is_valid_user(bad), "{bad}");
        }
    }

    #[test]
    fn ports_default_to_tcp() {
        assert_eq!(normalize_port("8080").as_deref(), Some("8080/tcp"));
        assert_eq!(normalize_port("8080/tcp").as_deref(), Some("8080/tcp"));
        assert_eq!(normalize_port("53/UDP").as_deref(), Some("53/udp"));
        for bad in ["0", "65536", "80/http", "", "/tcp", "8000-8010", "+80"] {
            assert_eq!(normalize_port(bad), None, "{bad}");
        }
    }

    #[test]
    fn stop_signals() {
        for ok in [
            "SIGTERM",
            "TERM",
            "SIGKILL",
            "9",
            "64",
            "SIGRTMIN+3",
            "RTMAX-1",
        ] {
            assert!(is_valid_stop_signal(ok), "{ok}");
        }
        for bad in ["0", "65", "SIGFOO", "sigterm", "", "TERM+1", "SIGRTMIN+31"] {
            assert!(!is_valid_stop_signal(bad), "{bad}");
        }
    }

    #[test]
    fn durations_read_as_go_reads_them() {
        let cases = [
            ("30s", 30_000_000_000),
            ("1m30s", 90_000_000_000),
            ("500ms", 500_000_000),
            ("1.5h", 5_400_000_000_000),
            ("1h2m3s4ms5us6ns", 3_723_004_005_006),
            ("250\u{b5}s", 250_000),
            ("250\u{3bc}s", 250_000),
            (".5s", 500_000_000),
            ("1.s", 1_000_000_000),
            ("0", 0),
            ("0s", 0),
            ("+5m", 300_000_000_000),
            ("0.000000001s", 1),
            ("0.0000000019s", 1),
            ("2562047h47m16.854775807s", i64::MAX as u64),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Some(want), "{text}");
        }
        for bad in [
            "",
            "30",
            "s",
            "-1s",
            "1d",
            "1.5",
            "1..5s",
            "5 s",
            "5S",
            "1h30",
            ".s",
            "2562047h47m16.854775808s",
            "99999999999999999999h",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn relative_paths_stay_inside() {
        assert_eq!(
            relative_inside(Path::new("a/./b/../c")),
            Some(PathBuf::from("a/c"))
        );
        assert_eq!(relative_inside(Path::new(".")), Some(PathBuf::new()));
        assert_eq!(relative_inside(Path::new("a/..")), Some(PathBuf::new()));
        assert_eq!(relative_inside(Path::new("../x")), None);
        assert_eq!(relative_inside(Path::new("a/../../x")), None);
        assert_eq!(relative_inside(Path::new("/etc/passwd")), None);
    }
}
