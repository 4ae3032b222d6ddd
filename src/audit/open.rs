//! Opening any image reference for reading: a layout directly, an OCI archive by
//! unpacking it (verified) into a scratch folder that lives as long as the result.

use super::{AuditError, LoadedImage, load};
use crate::image::archive::{ExtractedLayout, open_oci_archive};
use crate::image::reference::{ImageRef, LayoutRef};
use crate::registry::RegistryOptions;
use std::path::Path;

pub struct Opened {
    pub image: LoadedImage,
    _extracted: Option<ExtractedLayout>,
}

impl Opened {
    pub fn new(image: LoadedImage) -> Opened {
        Opened {
            image,
            _extracted: None,
        }
    }
}

/// `scratch` must outlive the result (registry images are kept there); `with_layers`
/// fetches a registry image's layers too (diff, verify), not only its configs.
pub fn open(
    reference: &ImageRef,
    scratch: &Path,
    registry: &RegistryOptions,
    with_layers: bool,
) -> Result<Opened, AuditError> {
    match reference {
        ImageRef::Layout(layout) => Ok(Opened {
            image: load(layout)?,
            _extracted: None,
        }),
        ImageRef::OciArchive(archive) => {
            let extracted =
                open_oci_archive(&archive.dir, scratch).map_err(|source| AuditError::Image {
                    what: reference.to_string(),
                    source,
                })?;
            let mut image = load(&LayoutRef {
                dir: extracted.layout.dir().to_path_buf(),
                tag: archive.tag.clone(),
            })?;
            image.name = reference.to_string();
            Ok(Opened {
                image,
                _extracted: Some(extracted),
            })
        }
        ImageRef::Registry(name) => super::registry::open(name, scratch, registry, with_layers),
    }
}
