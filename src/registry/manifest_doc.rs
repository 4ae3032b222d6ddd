//! The few fields of image manifests and configs that pulling and pushing need, read
//! leniently: Docker schema 2 and OCI manifests share this shape, and a config may carry
//! any other fields (Docker's `container_config`, nulls where OCI has empty lists).

use super::error::RegistryError;
use crate::digest::Digest;
use crate::image::select::{config_matches_entry, describe, describe_fields, select_manifest};
use crate::platform::Platform;
use oci_spec::image::{Descriptor, ImageIndex};

/// An image manifest: config and layers (OCI image-spec `manifest.md`; Docker schema 2).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifestDoc {
    pub config: BlobRef,
    pub layers: Vec<BlobRef>,
}

/// A descriptor of a blob.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobRef {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// What a config says about its platform and layers.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct ConfigHead {
    pub architecture: Option<String>,
    pub os: Option<String>,
    pub variant: Option<String>,
    pub rootfs: RootFs,
}

#[derive(Clone, Debug, serde::Deserialize)]
pub struct RootFs {
    pub diff_ids: Vec<Digest>,
}

impl ConfigHead {
    /// Whether the config is for the platform of the index entry that led to it (a
    /// manifest listed as arm64 whose config says amd64 is refused): the message if not.
    pub fn check_entry(&self, entry: &Descriptor) -> Result<(), String> {
        let os = self.os.as_deref().unwrap_or("");
        let arch = self.architecture.as_deref().unwrap_or("");
        let variant = self.variant.as_deref();
        if config_matches_entry(entry, os, arch, variant) {
            Ok(())
        } else {
            Err(format!(
                "the index lists image manifest {} as {} but its config says {}",
                entry.digest(),
                describe(entry),
                describe_fields(os, arch, variant)
            ))
        }
    }

    /// Whether a single-platform image suits `platform`, with the same matching rules as
    /// choosing from an index (arm/v7 runs v6 images, arm64 matches v8 or no variant).
    /// A config that names no architecture is accepted.
    pub fn check_platform(&self, platform: &Platform, name: &str) -> Result<(), RegistryError> {
        let Some(architecture) = &self.architecture else {
            return Ok(());
        };
        let mut image_platform = serde_json::json!({
            "os": self.os.as_deref().unwrap_or("linux"),
            "architecture": architecture,
        });
        if let Some(variant) = &self.variant {
            image_platform["variant"] = serde_json::json!(variant);
        }
        let one_entry_index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": super::media_types::OCI_MANIFEST,
                "digest": Digest::of(b"").to_string(),
                "size": 0,
                "platform": image_platform,
            }],
        });
        let not_found = |available: Vec<String>| RegistryError::PlatformNotFound {
            reference: name.to_string(),
            platform: platform.to_string(),
            available,
        };
        // oci-spec reads any os/architecture string, so this only fails on a bug; report
        // the image's platform as written rather than accept it unchecked.
        let index: ImageIndex = serde_json::from_value(one_entry_index).map_err(|_| {
            not_found(vec![format!(
                "{}/{architecture}",
                self.os.as_deref().unwrap_or("linux")
            )])
        })?;
        match select_manifest(&index, platform, name) {
            Ok(_) => Ok(()),
            Err(crate::image::ImageError::PlatformNotFound { available, .. }) => {
                Err(not_found(available))
            }
            Err(_) => Err(not_found(Vec::new())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(arch: Option<&str>, variant: Option<&str>) -> ConfigHead {
        ConfigHead {
            architecture: arch.map(str::to_string),
            os: Some("linux".into()),
            variant: variant.map(str::to_string),
            rootfs: RootFs { diff_ids: vec![] },
        }
    }

    fn check(h: &ConfigHead, p: &str) -> Result<(), String> {
        h.check_platform(&p.parse().unwrap(), "r/x:1")
            .map_err(|e| e.to_string())
    }

    #[test]
    fn single_platform_images_must_match() {
        assert!(check(&head(Some("amd64"), None), "amd64").is_ok());
        assert!(check(&head(Some("arm64"), Some("v8")), "arm64").is_ok());
        assert!(check(&head(Some("arm"), Some("v6")), "arm/v7").is_ok());
        assert!(check(&head(None, None), "s390x").is_ok());
        let err = check(&head(Some("arm"), Some("v7")), "arm/v6").unwrap_err();
        assert!(
            err.contains("r/x:1 has no image for linux/arm/v6; it has: linux/arm/v7"),
            "{err}"
        );
        let err = check(&head(Some("amd64"), None), "arm64").unwrap_err();
        assert!(err.contains("it has: linux/amd64"), "{err}");
    }

    #[test]
    fn docker_configs_with_extra_fields_and_nulls_parse() {
        let config = br#"{"architecture":"amd64","os":"linux","config":{"Env":null},
            "container_config":{},"rootfs":{"type":"layers","diff_ids":
            ["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]}}"#;
        let h: ConfigHead = serde_json::from_slice(config).unwrap();
        assert_eq!(h.rootfs.diff_ids.len(), 1);
    }

    #[test]
    fn configs_must_match_the_index_entry() {
        let entry: Descriptor = serde_json::from_value(serde_json::json!({
            "mediaType": super::super::media_types::OCI_MANIFEST,
            "digest": Digest::of(b"m").to_string(),
            "size": 1,
            "platform": {"os": "linux", "architecture": "arm64"},
        }))
        .unwrap();
        assert!(head(Some("arm64"), None).check_entry(&entry).is_ok());
        assert!(head(Some("arm64"), Some("v8")).check_entry(&entry).is_ok());
        let err = head(Some("amd64"), None).check_entry(&entry).unwrap_err();
        assert!(
            err.ends_with("as linux/arm64 but its config says linux/amd64"),
            "{err}"
        );
        assert!(head(None, None).check_entry(&entry).is_err());
    }
}
