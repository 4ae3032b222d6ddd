//! Structure checks every image reader applies (oci: layouts, oci-archive:, registry
//! pulls): pure functions over bytes and strings, so each rule has a unit test.
//!
//! The rules and where they come from:
//! - a document is an index or a manifest, never both, and its own `mediaType` agrees
//!   with the descriptor that led to it: CVE-2021-41190 (GHSA-77vh-xpmg-72qh; image-spec
//!   1.0.2 and distribution 2.7.1 made both fields unambiguous for this reason);
//! - a layer's bytes are what its media type says (plain tar, gzip, zstd), checked by the
//!   magic number, as containerd's `compression.DetectCompression` sees them;
//! - `oci-layout`'s `imageLayoutVersion` is a 1.x version (image-layout.md);
//! - `org.opencontainers.image.ref.name` follows the grammar of image-layout.md's
//!   annotations (`ref ::= component ("/" component)*`), else it is not a tag.

use super::ImageError;
use crate::layer::compress::{self, Compression};
use crate::registry::media_types::{self, ManifestKind};

/// What a document's own fields say about it; only presence matters.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct DocumentHead {
    media_type: Option<String>,
    manifests: Option<serde::de::IgnoredAny>,
    layers: Option<serde::de::IgnoredAny>,
    config: Option<serde::de::IgnoredAny>,
}

/// Checks that `bytes`, reached through a descriptor (or a Content-Type) saying
/// `declared`, is an index or a manifest as declared and nothing else. Returns its kind.
pub fn check_document(
    bytes: &[u8],
    declared: &str,
    what: &str,
) -> Result<ManifestKind, ImageError> {
    let Some(kind) = media_types::manifest_kind(declared) else {
        return Err(ImageError::UnsupportedMediaType {
            what: what.to_string(),
            media_type: declared.to_string(),
        });
    };
    let head: DocumentHead = super::parse_json(bytes, what)?;
    let invalid = |message: String| ImageError::Invalid {
        what: what.to_string(),
        message,
    };
    if head.manifests.is_some() && (head.layers.is_some() || head.config.is_some()) {
        return Err(invalid(
            "has both `manifests` and `layers`/`config`; a document that is both an index \
             and a manifest is refused (CVE-2021-41190)"
                .into(),
        ));
    }
    if let Some(own) = &head.media_type
        && own != declared
    {
        return Err(invalid(format!(
            "its mediaType is {own} but its descriptor says {declared}; refused (CVE-2021-41190)"
        )));
    }
    match kind {
        ManifestKind::Index if head.layers.is_some() || head.config.is_some() => Err(invalid(
            format!("is declared {declared} (an index) but has `layers`/`config`"),
        )),
        ManifestKind::Image if head.manifests.is_some() => Err(invalid(format!(
            "is declared {declared} (a manifest) but has `manifests`"
        ))),
        _ => Ok(kind),
    }
}

/// The compression a layer media type declares; `None` for a type xbake does not unpack.
pub fn declared_compression(media_type: &str) -> Option<Compression> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

/// How many leading bytes [`check_layer_bytes`] needs (the longest magic number).
pub const LAYER_MAGIC_LEN: usize = 6;

/// Checks that a layer starting with `head` is compressed as `media_type` says: a plain
/// tar declared `+gzip`, gzip declared `+zstd`, or gzip declared plain are all refused
/// (a reader that trusted either the type or the bytes would see another tree).
pub fn check_layer_bytes(media_type: &str, head: &[u8], what: &str) -> Result<(), ImageError> {
    let Some(declared) = declared_compression(media_type) else {
        return Err(ImageError::UnsupportedMediaType {
            what: what.to_string(),
            media_type: media_type.to_string(),
        });
    };
    let actual = compress::detect(head);
    if actual == declared {
        Ok(())
    } else {
        Err(ImageError::Invalid {
            what: what.to_string(),
            message: format!(
                "its media type {media_type} says {} but its bytes are {}",
                declared.name(),
                actual.name()
            ),
        })
    }
}

/// Checks `oci-layout`: `imageLayoutVersion` must be a 1.x version (image-layout.md:
/// "The imageLayoutVersion value will align with the OCI Image Specification version").
pub fn check_layout_version(bytes: &[u8], what: &str) -> Result<(), ImageError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct OciLayout {
        image_layout_version: String,
    }
    let layout: OciLayout = super::parse_json(bytes, what)?;
    let version = layout.image_layout_version;
    let core = version.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    let numeric = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if parts.len() == 3 && parts[0] == "1" && parts.iter().all(numeric) {
        Ok(())
    } else {
        Err(ImageError::Invalid {
            what: what.to_string(),
            message: format!(
                "imageLayoutVersion {version:?} is not a 1.x version; xbake reads image layout 1.x"
            ),
        })
    }
}

/// Whether `name` is a valid `org.opencontainers.image.ref.name` (image-layout.md):
/// components of `[A-Za-z0-9]+` joined by one of `-._:@+` or by `--`, separated by `/`.
/// A name outside the grammar (empty, a newline, `../x`, a space) is never a tag.
pub fn valid_ref_name(name: &str) -> bool {
    !name.is_empty() && name.split('/').all(valid_component)
}

fn valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let is_sep = |b: u8| b"-._:@+".contains(&b);
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_alphanumeric() {
            i += 1;
        } else if b == b'-' && bytes.get(i + 1) == Some(&b'-') {
            i += 2;
            if !bytes.get(i).is_some_and(u8::is_ascii_alphanumeric) {
                return false;
            }
        } else if is_sep(b) && bytes.get(i + 1).is_some_and(u8::is_ascii_alphanumeric) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use media_types::{DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};

    fn err(r: Result<impl std::fmt::Debug, ImageError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn documents_are_one_thing_of_the_declared_type() {
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        let both = br#"{"schemaVersion":2,"manifests":[],"config":{},"layers":[]}"#;
        assert_eq!(
            check_document(manifest, OCI_MANIFEST, "m").unwrap(),
            ManifestKind::Image
        );
        assert_eq!(
            check_document(index, OCI_INDEX, "i").unwrap(),
            ManifestKind::Index
        );
        let e = err(check_document(both, OCI_MANIFEST, "manifest sha256:x"));
        assert!(
            e.starts_with("manifest sha256:x: has both `manifests` and `layers`"),
            "{e}"
        );
        assert!(err(check_document(both, OCI_INDEX, "i")).contains("CVE-2021-41190"));
        let e = err(check_document(manifest, DOCKER_MANIFEST, "m"));
        assert!(
            e.contains(&format!(
                "its mediaType is {OCI_MANIFEST} but its descriptor says {DOCKER_MANIFEST}"
            )),
            "{e}"
        );
        assert!(err(check_document(manifest, OCI_INDEX, "m")).contains("its mediaType is"));
        let untyped_manifest = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert!(err(check_document(untyped_manifest, OCI_INDEX, "m")).contains("an index"));
        assert!(err(check_document(index, OCI_MANIFEST, "m")).contains("a manifest"));
        assert!(
            err(check_document(index, "application/x-unknown", "m"))
                .contains("unsupported media type application/x-unknown")
        );
    }

    #[test]
    fn layer_bytes_must_match_their_media_type() {
        let gzip = [0x1f, 0x8b, 8, 0, 0, 0];
        let zstd = [0x28, 0xb5, 0x2f, 0xfd, 0, 0];
        let tar = b"etc/\0\0";
        let gz_type = "application/vnd.oci.image.layer.v1.tar+gzip";
        let zst_type = "application/vnd.oci.image.layer.v1.tar+zstd";
        let tar_type = "application/vnd.oci.image.layer.v1.tar";
        assert!(check_layer_bytes(gz_type, &gzip, "l").is_ok());
        assert!(
            check_layer_bytes(
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                &gzip,
                "l"
            )
            .is_ok()
        );
        assert!(check_layer_bytes(zst_type, &zstd, "l").is_ok());
        assert!(check_layer_bytes(tar_type, tar, "l").is_ok());
        assert_eq!(
            err(check_layer_bytes(gz_type, tar, "layer sha256:x")),
            format!(
                "layer sha256:x: its media type {gz_type} says gzip but its bytes are uncompressed"
            )
        );
        assert!(
            err(check_layer_bytes(zst_type, &gzip, "l"))
                .ends_with("says zstd but its bytes are gzip")
        );
        assert!(
            err(check_layer_bytes(tar_type, &gzip, "l"))
                .ends_with("says uncompressed but its bytes are gzip")
        );
        let xz = [0xfd, b'7', b'z', b'X', b'Z', 0];
        assert!(err(check_layer_bytes(gz_type, &xz, "l")).ends_with("bytes are xz"));
        assert!(
            err(check_layer_bytes("application/x-foreign", &gzip, "l"))
                .contains("unsupported media type")
        );
    }

    #[test]
    fn only_layout_version_1_x_is_read() {
        for ok in ["1.0.0", "1.1.0", "1.0.2-rc1", "1.12.3"] {
            let doc = format!(r#"{{"imageLayoutVersion":"{ok}"}}"#);
            assert!(
                check_layout_version(doc.as_bytes(), "oci-layout").is_ok(),
                "{ok}"
            );
        }
        for bad in ["2.0.0", "0.9.0", "1", "1.0", "", "1.x.0", "11.0.0"] {
            let doc = format!(r#"{{"imageLayoutVersion":"{bad}"}}"#);
            let e = err(check_layout_version(doc.as_bytes(), "DIR/oci-layout"));
            assert!(
                e.contains(&format!("imageLayoutVersion {bad:?} is not a 1.x version")),
                "{e}"
            );
        }
        assert!(err(check_layout_version(b"{}", "oci-layout")).contains("invalid JSON"));
    }

    #[test]
    fn ref_names_follow_the_image_layout_grammar() {
        for ok in [
            "latest",
            "1.0",
            "v1.2.3-rc1",
            "stable-2024_01",
            "a--b",
            "example.com/app:1.0",
            "x@y+z",
        ] {
            assert!(valid_ref_name(ok), "{ok}");
        }
        for bad in [
            "",
            "-x",
            "x-",
            "a b",
            "bad\nname",
            "../etc",
            "a//b",
            "/a",
            "a/",
            "a..b",
            "a---b",
            "tag\u{e9}",
            ".hidden",
        ] {
            assert!(!valid_ref_name(bad), "{bad:?}");
        }
    }
}
