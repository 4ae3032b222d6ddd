//! The media types xbake reads and writes from registries: OCI image-spec
//! (`media-types.md`) and Docker's image manifest v2 schema 2, which predates it and is
//! still what many registries serve.

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
];

/// The `Accept` header for manifest GETs: without it a registry may answer with the
/// deprecated schema 1 or with only one platform of a multi-platform image.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestKind {
    /// An OCI image index or a Docker manifest list: one manifest per platform.
    Index,
    /// An OCI image manifest or a Docker schema 2 manifest: config and layers.
    Image,
}

pub fn manifest_kind(media_type: &str) -> Option<ManifestKind> {
    match media_type {
        OCI_INDEX | DOCKER_MANIFEST_LIST => Some(ManifestKind::Index),
        OCI_MANIFEST | DOCKER_MANIFEST => Some(ManifestKind::Image),
        _ => None,
    }
}

pub fn is_supported_layer(media_type: &str) -> bool {
    LAYER_TYPES.contains(&media_type)
}

pub fn is_supported_config(media_type: &str) -> bool {
    media_type == OCI_CONFIG || media_type == DOCKER_CONFIG
}

/// The media type of manifest bytes a registry sent: its `Content-Type` when that is a
/// manifest type; else the document's own `mediaType`; else, for a schema 2 document
/// without one (the OCI spec only says SHOULD), what its fields show. An unsupported answer
/// (e.g. schema 1's `…manifest.v1+prettyjws`) is returned as is for the caller to refuse.
pub fn detect_manifest_media_type(content_type: Option<&str>, bytes: &[u8]) -> String {
    let content_type = content_type
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or(ct)
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|ct| !ct.is_empty());
    if let Some(ct) = &content_type
        && manifest_kind(ct).is_some()
    {
        return ct.clone();
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Head {
        schema_version: Option<u64>,
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
        config: Option<serde::de::IgnoredAny>,
    }
    if let Ok(head) = serde_json::from_slice::<Head>(bytes) {
        if let Some(media_type) = head.media_type {
            return media_type;
        }
        if head.schema_version == Some(2) {
            if head.manifests.is_some() {
                return OCI_INDEX.to_string();
            }
            if head.config.is_some() {
                return OCI_MANIFEST.to_string();
            }
        }
    }
    content_type.unwrap_or_else(|| "(none)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(manifest_kind(OCI_INDEX), Some(ManifestKind::Index));
        assert_eq!(
            manifest_kind(DOCKER_MANIFEST_LIST),
            Some(ManifestKind::Index)
        );
        assert_eq!(manifest_kind(OCI_MANIFEST), Some(ManifestKind::Image));
        assert_eq!(manifest_kind(DOCKER_MANIFEST), Some(ManifestKind::Image));
        assert_eq!(
            manifest_kind("application/vnd.docker.distribution.manifest.v1+prettyjws"),
            None
        );
        for accepted in MANIFEST_ACCEPT.split(", ") {
            assert!(manifest_kind(accepted).is_some(), "{accepted}");
        }
    }

    #[test]
    fn layers_and_configs() {
        assert!(is_supported_layer(
            "application/vnd.oci.image.layer.v1.tar+zstd"
        ));
        assert!(is_supported_layer(
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        ));
        assert!(!is_supported_layer(
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
        ));
        assert!(!is_supported_layer(
            "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
        ));
        assert!(is_supported_config(DOCKER_CONFIG));
        assert!(!is_supported_config(
            "application/vnd.cncf.helm.config.v1+json"
        ));
    }

    #[test]
    fn detection_prefers_content_type_then_document() {
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        let manifest = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        let typed = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#;
        assert_eq!(
            detect_manifest_media_type(
                Some("application/vnd.oci.image.index.v1+json; charset=utf-8"),
                b"{}"
            ),
            OCI_INDEX
        );
        assert_eq!(
            detect_manifest_media_type(Some("application/json"), typed),
            DOCKER_MANIFEST_LIST
        );
        assert_eq!(detect_manifest_media_type(None, index), OCI_INDEX);
        assert_eq!(
            detect_manifest_media_type(Some("text/plain"), manifest),
            OCI_MANIFEST
        );
        let schema1 = br#"{"schemaVersion":1,"fsLayers":[]}"#;
        assert_eq!(
            detect_manifest_media_type(
                Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
                schema1
            ),
            "application/vnd.docker.distribution.manifest.v1+prettyjws"
        );
        assert_eq!(detect_manifest_media_type(None, b"not json"), "(none)");
    }
}
