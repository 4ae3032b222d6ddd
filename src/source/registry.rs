//! A base pulled from a registry (`from: debian:bookworm`, `host:5000/x/y:tag`,
//! `…@sha256:…`): the build platform's manifest, its config and layers, all verified,
//! into the cache's store. Blobs already there intact are not fetched again.

use super::{BaseImage, BaseLayer, DockerConfig, SourceError, oci_layout::layer_media_type};
use crate::cache::Cache;
use crate::image::parse_json;
use crate::platform::Platform;
use crate::registry::{self, Reference, RegistryOptions};
use oci_spec::image::ImageConfiguration;

pub fn pull(
    text: &str,
    platform: &Platform,
    cache: &Cache,
    opts: &RegistryOptions,
) -> Result<BaseImage, SourceError> {
    let reg_err = |source| SourceError::Registry {
        reference: text.to_string(),
        source: Box::new(source),
    };
    let reference: Reference = text.parse().map_err(reg_err)?;
    let creds = registry::auth::credentials_for(&reference.registry).map_err(reg_err)?;
    let pulled =
        registry::pull(&reference, platform, cache.store(), opts, creds).map_err(reg_err)?;
    let image_err = |source| SourceError::Image {
        reference: text.to_string(),
        source,
    };
    let config: ImageConfiguration =
        parse_json(&pulled.config, "image config").map_err(image_err)?;
    let docker: DockerConfig = parse_json(&pulled.config, "image config").map_err(image_err)?;
    let layers = pulled
        .layers
        .into_iter()
        .map(|l| {
            let media_type =
                layer_media_type(&l.media_type).ok_or_else(|| SourceError::Invalid {
                    reference: text.to_string(),
                    message: format!(
                        "layer {} has the unsupported media type {}",
                        l.digest, l.media_type
                    ),
                })?;
            Ok(BaseLayer {
                digest: l.digest,
                size: l.size,
                media_type: media_type.to_string(),
                diff_id: l.diff_id,
            })
        })
        .collect::<Result<Vec<_>, SourceError>>()?;
    Ok(BaseImage {
        layers,
        config: Some(config),
        docker,
        manifest_digest: Some(pulled.manifest_digest),
        warnings: pulled.warnings,
    })
}
