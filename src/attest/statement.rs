//! An in-toto Statement v1 (https://in-toto.io/Statement/v1): the envelope both the
//! provenance and the SBOM travel in, naming the platform manifest they describe.

use crate::digest::Digest;
use crate::platform::Platform;
use serde_json::{Value, json};

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";

/// The subject's name as BuildKit writes it: `pkg:docker/NAME@TAG?platform=linux%2Farm64`,
/// or `_` when the image has no name (an unnamed layout output).
pub fn subject_name(image_name: Option<&str>, platform: &Platform) -> String {
    let Some(name) = image_name else {
        return "_".into();
    };
    // A purl separates the version with @; a tag's colon is the image's version. An
    // image pushed by digest alone has no tag: its purl has no version.
    let platform = platform.to_string().replace('/', "%2F");
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => {
            format!("pkg:docker/{repo}@{tag}?platform={platform}")
        }
        _ => format!("pkg:docker/{name}?platform={platform}"),
    }
}

/// The image name a subject carries: the inverse of [`subject_name`] (None for `_`).
pub fn image_name_of(subject: &str) -> Option<String> {
    let purl = subject.strip_prefix("pkg:docker/")?;
    let purl = purl.split_once('?').map_or(purl, |(p, _)| p);
    Some(match purl.rsplit_once('@') {
        Some((name, version)) => format!("{name}:{version}"),
        None => purl.to_string(),
    })
}

/// The statement about one platform manifest.
pub fn statement(
    subject: &str,
    manifest: &Digest,
    predicate_type: &str,
    predicate: Value,
) -> Value {
    json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": subject, "digest": {"sha256": manifest.hex()}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_named_as_buildkit_names_them() {
        let arm64: Platform = "linux/arm64".parse().unwrap();
        assert_eq!(
            subject_name(Some("127.0.0.1:5000/app:1"), &arm64),
            "pkg:docker/127.0.0.1:5000/app@1?platform=linux%2Farm64"
        );
        assert_eq!(
            subject_name(Some("127.0.0.1:5000/app"), &arm64),
            "pkg:docker/127.0.0.1:5000/app?platform=linux%2Farm64"
        );
        let by_digest = subject_name(Some("127.0.0.1:5000/app"), &arm64);
        assert_eq!(
            image_name_of(&by_digest).as_deref(),
            Some("127.0.0.1:5000/app")
        );
        assert_eq!(subject_name(None, &arm64), "_");
        let name = subject_name(Some("127.0.0.1:5000/app:1"), &arm64);
        assert_eq!(
            image_name_of(&name).as_deref(),
            Some("127.0.0.1:5000/app:1")
        );
        assert_eq!(image_name_of("_"), None);
    }

    #[test]
    fn a_statement_names_its_subject_by_sha256() {
        let d = Digest::of(b"manifest");
        let s = statement("_", &d, "https://slsa.dev/provenance/v1", json!({}));
        assert_eq!(s["subject"][0]["digest"]["sha256"], d.hex());
        assert_eq!(s["_type"], STATEMENT_TYPE);
    }
}
