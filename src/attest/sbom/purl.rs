//! Package URLs (github.com/package-url/purl-spec, PURL-SPECIFICATION.rst):
//! `pkg:TYPE/NAMESPACE/NAME@VERSION?QUALIFIERS`, each namespace segment, the name, the
//! version and each qualifier value percent-encoded, qualifiers sorted by key and empty
//! ones left out.

use super::os_release::OsRelease;

/// A distribution package: `pkg:deb/debian/libc6@2.36-9?arch=amd64&distro=debian-12`.
/// `upstream` is the source package (syft's qualifier), when it has one of its own.
pub fn os_package(
    ty: &str,
    namespace: &str,
    name: &str,
    version: &str,
    arch: &Option<String>,
    os: &OsRelease,
    upstream: Option<String>,
) -> String {
    let qualifiers = [
        ("arch", arch.clone()),
        ("distro", os.distro()),
        ("upstream", upstream),
    ];
    purl(ty, &[namespace], name, version, &qualifiers)
}

/// A Go module: the module path's last element is the name, the elements before it
/// the namespace (`pkg:golang/golang.org/x/sys@v0.1.0`). Go module paths are case
/// sensitive (the module proxy escapes capitals), so nothing is lowercased, as syft
/// and packageurl-go do.
pub fn golang(module_path: &str, version: &str) -> String {
    let segments: Vec<&str> = module_path.split('/').filter(|s| !s.is_empty()).collect();
    let (name, namespace) = segments.split_last().unwrap_or((&"", &[]));
    purl("golang", namespace, name, version, &[])
}

fn purl(
    ty: &str,
    namespace: &[&str],
    name: &str,
    version: &str,
    qualifiers: &[(&str, Option<String>)],
) -> String {
    let mut out = format!("pkg:{ty}/");
    for segment in namespace.iter().filter(|s| !s.is_empty()) {
        out.push_str(&encode(segment));
        out.push('/');
    }
    out.push_str(&encode(name));
    if !version.is_empty() {
        out.push('@');
        out.push_str(&encode(version));
    }
    let mut qualifiers: Vec<(&str, &str)> = qualifiers
        .iter()
        .filter_map(|(k, v)| Some((*k, v.as_deref().filter(|v| !v.is_empty())?)))
        .collect();
    qualifiers.sort();
    for (i, (key, value)) in qualifiers.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(key);
        out.push('=');
        out.push_str(&encode(value));
    }
    out
}

/// Percent-encodes all but RFC 3986's unreserved characters (letters, digits, `-`,
/// `.`, `_`, `~`), as purl-spec asks: `1:2.3+dfsg-1` → `1%3A2.3%2Bdfsg-1`.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn debian12() -> OsRelease {
        OsRelease {
            id: Some("debian".into()),
            version_id: Some("12".into()),
        }
    }

    #[test]
    fn debian_epochs_and_plus_signs_are_encoded() {
        assert_eq!(encode("1:2.3+dfsg-1"), "1%3A2.3%2Bdfsg-1");
        assert_eq!(encode("a b/ü"), "a%20b%2F%C3%BC");
        let arch = Some("amd64".to_string());
        assert_eq!(
            os_package(
                "deb",
                "debian",
                "zlib1g",
                "1:1.2.13.dfsg-1",
                &arch,
                &debian12(),
                Some("zlib".into())
            ),
            "pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1?arch=amd64&distro=debian-12&upstream=zlib"
        );
        assert_eq!(
            os_package(
                "apk",
                "alpine",
                "musl",
                "1.2.4-r2",
                &None,
                &OsRelease::default(),
                None
            ),
            "pkg:apk/alpine/musl@1.2.4-r2"
        );
    }

    #[test]
    fn go_module_paths_split_into_namespace_and_name() {
        assert_eq!(
            golang("golang.org/x/sys", "v0.1.0"),
            "pkg:golang/golang.org/x/sys@v0.1.0"
        );
        assert_eq!(
            golang("github.com/BurntSushi/toml", "v1.2.1+incompatible"),
            "pkg:golang/github.com/BurntSushi/toml@v1.2.1%2Bincompatible"
        );
        assert_eq!(
            golang("example.com/app", "(devel)"),
            "pkg:golang/example.com/app@%28devel%29"
        );
        assert_eq!(golang("stdlib", "1.19.8"), "pkg:golang/stdlib@1.19.8");
    }
}
