//! Where a registry's API is: the scheme (HTTPS unless the registry is on this machine or
//! the user said it may be plain HTTP) and URL building for the distribution spec's
//! endpoints (`/v2/<name>/manifests/<reference>`, `/v2/<name>/blobs/<digest>`, …).

use super::reference::{api_host, is_loopback_host};

/// How xbake may reach registries other than Docker Hub over the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryOptions {
    /// `false` (`--tls-verify=false`): the registry being talked to is reached over plain
    /// HTTP.
    pub tls_verify: bool,
    /// Registries (`host[:port]`, as in references) always reached over plain HTTP, like
    /// Docker's `insecure-registries`.
    pub insecure_registries: Vec<String>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            tls_verify: true,
            insecure_registries: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Plain HTTP for loopback registries (Docker's default: 127.0.0.0/8 is always insecure,
/// see dockerd's `--insecure-registry` documentation), for `--tls-verify=false` and for
/// registries listed as insecure; HTTPS everywhere else.
pub fn scheme_for(registry: &str, opts: &RegistryOptions) -> Scheme {
    let listed = opts
        .insecure_registries
        .iter()
        .any(|r| r.eq_ignore_ascii_case(registry));
    if is_loopback_host(registry) || !opts.tls_verify || listed {
        Scheme::Http
    } else {
        Scheme::Https
    }
}

/// `https://registry-1.docker.io`, `http://127.0.0.1:5000`: what API paths are appended to.
pub(crate) fn base_url(registry: &str, opts: &RegistryOptions) -> String {
    format!(
        "{}://{}",
        scheme_for(registry, opts).as_str(),
        api_host(registry)
    )
}

/// The distribution spec's endpoint paths for one repository.
#[derive(Clone, Debug)]
pub(crate) struct Endpoints {
    base: String,
    repository: String,
}

impl Endpoints {
    pub fn new(base: String, repository: &str) -> Endpoints {
        Endpoints {
            base,
            repository: repository.to_string(),
        }
    }

    /// `/v2/`: the API version check (spec "Determining support").
    pub fn version_check(&self) -> String {
        format!("{}/v2/", self.base)
    }

    /// A manifest by tag or digest (both validated, so no escaping is needed).
    pub fn manifest(&self, tag_or_digest: &str) -> String {
        format!(
            "{}/v2/{}/manifests/{}",
            self.base, self.repository, tag_or_digest
        )
    }

    pub fn blob(&self, digest: &impl std::fmt::Display) -> String {
        format!("{}/v2/{}/blobs/{}", self.base, self.repository, digest)
    }

    /// The referrers list of a manifest (distribution spec 1.1, "Listing Referrers").
    pub fn referrers(&self, digest: &impl std::fmt::Display) -> String {
        format!("{}/v2/{}/referrers/{}", self.base, self.repository, digest)
    }

    /// Where uploads (and cross-repository mounts) start: spec "Pushing blobs".
    pub fn uploads(&self) -> String {
        format!("{}/v2/{}/blobs/uploads/", self.base, self.repository)
    }

    /// An upload's `Location` header made absolute: the spec allows a path or a full URL.
    pub fn resolve_location(&self, location: &str) -> Option<String> {
        if location.starts_with("http://") || location.starts_with("https://") {
            Some(location.to_string())
        } else if location.starts_with('/') {
            Some(format!("{}{}", self.base, location))
        } else {
            None
        }
    }
}

/// Whether `url` points at the same scheme, host and port as `base`: credentials are only
/// ever sent there (a token realm aside, which the registry names).
pub(crate) fn same_origin(base: &str, url: &str) -> bool {
    url == base
        || url
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('?'))
}

/// `url` with `params` appended to its query, values percent-encoded (RFC 3986 §2.3:
/// everything but unreserved characters).
pub(crate) fn with_query(url: &str, params: &[(&str, &str)]) -> String {
    let mut out = url.to_string();
    for (i, (name, value)) in params.iter().enumerate() {
        let separator = if i == 0 && !url.contains('?') {
            '?'
        } else {
            '&'
        };
        out.push(separator);
        out.push_str(&percent_encode(name));
        out.push('=');
        out.push_str(&percent_encode(value));
    }
    out
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(tls_verify: bool, insecure: &[&str]) -> RegistryOptions {
        RegistryOptions {
            tls_verify,
            insecure_registries: insecure.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn https_by_default_http_for_loopback_and_insecure() {
        let default = RegistryOptions::default();
        assert_eq!(scheme_for("quay.io", &default), Scheme::Https);
        assert_eq!(scheme_for("docker.io", &default), Scheme::Https);
        assert_eq!(scheme_for("10.1.2.3:5000", &default), Scheme::Https);
        for loopback in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.9.9.9",
            "[::1]:5000",
        ] {
            assert_eq!(scheme_for(loopback, &default), Scheme::Http, "{loopback}");
        }
        assert_eq!(scheme_for("quay.io", &opts(false, &[])), Scheme::Http);
        let listed = opts(true, &["reg.lan:5000"]);
        assert_eq!(scheme_for("reg.lan:5000", &listed), Scheme::Http);
        assert_eq!(scheme_for("REG.lan:5000", &listed), Scheme::Http);
        assert_eq!(
            scheme_for("reg.lan", &listed),
            Scheme::Https,
            "the port is part of the name"
        );
        assert_eq!(scheme_for("reg.lan:5001", &listed), Scheme::Https);
    }

    #[test]
    fn base_urls_use_the_api_host() {
        let default = RegistryOptions::default();
        assert_eq!(
            base_url("docker.io", &default),
            "https://registry-1.docker.io"
        );
        assert_eq!(
            base_url("127.0.0.1:5000", &default),
            "http://127.0.0.1:5000"
        );
    }

    #[test]
    fn endpoint_paths_and_locations() {
        let e = Endpoints::new("http://h:1".into(), "a/b");
        assert_eq!(e.manifest("v1"), "http://h:1/v2/a/b/manifests/v1");
        assert_eq!(e.blob(&"sha256:00"), "http://h:1/v2/a/b/blobs/sha256:00");
        assert_eq!(e.uploads(), "http://h:1/v2/a/b/blobs/uploads/");
        assert_eq!(e.version_check(), "http://h:1/v2/");
        assert_eq!(
            e.resolve_location("/v2/a/b/blobs/uploads/u?_state=x")
                .as_deref(),
            Some("http://h:1/v2/a/b/blobs/uploads/u?_state=x")
        );
        assert_eq!(
            e.resolve_location("https://other/x").as_deref(),
            Some("https://other/x")
        );
        assert_eq!(e.resolve_location("relative"), None);
    }

    #[test]
    fn query_values_are_encoded_and_appended() {
        assert_eq!(
            with_query(
                "http://h/t",
                &[("scope", "repository:a/b:pull,push"), ("service", "s s")]
            ),
            "http://h/t?scope=repository%3Aa%2Fb%3Apull%2Cpush&service=s%20s"
        );
        assert_eq!(
            with_query("http://h/u?_state=x", &[("digest", "sha256:0")]),
            "http://h/u?_state=x&digest=sha256%3A0"
        );
        assert_eq!(with_query("http://h/u", &[]), "http://h/u");
    }

    #[test]
    fn same_origin_needs_a_path_boundary() {
        assert!(same_origin("http://h:1", "http://h:1/v2/"));
        assert!(same_origin("http://h:1", "http://h:1"));
        assert!(!same_origin("http://h:1", "http://h:10/v2/"));
        assert!(!same_origin("http://h", "http://h.evil.com/"));
        assert!(!same_origin("http://h:1", "https://h:1/v2/"));
        assert!(!same_origin("http://h:1", "http://other/v2/"));
    }
}
