//! One error type for everything that talks to a registry. Each message names the
//! registry, the reference it was working on and what the registry answered, so a user can
//! tell a typo from a missing login from a hostile server without a debugger.

use crate::digest::Digest;
use crate::image::ImageError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },

    #[error(
        "{reference}: registry {registry} answered 401 Unauthorized{detail}; {}",
        unauthorized_advice(.registry, .user.as_deref())
    )]
    Unauthorized {
        registry: String,
        reference: String,
        detail: String,
        /// The user name xbake sent credentials for, if it sent any.
        user: Option<String>,
    },

    #[error("{reference}: registry {registry} answered 404: manifest unknown{detail}")]
    ManifestUnknown {
        registry: String,
        reference: String,
        detail: String,
    },

    #[error("{reference}: registry {registry} answered 404: blob unknown{detail}")]
    BlobUnknown {
        registry: String,
        reference: String,
        detail: String,
    },

    #[error("{reference}: registry {registry} answered {status} to {operation}{detail}")]
    Status {
        registry: String,
        reference: String,
        operation: String,
        status: u16,
        detail: String,
    },

    #[error(
        "{reference}: registry {registry} sent {what} whose digest is {actual}, not the \
         expected {expected}; nothing was stored"
    )]
    DigestMismatch {
        registry: String,
        reference: String,
        what: String,
        expected: Digest,
        actual: Digest,
    },

    #[error(
        "{reference}: registry {registry} stored the pushed manifest as {stored}, but the \
         bytes sent hash to {sent}: it changed them"
    )]
    StoredDigestMismatch {
        registry: String,
        reference: String,
        sent: Digest,
        stored: Digest,
    },

    #[error(
        "{reference}: registry {registry} sent {what} of {actual} bytes, not the expected \
         {expected}; nothing was stored"
    )]
    SizeMismatch {
        registry: String,
        reference: String,
        what: String,
        expected: u64,
        actual: u64,
    },

    #[error(
        "{reference}: {what} from registry {registry} has unsupported media type {media_type:?}"
    )]
    UnsupportedMediaType {
        registry: String,
        reference: String,
        what: String,
        media_type: String,
    },

    #[error("{reference}: {what} from registry {registry} is larger than the {limit}-byte limit")]
    TooLarge {
        registry: String,
        reference: String,
        what: String,
        limit: u64,
    },

    #[error("{reference} has no image for {platform}; it has: {}", if available.is_empty() { "no platforms".to_string() } else { available.join(", ") })]
    PlatformNotFound {
        reference: String,
        platform: String,
        available: Vec<String>,
    },

    #[error("{reference}: registry {registry} sent an invalid answer: {message}")]
    InvalidResponse {
        registry: String,
        reference: String,
        message: String,
    },

    #[error(
        "{reference}: cannot connect to {url}: connection refused; is a registry running at {url}?"
    )]
    ConnectionRefused { reference: String, url: String },

    #[error(
        "{reference}: TLS error talking to registry {registry}: {message}; if this registry \
         serves plain HTTP or a certificate you cannot verify, and only if you trust it, use \
         --tls-verify=false"
    )]
    Tls {
        registry: String,
        reference: String,
        message: String,
    },

    #[error("{reference}: request to registry {registry} failed: {source}")]
    Transport {
        registry: String,
        reference: String,
        #[source]
        source: ureq::Error,
    },

    #[error("{reference}: {source}")]
    Store {
        reference: String,
        #[source]
        source: ImageError,
    },

    #[error("auth file {}: {message}", path.display())]
    AuthFile { path: PathBuf, message: String },

    #[error("auth file {}: {source}", path.display())]
    AuthFileIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "no place for credentials: set REGISTRY_AUTH_FILE, XDG_RUNTIME_DIR or HOME to choose \
         the auth file"
    )]
    NoAuthFile,
}

impl RegistryError {
    /// The same error, naming `reference` (what the user gave) instead of the object a
    /// request was about: a push's blobs and platform manifests are sent by digest, and
    /// `127.0.0.1:5000/app@sha256:…` in an error says less than `127.0.0.1:5000/app:1`.
    pub fn pushing_to(self, reference: &str) -> RegistryError {
        use RegistryError::*;
        let mut this = self;
        match &mut this {
            Unauthorized { reference: r, .. }
            | ManifestUnknown { reference: r, .. }
            | BlobUnknown { reference: r, .. }
            | Status { reference: r, .. }
            | DigestMismatch { reference: r, .. }
            | StoredDigestMismatch { reference: r, .. }
            | SizeMismatch { reference: r, .. }
            | UnsupportedMediaType { reference: r, .. }
            | TooLarge { reference: r, .. }
            | PlatformNotFound { reference: r, .. }
            | InvalidResponse { reference: r, .. }
            | ConnectionRefused { reference: r, .. }
            | Tls { reference: r, .. }
            | Transport { reference: r, .. }
            | Store { reference: r, .. } => {
                if r != reference {
                    // What the request was about stays, after the name given.
                    let about = r.rsplit_once('@').map_or(r.as_str(), |(_, d)| d);
                    *r = format!("{reference} (pushing {about})");
                }
            }
            InvalidReference { .. } | AuthFile { .. } | AuthFileIo { .. } | NoAuthFile => {}
        }
        this
    }
}

/// With no credentials sent, the way to give some; with credentials sent, that the
/// registry refused them (a login would not help until they are right).
fn unauthorized_advice(registry: &str, user: Option<&str>) -> String {
    match user {
        None => format!("if it needs credentials, run `xbake login {registry}`"),
        Some(user) => format!(
            "it rejected the user name {user:?} or its password: check them (`xbake login \
             {registry}` replaces the stored ones)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::RegistryError;

    #[test]
    fn a_push_error_names_the_reference_given_then_what_it_was_sending() {
        let blob = RegistryError::Unauthorized {
            registry: "127.0.0.1:5000".into(),
            reference: "127.0.0.1:5000/app@sha256:ab12".into(),
            detail: String::new(),
            user: None,
        };
        let message = blob.pushing_to("127.0.0.1:5000/app:1").to_string();
        assert!(
            message.starts_with(
                "127.0.0.1:5000/app:1 (pushing sha256:ab12): registry 127.0.0.1:5000 answered 401"
            ),
            "{message}"
        );
        // The tag itself: named once.
        let top = RegistryError::Status {
            registry: "127.0.0.1:5000".into(),
            reference: "127.0.0.1:5000/app:1".into(),
            operation: "PUT manifest".into(),
            status: 500,
            detail: String::new(),
        };
        let message = top.pushing_to("127.0.0.1:5000/app:1").to_string();
        assert!(
            message.starts_with("127.0.0.1:5000/app:1: registry"),
            "{message}"
        );
    }
}
