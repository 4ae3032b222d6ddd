//! Reading an image (one platform or an index) from an OCI layout, every blob verified
//! (size and digest) and every document checked as the build's readers do (image/checks.rs).

use super::AuditError;
use crate::digest::Digest;
use crate::image::layout::Layout;
use crate::image::reference::LayoutRef;
use crate::image::{CONFIG_SIZE_LIMIT, ImageError, descriptor_digest, parse_json};
use crate::registry::media_types::{ManifestKind, manifest_kind};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use std::path::PathBuf;

#[derive(Clone, Debug)]
pub struct LoadedLayer {
    pub digest: Digest,
    pub diff_id: Option<Digest>,
    pub size: u64,
    /// As the manifest gives it (`…tar+gzip`, `…tar+zstd`, `…tar`, Docker's).
    pub media_type: String,
}

#[derive(Clone, Debug)]
pub struct LoadedPlatform {
    /// `linux/arm64`, `linux/arm/v7`.
    pub platform: String,
    pub manifest_digest: Digest,
    pub config: serde_json::Value,
    pub layers: Vec<LoadedLayer>,
}

#[derive(Clone, Debug)]
pub struct LoadedImage {
    pub name: String,
    /// The digest of what the reference points at (an index or a manifest).
    pub digest: Digest,
    pub media_type: String,
    /// The exact bytes of that index or manifest.
    pub raw: Vec<u8>,
    pub platforms: Vec<LoadedPlatform>,
    /// Where the blobs are.
    pub blobs: PathBuf,
}

pub fn load(reference: &LayoutRef) -> Result<LoadedImage, AuditError> {
    let name = reference.to_string();
    let image_err = |source: ImageError| AuditError::Image {
        what: name.clone(),
        source,
    };
    let layout = Layout::open(&reference.dir).map_err(image_err)?;
    let top = layout
        .resolve(reference.tag.as_deref())
        .map_err(image_err)?;
    let (raw, digest, kind) = layout.read_document(&top).map_err(image_err)?;
    let media_type = top.media_type().to_string();
    let manifests: Vec<Descriptor> = if kind == ManifestKind::Index {
        let index: ImageIndex = parse_json(&raw, "image index").map_err(image_err)?;
        // Entries that are not image manifests (attestations, artifacts) are skipped.
        index
            .manifests()
            .iter()
            .filter(|d| manifest_kind(d.media_type().as_ref()) == Some(ManifestKind::Image))
            .filter(|d| !crate::attest::manifest::is_attestation_entry(d))
            .cloned()
            .collect()
    } else {
        vec![top]
    };
    let mut platforms = Vec::new();
    for desc in manifests {
        let (manifest_bytes, manifest_digest, _) =
            layout.read_document(&desc).map_err(image_err)?;
        let manifest_what = format!("image manifest {manifest_digest}");
        let manifest: ImageManifest =
            parse_json(&manifest_bytes, &manifest_what).map_err(image_err)?;
        let config_digest = descriptor_digest(manifest.config()).map_err(image_err)?;
        let config: serde_json::Value = layout
            .read_json(
                &config_digest,
                manifest.config().size(),
                CONFIG_SIZE_LIMIT,
                "image config",
            )
            .map_err(image_err)?;
        let platform = platform_name(&config);
        let diff_ids: Vec<Option<Digest>> = config["rootfs"]["diff_ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|d| d.as_str().and_then(|s| s.parse().ok()))
                    .collect()
            })
            .unwrap_or_default();
        let layers = manifest
            .layers()
            .iter()
            .enumerate()
            .map(|(i, l)| {
                Ok(LoadedLayer {
                    digest: descriptor_digest(l)?,
                    diff_id: diff_ids.get(i).cloned().flatten(),
                    size: l.size(),
                    media_type: l.media_type().to_string(),
                })
            })
            .collect::<Result<Vec<_>, ImageError>>()
            .map_err(image_err)?;
        platforms.push(LoadedPlatform {
            platform,
            manifest_digest,
            config,
            layers,
        });
    }
    Ok(LoadedImage {
        name,
        digest,
        media_type,
        raw,
        platforms,
        blobs: reference.dir.join("blobs/sha256"),
    })
}

/// `os/architecture[/variant]` from an image config.
pub fn platform_name(config: &serde_json::Value) -> String {
    let os = config["os"].as_str().unwrap_or("?");
    let arch = config["architecture"].as_str().unwrap_or("?");
    match config["variant"].as_str() {
        Some(v) if !v.is_empty() => format!("{os}/{arch}/{v}"),
        _ => format!("{os}/{arch}"),
    }
}
