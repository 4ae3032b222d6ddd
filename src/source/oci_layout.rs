//! `oci:DIR[:tag]`: a base image from a local OCI layout, e.g. one saved with
//! `skopeo copy` or built by xbake. The layout is input like any other: every file is a
//! regular file opened without following symlinks, every read is bounded by and checked
//! against its descriptor's size, documents are checked for structure and media type
//! (image/checks.rs), and each layer is verified (size, digest, compression) on its way
//! into the build's store. The layers are reused byte for byte.

use super::{BaseImage, BaseLayer, DockerConfig, SourceError};
use crate::image::layout::Layout;
use crate::image::select::{config_matches_entry, describe, describe_fields, select_manifest};
use crate::image::{
    BlobStore, CONFIG_SIZE_LIMIT, ImageError, checks, descriptor_digest, parse_json,
};
use crate::layer::Compression;
use crate::platform::Platform;
use crate::registry::media_types::{ManifestKind, is_supported_config};
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use std::path::Path;

/// Layer media types xbake can unpack, and the OCI name each is recorded under in the
/// new manifest (the bytes are identical; only Docker's name differs).
pub(super) fn layer_media_type(media_type: &str) -> Option<&'static str> {
    Some(match checks::declared_compression(media_type)? {
        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        Compression::None => "application/vnd.oci.image.layer.v1.tar",
        Compression::Xz => return None,
    })
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
    let mut warnings = Vec::new();
    let (mut manifest_bytes, mut manifest_digest, top_kind) =
        layout.read_document(&desc).map_err(image_err)?;
    // The entry that led to the manifest: its platform is what the config must say.
    let mut from_index = false;
    if top_kind == ManifestKind::Index {
        let top_what = format!("{} {manifest_digest}", desc.media_type());
        let index: ImageIndex = parse_json(&manifest_bytes, &top_what).map_err(image_err)?;
        let selected = select_manifest(&index, platform, reference).map_err(image_err)?;
        warnings.extend(selected.warnings);
        desc = selected.descriptor;
        from_index = true;
        let kind;
        (manifest_bytes, manifest_digest, kind) = layout.read_document(&desc).map_err(image_err)?;
        if kind != ManifestKind::Image {
            return Err(invalid(format!(
                "image manifest {manifest_digest} is an index inside an index; xbake reads one level"
            )));
        }
    }
    let manifest_what = format!("image manifest {manifest_digest}");
    let manifest: ImageManifest = parse_json(&manifest_bytes, &manifest_what).map_err(image_err)?;
    let config_desc = manifest.config();
    if !is_supported_config(config_desc.media_type().as_ref()) {
        return Err(image_err(ImageError::UnsupportedMediaType {
            what: format!("the config of {manifest_what}"),
            media_type: config_desc.media_type().to_string(),
        }));
    }
    let config_digest = descriptor_digest(config_desc).map_err(image_err)?;
    // One bounded, verified read; parsed for OCI's fields and for docker's (see
    // docker_config.rs).
    let config_bytes = layout
        .store()
        .read_sized(
            &config_digest,
            config_desc.size(),
            CONFIG_SIZE_LIMIT,
            "image config",
        )
        .map_err(image_err)?;
    let config_what = format!("image config {config_digest}");
    let config: ImageConfiguration = parse_json(&config_bytes, &config_what).map_err(image_err)?;
    let docker: DockerConfig = parse_json(&config_bytes, &config_what).map_err(image_err)?;
    check_config_platform(&config, &desc, from_index, platform).map_err(invalid)?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(invalid(format!(
            "the config lists {} diff_ids for {} layers",
            diff_ids.len(),
            manifest.layers().len()
        )));
    }
    let mut layers = Vec::new();
    let count = manifest.layers().len();
    for (i, (d, diff_id)) in manifest.layers().iter().zip(diff_ids).enumerate() {
        let what = format!("layer {}/{count}", i + 1);
        let media_type = layer_media_type(d.media_type().as_ref()).ok_or_else(|| {
            image_err(ImageError::UnsupportedMediaType {
                what: format!("{what} ({})", d.digest()),
                media_type: d.media_type().to_string(),
            })
        })?;
        let digest = descriptor_digest(d).map_err(image_err)?;
        layout
            .store()
            .import_verified(&digest, d.size(), store, &what)
            .map_err(image_err)?;
        store
            .check_layer_compression(
                &digest,
                d.size(),
                d.media_type().as_ref(),
                &format!("{what} {digest}"),
            )
            .map_err(image_err)?;
        layers.push(BaseLayer {
            digest,
            // Verified equal to the blob's real size by the import above.
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
        docker,
        manifest_digest: Some(manifest_digest),
        warnings,
    })
}

/// The config must be for the index entry that led to it (a manifest listed as arm64
/// whose config says amd64 is refused, not run under the wrong emulator); a manifest
/// named directly must be for the platform asked for (variants as when choosing).
fn check_config_platform(
    config: &ImageConfiguration,
    entry: &Descriptor,
    from_index: bool,
    platform: &Platform,
) -> Result<(), String> {
    let (os, arch) = (config.os().to_string(), config.architecture().to_string());
    let variant = config.variant().as_deref();
    let image = describe_fields(&os, &arch, variant);
    if from_index && !config_matches_entry(entry, &os, &arch, variant) {
        return Err(format!(
            "the index lists image manifest {} as {} but its config says {image}",
            entry.digest(),
            describe(entry)
        ));
    }
    if os != platform.os() || arch != platform.oci_arch() {
        return Err(format!("the image is for {image}, not {platform}"));
    }
    Ok(())
}
