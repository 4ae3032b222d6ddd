//! `oci-archive:FILE[:tag]` and `docker-archive:FILE` bases: unpacked (verified) into
//! the cache's store, then read like a layout.

use super::{BaseImage, DockerConfig, SourceError, oci_layout};
use crate::cache::Cache;
use crate::image::archive::{open_oci_archive, read_docker_archive};
use crate::image::{ImageError, parse_json};
use crate::platform::Platform;
use oci_spec::image::ImageConfiguration;
use std::path::Path;

pub fn oci_archive(
    file: &Path,
    tag: Option<&str>,
    reference: &str,
    platform: &Platform,
    cache: &Cache,
    scratch: &Path,
) -> Result<BaseImage, SourceError> {
    let extracted = open_oci_archive(file, scratch).map_err(|source| SourceError::Image {
        reference: reference.to_string(),
        source,
    })?;
    oci_layout::load(
        extracted.layout.dir(),
        tag,
        reference,
        platform,
        cache.store(),
    )
}

pub fn docker_archive(
    file: &Path,
    reference: &str,
    platform: &Platform,
    cache: &Cache,
    scratch: &Path,
    unpack_limit: u64,
) -> Result<BaseImage, SourceError> {
    let image_err = |source: ImageError| SourceError::Image {
        reference: reference.to_string(),
        source,
    };
    let image =
        read_docker_archive(file, cache.store(), scratch, unpack_limit).map_err(image_err)?;
    let config: ImageConfiguration =
        parse_json(&image.config, "image config").map_err(image_err)?;
    let docker: DockerConfig = parse_json(&image.config, "image config").map_err(image_err)?;
    let (os, arch) = (config.os().to_string(), config.architecture().to_string());
    // An ARM image's variant must be one the build platform runs (v7 runs v6 and v5).
    let variant_ok = match (platform.oci_variant(), config.variant().as_deref()) {
        (Some(want), Some(have)) => have <= want,
        _ => true,
    };
    if os != platform.os() || arch != platform.oci_arch() || !variant_ok {
        return Err(SourceError::Invalid {
            reference: reference.to_string(),
            message: format!(
                "the image is for {os}/{arch}{}, not {platform}",
                config
                    .variant()
                    .as_deref()
                    .map(|v| format!("/{v}"))
                    .unwrap_or_default()
            ),
        });
    }
    Ok(BaseImage {
        layers: image.layers,
        config: Some(config),
        docker,
        manifest_digest: None,
        warnings: Vec::new(),
    })
}
