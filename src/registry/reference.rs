//! Image references (`debian:bookworm`, `host:5000/a/b:tag`, `name@sha256:…`), parsed and
//! normalised the way docker/distribution's `reference` package does
//! (`ParseNormalizedNamed`), so a name means the same image here as in docker, podman and
//! skopeo.

use super::error::RegistryError;
use crate::digest::Digest;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Docker Hub's name in references, and where its API really lives.
pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// Old spellings of Docker Hub that distribution normalises to `docker.io`.
const DOCKER_HUB_ALIASES: &[&str] = &["index.docker.io", "registry-1.docker.io"];
const DEFAULT_TAG: &str = "latest";
/// distribution's `NameTotalLengthMax`: registry + "/" + repository.
const NAME_TOTAL_LENGTH_MAX: usize = 255;
const TAG_LENGTH_MAX: usize = 128;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `quay.io`, `localhost:5000`, `[::1]:5000`.
    pub registry: String,
    /// `library/debian`, `a/b`.
    pub repository: String,
    pub tag: Option<String>,
    /// When present, fetching uses the digest, not the tag.
    pub digest: Option<Digest>,
}

impl Reference {
    /// The host (and port) the registry API answers on: Docker Hub's API is not on
    /// `docker.io` itself.
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }

    /// Whether the registry is on this machine (`localhost`, `127.x.x.x`, `[::1]`), where
    /// Docker talks plain HTTP without being told.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.registry)
    }

    /// What to ask the registry for: the digest if there is one, else the tag.
    pub fn tag_or_digest(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

/// See [`Reference::api_host`].
pub(crate) fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_API_HOST
    } else {
        registry
    }
}

/// See [`Reference::is_loopback`]; `registry` may carry a port.
pub(crate) fn is_loopback_host(registry: &str) -> bool {
    let host = host_without_port(registry);
    host.eq_ignore_ascii_case("localhost")
        || host == "[::1]"
        || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// `host` from `host:port`, keeping an IPv6 literal's brackets (`[::1]:5000` → `[::1]`).
fn host_without_port(registry: &str) -> &str {
    if registry.starts_with('[') {
        match registry.find(']') {
            Some(end) => &registry[..=end],
            None => registry,
        }
    } else {
        registry.split(':').next().unwrap_or(registry)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = RegistryError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| RegistryError::InvalidReference {
            reference: text.to_string(),
            reason,
        };
        if text.is_empty() {
            return Err(invalid("it is empty".into()));
        }
        // distribution refuses a bare 64-hex string: it would be ambiguous with an image id.
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(
                "a 64-character hexadecimal string is an image id, not a repository name".into(),
            ));
        }

        let (name_and_tag, digest) = match text.split_once('@') {
            Some((name, digest)) => {
                let digest = digest.parse::<Digest>().map_err(|_| {
                    invalid(format!(
                        "digest {digest:?} is not sha256: followed by 64 lowercase hex digits"
                    ))
                })?;
                (name, Some(digest))
            }
            None => (text, None),
        };

        // A colon starts the tag only after the last slash: `host:5000/a` has no tag.
        let (name, tag) = match name_and_tag.rfind(':') {
            Some(i) if !name_and_tag[i + 1..].contains('/') => {
                (&name_and_tag[..i], Some(&name_and_tag[i + 1..]))
            }
            _ => (name_and_tag, None),
        };
        if let Some(tag) = tag {
            check_tag(tag).map_err(invalid)?;
        }

        let (registry, remainder) = split_registry(name);
        check_registry(registry).map_err(invalid)?;
        let registry = if DOCKER_HUB_ALIASES.contains(&registry) {
            DOCKER_HUB
        } else {
            registry
        };
        // Docker Hub's official images live under `library/`.
        let repository = if registry == DOCKER_HUB && !remainder.contains('/') {
            format!("library/{remainder}")
        } else {
            remainder.to_string()
        };
        check_repository(&repository).map_err(invalid)?;
        if registry.len() + 1 + repository.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(invalid(format!(
                "the name is longer than {NAME_TOTAL_LENGTH_MAX} characters"
            )));
        }

        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(Reference {
            registry: registry.to_string(),
            repository,
            tag,
            digest,
        })
    }
}

/// distribution's `splitDockerDomain`: the first component names a registry only if it
/// looks like a host (has a `.` or `:`, is `localhost`, or has capitals, which a
/// repository never has); otherwise the whole name is on Docker Hub.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DOCKER_HUB, name),
    }
}

/// `host[:port]`, host being DNS labels separated by dots or a bracketed IPv6 literal.
fn check_registry(registry: &str) -> Result<(), String> {
    let bad = || format!("registry {registry:?} is not a valid host[:port]");
    let host = host_without_port(registry);
    let port = &registry[host.len()..];
    if let Some(port) = port.strip_prefix(':') {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
    } else if !port.is_empty() {
        return Err(bad());
    }
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner.strip_suffix(']').is_some_and(|ip| {
            !ip.is_empty() && ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
        })
    } else {
        !host.is_empty() && host.split('.').all(is_dns_label)
    };
    if host_ok { Ok(()) } else { Err(bad()) }
}

fn is_dns_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        }
        _ => false,
    }
}

/// Path components separated by `/`, each matching distribution's
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
pub(crate) fn check_repository(repository: &str) -> Result<(), String> {
    if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("repository name {repository:?} must be lowercase"));
    }
    for component in repository.split('/') {
        if !is_path_component(component) {
            return Err(format!(
                "repository name {repository:?} has an invalid component {component:?}: \
                 components are lowercase letters and digits, separated by '.', '_', '__' \
                 or dashes, and may not start or end with a separator"
            ));
        }
    }
    Ok(())
}

fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        let run = bytes[i..].iter().take_while(|b| alnum(b)).count();
        if run == 0 {
            return false;
        }
        i += run;
        if i == bytes.len() {
            return true;
        }
        let separator = match bytes[i] {
            b'.' => 1,
            b'_' if bytes.get(i + 1) == Some(&b'_') => 2,
            b'_' => 1,
            b'-' => bytes[i..].iter().take_while(|b| **b == b'-').count(),
            _ => return false,
        };
        i += separator;
    }
}

/// `[\w][\w.-]{0,127}`.
pub(crate) fn check_tag(tag: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err("the tag after ':' is empty".into());
    };
    if !word(first) {
        return Err(format!(
            "tag {tag:?} must start with a letter, a digit or '_'"
        ));
    }
    if bytes.len() > TAG_LENGTH_MAX {
        return Err(format!(
            "tag {tag:?} is longer than {TAG_LENGTH_MAX} characters"
        ));
    }
    if let Some(bad) = bytes
        .iter()
        .find(|b| !(word(**b) || **b == b'.' || **b == b'-'))
    {
        return Err(format!(
            "tag {tag:?} has the character {:?}; tags are letters, digits, '_', '.' and '-'",
            char::from(*bad)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parse(text: &str) -> Reference {
        text.parse()
            .unwrap_or_else(|e| panic!("{text} should parse: {e}"))
    }

    fn parts(text: &str) -> (String, String, Option<String>, Option<String>) {
        let r = parse(text);
        (
            r.registry,
            r.repository,
            r.tag,
            r.digest.map(|d| d.to_string()),
        )
    }

    fn error(text: &str) -> String {
        match text.parse::<Reference>() {
            Ok(r) => panic!("{text} should be refused, got {r}"),
            Err(e) => e.to_string(),
        }
    }

    fn s(v: &str) -> String {
        v.to_string()
    }

    #[test]
    fn docker_hub_short_names_get_library_and_latest() {
        assert_eq!(
            parts("debian"),
            (s("docker.io"), s("library/debian"), Some(s("latest")), None)
        );
        assert_eq!(
            parse("debian:bookworm").to_string(),
            "docker.io/library/debian:bookworm"
        );
        assert_eq!(
            parse("someone/app:1.0").to_string(),
            "docker.io/someone/app:1.0"
        );
        assert_eq!(
            parse("docker.io/debian").to_string(),
            "docker.io/library/debian:latest"
        );
        assert_eq!(
            parse("index.docker.io/library/debian:12").to_string(),
            "docker.io/library/debian:12"
        );
        assert_eq!(
            parse("registry-1.docker.io/x/y").to_string(),
            "docker.io/x/y:latest"
        );
    }

    #[test]
    fn first_component_is_a_registry_only_if_it_looks_like_a_host() {
        assert_eq!(parts("quay.io/a/b:t").0, "quay.io");
        assert_eq!(parts("host:5000/a/b:tag").0, "host:5000");
        assert_eq!(parts("host:5000/a/b:tag").1, "a/b");
        assert_eq!(parts("host:5000/a/b:tag").2, Some(s("tag")));
        assert_eq!(parts("localhost/app").0, "localhost");
        assert_eq!(parts("localhost/app").1, "app");
        assert_eq!(parts("Registry/app").0, "Registry");
        assert_eq!(parts("library/app").0, "docker.io");
        assert_eq!(parts("a/b/c/d").1, "a/b/c/d");
        // Not a registry: no dot, colon or "localhost".
        assert_eq!(parts("myhost/app").0, "docker.io");
        assert_eq!(parts("myhost/app").1, "myhost/app");
        assert_eq!(parts("[::1]:5000/app:v").0, "[::1]:5000");
        assert_eq!(parts("[::1]/app").0, "[::1]");
        assert_eq!(parts("127.0.0.1:5000/a").0, "127.0.0.1:5000");
    }

    #[test]
    fn a_colon_before_the_last_slash_is_a_port_not_a_tag() {
        assert_eq!(
            parts("localhost:5000/app"),
            (s("localhost:5000"), s("app"), Some(s("latest")), None)
        );
        // A lone `name:5000` is a Docker Hub repository with a tag, as in docker.
        assert_eq!(
            parts("localhost:5000"),
            (
                s("docker.io"),
                s("library/localhost"),
                Some(s("5000")),
                None
            )
        );
    }

    #[test]
    fn digests_with_and_without_tags() {
        let by_digest = parse(&format!("debian@{D}"));
        assert_eq!(by_digest.tag, None);
        assert_eq!(by_digest.digest.as_ref().map(|d| d.to_string()), Some(s(D)));
        assert_eq!(by_digest.tag_or_digest(), D);
        assert_eq!(
            by_digest.to_string(),
            format!("docker.io/library/debian@{D}")
        );

        let both = parse(&format!("host:5000/a/b:v1@{D}"));
        assert_eq!(both.tag, Some(s("v1")));
        assert_eq!(both.tag_or_digest(), D, "the digest wins for fetching");
        assert_eq!(both.to_string(), format!("host:5000/a/b:v1@{D}"));

        assert_eq!(parse("a:v2").tag_or_digest(), "v2");
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "docker.io/library/debian:bookworm",
            "quay.io/org/app:1.2.3",
            "localhost:5000/a/b:latest",
            "[::1]:5000/x:y",
            &format!("ghcr.io/o/r@{D}"),
            &format!("ghcr.io/o/r:t@{D}"),
        ] {
            assert_eq!(parse(text).to_string(), text);
            assert_eq!(parse(&parse(text).to_string()), parse(text));
        }
    }

    #[test]
    fn repository_component_separators_follow_distribution() {
        for ok in [
            "a.b",
            "a_b",
            "a__b",
            "a-b",
            "a--b",
            "a---b",
            "a1.b2_c3-d4",
            "0",
            "a/b.c/d_e",
        ] {
            assert_eq!(parse(&format!("localhost/{ok}")).repository, ok);
        }
        for bad in [
            "a___b", "a..b", "a._b", "-a", "a-", "_a", "a_", ".a", "a.", "a//b", "a/", "a b", "a+b",
        ] {
            let err = error(&format!("localhost/{bad}"));
            assert!(err.contains("invalid component"), "{bad}: {err}");
        }
    }

    #[test]
    fn invalid_references_say_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("UPPER", "must be lowercase"),
            ("docker.io/Library/x", "must be lowercase"),
            ("a:", "tag after ':' is empty"),
            ("a:-x", "must start with"),
            ("a:.x", "must start with"),
            ("a:x+y", "character '+'"),
            ("a@sha256:abc", "is not sha256:"),
            ("a@md5:0123", "is not sha256:"),
            ("host:port/a", "not a valid host[:port]"),
            ("host:/a", "not a valid host[:port]"),
            ("-host.io/a", "not a valid host[:port]"),
            ("host-.io/a", "not a valid host[:port]"),
            ("a..io/x", "not a valid host[:port]"),
            ("[zz]:5000/a", "not a valid host[:port]"),
            ("[::1/a", "not a valid host[:port]"),
            ("host.io/", "invalid component"),
            ("/a", "invalid component"),
            (
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "image id",
            ),
        ];
        for (text, why) in cases {
            let err = error(text);
            assert!(err.contains(why), "{text:?}: {err}");
            assert!(
                err.contains(&format!("{text:?}")),
                "names the reference: {err}"
            );
        }
    }

    #[test]
    fn length_limits() {
        let long_tag = "t".repeat(129);
        assert!(error(&format!("a:{long_tag}")).contains("longer than 128"));
        assert_eq!(
            parse(&format!("a:{}", "t".repeat(128))).tag.unwrap().len(),
            128
        );
        let long_name = format!("quay.io/{}", "a".repeat(250));
        assert!(error(&long_name).contains("longer than 255"));
        // Hex digits are fine in a repository name of another length.
        assert_eq!(parse("deadbeef").repository, "library/deadbeef");
    }

    #[test]
    fn api_host_and_loopback() {
        assert_eq!(parse("debian").api_host(), "registry-1.docker.io");
        assert_eq!(parse("quay.io/a/b").api_host(), "quay.io");
        assert_eq!(parse("localhost:5000/a").api_host(), "localhost:5000");
        for loopback in [
            "localhost/a",
            "localhost:5000/a",
            "127.0.0.1/a",
            "127.0.0.1:5000/a",
            "127.12.34.56:80/a",
            "[::1]/a",
            "[::1]:5000/a",
        ] {
            assert!(parse(loopback).is_loopback(), "{loopback}");
        }
        for remote in [
            "debian",
            "quay.io/a",
            "128.0.0.1:5000/a",
            "10.0.0.1/a",
            "localhost.example.com/a",
            "[::2]:5000/a",
            "127.0.0.1.nip.io/a",
        ] {
            assert!(!parse(remote).is_loopback(), "{remote}");
        }
    }

    #[test]
    fn host_without_port_keeps_ipv6_brackets() {
        assert_eq!(host_without_port("h:1"), "h");
        assert_eq!(host_without_port("h"), "h");
        assert_eq!(host_without_port("[::1]:5000"), "[::1]");
        assert_eq!(host_without_port("[::1]"), "[::1]");
    }
}
