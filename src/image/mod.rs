//! OCI images on disk: the content store, image layouts, and choosing a platform's
//! manifest from an index. Types come from `oci-spec`; bytes are always canonical JSON.

pub mod archive;
pub mod checks;
pub mod layout;
pub mod reference;
pub mod regular_file;
pub mod select;
pub mod store;

use crate::digest::{Digest, DigestError};
use oci_spec::image::{Descriptor, MediaType};
use serde::Serialize;
use std::path::PathBuf;

pub use store::BlobStore;

/// One layer of an image: the blob (as stored and pushed) and the digest of its
/// uncompressed content. The one type for base layers, step layers and cached ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Layer {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    pub diff_id: Digest,
}

pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Indexes and manifests are small JSON documents (the registry client reads at most as
/// much); bound what an input can make xbake read or allocate for one.
pub const MANIFEST_SIZE_LIMIT: u64 = 4 * 1024 * 1024;
/// Image configs carry history and environment; still small.
pub const CONFIG_SIZE_LIMIT: u64 = 32 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: invalid JSON: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    #[error("{} exists and is not an OCI image layout (no oci-layout file); refusing to write into it", dir.display())]
    NotALayout { dir: PathBuf },
    #[error("{} has no tag {tag:?}; it has: {}", dir.display(), if available.is_empty() { "no tags".to_string() } else { available.join(", ") })]
    TagNotFound {
        dir: PathBuf,
        tag: String,
        available: Vec<String>,
    },
    #[error("{what} has no image for {platform}; it has: {}", if available.is_empty() { "no platforms".to_string() } else { available.join(", ") })]
    PlatformNotFound {
        what: String,
        platform: String,
        available: Vec<String>,
    },
    #[error("{what}: unsupported media type {media_type}")]
    UnsupportedMediaType { what: String, media_type: String },
    #[error("{} is a {kind}, not a regular file; image files must be regular files inside the layout (symbolic links are never followed)", path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{what} is {size} bytes; more than {limit} is not accepted for it")]
    TooLarge { what: String, size: u64, limit: u64 },
    #[error("{what}: {source}")]
    Layer {
        what: String,
        #[source]
        source: Box<crate::layer::LayerError>,
    },
}

impl ImageError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ImageError {
        let path = path.into();
        move |source| ImageError::Io { path, source }
    }
}

/// Serializes `value` as canonical JSON: compact, object keys sorted. Going through
/// `serde_json::Value` (a BTreeMap without the preserve_order feature) sorts the keys of
/// oci-spec's HashMap fields (labels, annotations, exposed ports), whose iteration order
/// changes from run to run; hashing their direct serialization would make digests random.
pub fn canonical_json<T: Serialize>(value: &T, what: &str) -> Result<Vec<u8>, ImageError> {
    let json = |source| ImageError::Json {
        what: what.to_string(),
        source,
    };
    let tree = serde_json::to_value(value).map_err(json)?;
    serde_json::to_vec(&tree).map_err(json)
}

/// Parses `bytes` as `T`, naming `what` on failure.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|source| ImageError::Json {
        what: what.to_string(),
        source,
    })
}

/// Our digest type from a descriptor's (oci-spec) digest, rejecting non-sha256 ones.
pub fn descriptor_digest(d: &Descriptor) -> Result<Digest, ImageError> {
    Ok(d.digest().to_string().parse::<Digest>()?)
}

/// A descriptor for `digest`/`size` of `media_type`.
pub fn descriptor(
    media_type: MediaType,
    digest: &Digest,
    size: u64,
) -> Result<Descriptor, ImageError> {
    let oci_digest: oci_spec::image::Digest =
        digest
            .to_string()
            .parse()
            .map_err(|e: oci_spec::OciSpecError| ImageError::Invalid {
                what: digest.to_string(),
                message: e.to_string(),
            })?;
    Ok(Descriptor::new(media_type, size, oci_digest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn canonical_json_does_not_depend_on_hashmap_order() {
        let mut seen = std::collections::BTreeSet::new();
        for round in 0..20 {
            let mut labels = HashMap::new();
            for i in 0..20 {
                let k = (i * 7 + round) % 20;
                labels.insert(format!("label{k}"), format!("v{k}"));
            }
            let config = oci_spec::image::ConfigBuilder::default()
                .labels(labels)
                .exposed_ports(vec![
                    "80/tcp".to_string(),
                    "53/udp".to_string(),
                    "8080/tcp".to_string(),
                ])
                .build()
                .unwrap();
            seen.insert(canonical_json(&config, "config").unwrap());
        }
        assert_eq!(seen.len(), 1, "one encoding expected");
        let text = String::from_utf8(seen.into_iter().next().unwrap()).unwrap();
        assert!(text.starts_with(r#"{"ExposedPorts":{"53/udp":{},"80/tcp":{},"8080/tcp":{}},"Labels":{"label0":"v0","label1":"v1","#), "{text}");
    }
}
