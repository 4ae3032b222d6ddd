//! apk's installed database (`/lib/apk/db/installed`, apk-tools `apk_db_index_read`):
//! a stanza per package, separated by blank lines, each line one letter, a colon and
//! the value. Keys are case-sensitive (`m:` is the maintainer, `M:` a directory's
//! mode). A stanza with a line that is not `X:value` is skipped, not the file.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApkPackage {
    pub name: String,
    pub version: String,
    pub arch: Option<String>,
    /// `o:`, the source package (aports directory) it was built from.
    pub origin: Option<String>,
    pub maintainer: Option<String>,
}

pub fn parse_installed(text: &[u8]) -> Vec<ApkPackage> {
    let text = String::from_utf8_lossy(text);
    super::dpkg::stanzas(&text)
        .filter_map(|lines| package(&lines))
        .collect()
}

fn package(lines: &[&str]) -> Option<ApkPackage> {
    if lines.is_empty() {
        return None;
    }
    let mut fields: Vec<(char, &str)> = Vec::new();
    for line in lines {
        let mut chars = line.chars();
        match (chars.next(), chars.next()) {
            (Some(key), Some(':')) if key.is_ascii_alphanumeric() => {
                fields.push((key, chars.as_str().trim()));
            }
            _ => return None,
        }
    }
    // The first of each key: the package's own lines come before its files' (`F:`,
    // `R:`, `a:`, `Z:`), which repeat.
    let get = |key: char| {
        fields
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    Some(ApkPackage {
        name: get('P')?,
        version: get('V')?,
        arch: get('A'),
        origin: get('o'),
        maintainer: get('m'),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanzas_are_read_and_broken_ones_skipped() {
        let db = "\
C:Q1abc=
P:musl
V:1.2.4_git20230717-r4
A:x86_64
S:383152
I:622592
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Timo Teräs <timo.teras@iki.fi>
t:1705941200
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1xyz=

P:broken
V:1
this is not a field

P:no-version
A:x86_64

P:busybox-binsh
V:1.36.1-r15
A:x86_64
o:busybox
m:Sören Tempel <soeren+alpine@soeren-tempel.net>
";
        let got = parse_installed(db.as_bytes());
        assert_eq!(
            got,
            [
                ApkPackage {
                    name: "musl".into(),
                    version: "1.2.4_git20230717-r4".into(),
                    arch: Some("x86_64".into()),
                    origin: Some("musl".into()),
                    maintainer: Some("Timo Teräs <timo.teras@iki.fi>".into()),
                },
                ApkPackage {
                    name: "busybox-binsh".into(),
                    version: "1.36.1-r15".into(),
                    arch: Some("x86_64".into()),
                    origin: Some("busybox".into()),
                    maintainer: Some("Sören Tempel <soeren+alpine@soeren-tempel.net>".into()),
                },
            ]
        );
    }
}
