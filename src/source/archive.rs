//! `oci-archive:FILE[:tag]` and `docker-archive:FILE` bases: unpacked (verified) into
//! the cache's store, then read like a layout.

use super::{BaseImage, BaseLayer, SourceError, oci_layout};
use crate::cache::Cache;
use crate::image::archive::{open_oci_archive, read_docker_archive};
use crate::image::{ImageError, parse_json};
use crate::platform::Platform;
use oci_spec::image::ImageConfiguration;
use std::path::Path;

fn scratch(cache: &Cache, reference: &str) -> Result<std::path::PathBuf, SourceError> {
    let dir = cache.root().join("work");
    std::fs::create_dir_all(&dir).map_err(|source| SourceError::Io {
        reference: reference.to_string(),
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

pub fn oci_archive(
    file: &Path,
    tag: Option<&str>,
    reference: &str,
    platform: &Platform,
    cache: &Cache,
) -> Result<BaseImage, SourceError> {
    let extracted = open_oci_archive(file, &scratch(cache, reference)?).map_err(|source| {
        SourceError::Image {
            reference: reference.to_string(),
            source,
        }
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
) -> Result<BaseImage, SourceError> {
    let image_err = |source: ImageError| SourceError::Image {
        reference: reference.to_string(),
        source,
    };
    let image =
        read_docker_archive(file, cache.store(), &scratch(cache, reference)?).map_err(image_err)?;
    let config: ImageConfiguration =
        parse_json(&image.config, "image config").map_err(image_err)?;
    let (os, arch) = (config.os().to_string(), config.architecture().to_string());
    if os != platform.os() || arch != platform.oci_arch() {
        return Err(SourceError::Invalid {
            reference: reference.to_string(),
            message: format!("the image is for {os}/{arch}, not {platform}"),
        });
    }
    Ok(BaseImage {
        layers: image
            .layers
            .into_iter()
            .map(|(digest, size, media_type, diff_id)| BaseLayer {
                digest,
                size,
                media_type: media_type.to_string(),
                diff_id,
            })
            .collect(),
        config: Some(config),
        manifest_digest: None,
    })
}
