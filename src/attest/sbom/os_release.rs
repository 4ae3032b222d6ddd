//! os-release(5): `KEY=value` lines in shell syntax (values may be quoted; `#` starts
//! a comment line). Only `ID` and `VERSION_ID` are read: they name the distribution in
//! package URLs (`pkg:deb/debian/…?distro=debian-12`).

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OsRelease {
    pub id: Option<String>,
    pub version_id: Option<String>,
}

impl OsRelease {
    /// The purl namespace: the distribution's ID (purl-spec: lowercased), else the
    /// package manager's home distribution.
    pub fn namespace(&self, default: &str) -> String {
        self.id.as_deref().unwrap_or(default).to_ascii_lowercase()
    }

    /// The purl `distro` qualifier, as syft writes it: `debian-12`, or the ID alone
    /// when there is no VERSION_ID (Debian testing and sid have none).
    pub fn distro(&self) -> Option<String> {
        let id = self.id.as_deref()?.to_ascii_lowercase();
        Some(match &self.version_id {
            Some(version) => format!("{id}-{version}"),
            None => id,
        })
    }
}

pub fn parse(text: &[u8]) -> OsRelease {
    let text = String::from_utf8_lossy(text);
    let mut out = OsRelease::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(value.trim());
        let slot = match key.trim() {
            "ID" => &mut out.id,
            "VERSION_ID" => &mut out.version_id,
            _ => continue,
        };
        // The last assignment wins, as when the file is sourced by a shell.
        *slot = Some(value).filter(|v| !v.is_empty());
    }
    out
}

/// The value a shell would assign: `"…"` with `\"`, `\\`, `\$` and `` \` `` escapes,
/// `'…'` literally, or a bare word with backslash escapes.
fn unquote(value: &str) -> String {
    let mut out = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => out.extend(chars.by_ref().take_while(|&c| c != '\'')),
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some(e @ ('"' | '\\' | '$' | '`')) => out.push(e),
                            Some(other) => {
                                out.push('\\');
                                out.push(other);
                            }
                            None => out.push('\\'),
                        },
                        c => out.push(c),
                    }
                }
            }
            '\\' => out.extend(chars.next()),
            c if c.is_whitespace() => break,
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_quoted_and_bare_values() {
        let text = b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n# ID=fake\n\
                     NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";
        let os = parse(text);
        assert_eq!(os.id.as_deref(), Some("debian"));
        assert_eq!(os.distro().as_deref(), Some("debian-12"));
        let os = parse(b"ID='Alpine'\nVERSION_ID=3.19\\.1\n");
        assert_eq!(os.namespace("x"), "alpine");
        assert_eq!(os.distro().as_deref(), Some("alpine-3.19.1"));
        let sid = parse(b"ID=debian\n");
        assert_eq!(sid.distro().as_deref(), Some("debian"));
        assert_eq!(OsRelease::default().namespace("alpine"), "alpine");
        assert_eq!(unquote(r#""a \"b\" \$c""#), r#"a "b" $c"#);
    }
}
