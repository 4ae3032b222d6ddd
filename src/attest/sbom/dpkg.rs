//! dpkg's status database (deb822 stanzas, deb-control(5)): a paragraph per package,
//! `Field: value` lines, continuation lines starting with a space or a tab, paragraphs
//! separated by blank lines. A paragraph that does not read as one is skipped, so one
//! damaged stanza does not hide the rest of the image's packages.

/// Whether a stanza needs a `Status:` saying it is installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusRule {
    /// `/var/lib/dpkg/status` also lists removed packages whose configuration files
    /// remain (`deinstall ok config-files`) and half-installed ones.
    Required,
    /// Distroless `status.d/` files have no `Status:` (no dpkg ever ran): a stanza
    /// without one is installed; one with one must say so.
    IfPresent,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebPackage {
    pub name: String,
    pub version: String,
    pub arch: Option<String>,
    pub source: Option<String>,
    /// `Source: glibc (2.36-9)`: the source's own version, when it differs.
    pub source_version: Option<String>,
    pub maintainer: Option<String>,
}

/// The installed packages of a status file, in file order.
pub fn parse_status(text: &[u8], rule: StatusRule) -> Vec<DebPackage> {
    let text = String::from_utf8_lossy(text);
    stanzas(&text)
        .filter_map(|lines| fields(&lines))
        .filter_map(|f| package(&f, rule))
        .collect()
}

/// The stanzas' lines (without line ends), blank lines between stanzas dropped; apk's
/// database is laid out the same way.
pub(super) fn stanzas(text: &str) -> impl Iterator<Item = Vec<&str>> {
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r')).peekable();
    std::iter::from_fn(move || {
        while lines.next_if(|l| l.trim().is_empty()).is_some() {}
        let mut stanza = Vec::new();
        while let Some(line) = lines.next_if(|l| !l.trim().is_empty()) {
            stanza.push(line);
        }
        (!stanza.is_empty()).then_some(stanza)
    })
}

/// (lowercased field name, first line of the value), or None if a line is neither a
/// field nor a continuation. Field names are case-insensitive (deb822(5)); the first of
/// a repeated field is kept. Continuation lines only matter for multi-line fields
/// (Description, Conffiles), which are not read.
fn fields<'a>(lines: &[&'a str]) -> Option<Vec<(String, &'a str)>> {
    let mut out: Vec<(String, &str)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            if out.is_empty() {
                return None;
            }
            continue;
        }
        let (name, value) = line.split_once(':')?;
        if name.is_empty() || name.contains(char::is_whitespace) || name.starts_with('#') {
            return None;
        }
        let name = name.to_ascii_lowercase();
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, value.trim()));
        }
    }
    Some(out)
}

fn package(fields: &[(String, &str)], rule: StatusRule) -> Option<DebPackage> {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .filter(|v| !v.is_empty())
    };
    let installed = match get("status") {
        // `want flag status`: `install ok installed`, `hold ok installed`.
        Some(status) => status.ends_with(" installed"),
        None => rule == StatusRule::IfPresent,
    };
    if !installed {
        return None;
    }
    let name = get("package")?;
    let version = get("version")?;
    if name.contains(char::is_whitespace) || version.contains(char::is_whitespace) {
        return None;
    }
    let (source, source_version) = match get("source") {
        Some(source) => match source.split_once(' ') {
            Some((name, version)) => {
                let version = version.trim().strip_prefix('(')?.strip_suffix(')')?.trim();
                (Some(name), Some(version).filter(|v| !v.is_empty()))
            }
            None => (Some(source), None),
        },
        None => (None, None),
    };
    Some(DebPackage {
        name: name.to_string(),
        version: version.to_string(),
        arch: get("architecture").map(str::to_string),
        source: source.map(str::to_string),
        source_version: source_version.filter(|v| *v != version).map(str::to_string),
        maintainer: get("maintainer").map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
Package: libc6
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Source: glibc (2.36-9+deb12u4)
Version: 2.36-9+deb12u4
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.

Package: old-thing
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0
Conffiles:
 /etc/old-thing.conf 0123456789abcdef

this line is not a field
Package: broken
Status: install ok installed
Version: 9

Package: zlib1g
STATUS: install ok installed
Architecture: amd64
Source: zlib
Version: 1:1.2.13.dfsg-1
Maintainer: Mark Brown <broonie@debian.org>
";

    #[test]
    fn installed_stanzas_are_read_and_broken_ones_skipped() {
        let got = parse_status(STATUS.as_bytes(), StatusRule::Required);
        assert_eq!(
            got,
            [
                DebPackage {
                    name: "libc6".into(),
                    version: "2.36-9+deb12u4".into(),
                    arch: Some("amd64".into()),
                    source: Some("glibc".into()),
                    source_version: None,
                    maintainer: Some("GNU Libc Maintainers <debian-glibc@lists.debian.org>".into()),
                },
                DebPackage {
                    name: "zlib1g".into(),
                    version: "1:1.2.13.dfsg-1".into(),
                    arch: Some("amd64".into()),
                    source: Some("zlib".into()),
                    source_version: None,
                    maintainer: Some("Mark Brown <broonie@debian.org>".into()),
                },
            ]
        );
    }

    #[test]
    fn distroless_stanzas_need_no_status_and_keep_a_differing_source_version() {
        let text = "Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n\
                    Source: tzdata (2024a-0)\n";
        assert!(parse_status(text.as_bytes(), StatusRule::Required).is_empty());
        let got = parse_status(text.as_bytes(), StatusRule::IfPresent);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].source_version.as_deref(), Some("2024a-0"));
        assert_eq!(got[0].arch.as_deref(), Some("all"));
    }

    #[test]
    fn crlf_and_missing_fields() {
        let text = "Package: a\r\nVersion: 1\r\nStatus: install ok installed\r\n\r\n\
                    Package: no-version\nStatus: install ok installed\n\n \
                    continuation first\nPackage: b\nVersion: 2\n";
        let got = parse_status(text.as_bytes(), StatusRule::Required);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].name.as_str(), got[0].version.as_str()), ("a", "1"));
    }
}
