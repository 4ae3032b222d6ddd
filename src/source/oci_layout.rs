//! `oci:DIR[:tag]`: a base image from a local OCI layout, e.g. one saved with
//! `skopeo copy` or built by xbake. Blobs are hard-linked into the build's store and
//! verified when unpacked; the layers are reused byte for byte.

use super::{BaseImage, BaseLayer, SourceError};
use crate::image::layout::Layout;
use crate::image::select::select_manifest;
use crate::image::{BlobStore, ImageError, descriptor_digest, parse_json};
use crate::platform::Platform;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use std::path::Path;

const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Layer media types xbake can unpack, and the OCI name each is recorded under in the
/// new manifest (the bytes are identical; only Docker's name differs).
pub(super) fn layer_media_type(media_type: &str) -> Option<&'static str> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            Some("application/vnd.oci.image.layer.v1.tar+gzip")
        }
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => {
            Some("application/vnd.oci.image.layer.v1.tar+zstd")
        }
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => {
            Some("application/vnd.oci.image.layer.v1.tar")
        }
        _ => None,
    }
}

pub fn load(
    dir: &Path,
    tag: Option<&str>,
    reference: &str,
    platform: &Platform,
    store: &BlobStore,
) -> Result<BaseImage, SourceError> {
    let image_err = |source: ImageError| SourceError::Image {
        reference: reference.to_string(),
        source,
    };
    let invalid = |message: String| SourceError::Invalid {
        reference: reference.to_string(),
        message,
    };
    let layout = Layout::open(dir).map_err(image_err)?;
    let mut desc = layout.resolve(tag).map_err(image_err)?;
    let top_type = desc.media_type().to_string();
    if top_type == OCI_INDEX || top_type == DOCKER_MANIFEST_LIST {
        let bytes = layout
            .store()
            .read_bytes(&descriptor_digest(&desc).map_err(image_err)?)
            .map_err(image_err)?;
        let index: ImageIndex = parse_json(&bytes, "image index").map_err(image_err)?;
        desc = select_manifest(&index, platform, reference).map_err(image_err)?;
    }
    let manifest_type = desc.media_type().to_string();
    if manifest_type != OCI_MANIFEST && manifest_type != DOCKER_MANIFEST {
        return Err(image_err(ImageError::UnsupportedMediaType {
            what: reference.to_string(),
            media_type: manifest_type,
        }));
    }
    let manifest_digest = descriptor_digest(&desc).map_err(image_err)?;
    let manifest: ImageManifest = layout
        .read_json(&manifest_digest, "image manifest")
        .map_err(image_err)?;
    let config_digest = descriptor_digest(manifest.config()).map_err(image_err)?;
    let config: ImageConfiguration = layout
        .read_json(&config_digest, "image config")
        .map_err(image_err)?;
    let arch = config.architecture().to_string();
    if config.os().to_string() != platform.os() || arch != platform.oci_arch() {
        return Err(invalid(format!(
            "the image is for {}/{arch}, not {platform}",
            config.os()
        )));
    }
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(invalid(format!(
            "the config lists {} diff_ids for {} layers",
            diff_ids.len(),
            manifest.layers().len()
        )));
    }
    let mut layers = Vec::new();
    for (d, diff_id) in manifest.layers().iter().zip(diff_ids) {
        let media_type = layer_media_type(d.media_type().as_ref()).ok_or_else(|| {
            image_err(ImageError::UnsupportedMediaType {
                what: format!("layer {}", d.digest()),
                media_type: d.media_type().to_string(),
            })
        })?;
        let digest = descriptor_digest(d).map_err(image_err)?;
        layout
            .store()
            .export_to(&digest, store)
            .map_err(image_err)?;
        layers.push(BaseLayer {
            digest,
            size: d.size(),
            media_type: media_type.to_string(),
            diff_id: diff_id
                .parse()
                .map_err(|e| image_err(ImageError::Digest(e)))?,
        });
    }
    Ok(BaseImage {
        layers,
        config: Some(config),
        manifest_digest: Some(manifest_digest),
    })
}
