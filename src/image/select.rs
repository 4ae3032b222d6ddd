//! Choosing one platform's manifest from an image index, with the usual fallbacks
//! (containerd's platforms.Only): arm/v7 also runs v6 and v5 images, arm/v6 runs v5;
//! arm64 matches an absent variant or v8.

use super::ImageError;
use crate::platform::{ArmVariant, Platform};
use crate::registry::media_types::{ManifestKind, manifest_kind};
use oci_spec::image::{Descriptor, ImageIndex};

/// Variants acceptable for `platform`, best first ("" stands for no variant).
fn acceptable_variants(platform: &Platform) -> Vec<&'static str> {
    match platform.arm_variant() {
        Some(ArmVariant::V7) => vec!["v7", "v6", "v5", ""],
        Some(ArmVariant::V6) => vec!["v6", "v5", ""],
        Some(ArmVariant::V5) => vec!["v5", ""],
        None if platform.oci_arch() == "arm64" => vec!["", "v8"],
        None => vec![""],
    }
}

/// "linux/arm/v7" for a descriptor's platform, for messages.
pub fn describe(d: &Descriptor) -> String {
    match d.platform() {
        Some(p) => match p.variant() {
            Some(v) => format!("{}/{}/{}", p.os(), p.architecture(), v),
            None => format!("{}/{}", p.os(), p.architecture()),
        },
        None => "unknown platform".into(),
    }
}

/// The manifest chosen for a platform, and what the choice is worth warning about.
#[derive(Clone, Debug)]
pub struct Selected {
    pub descriptor: Descriptor,
    pub warnings: Vec<String>,
}

/// `(os, architecture, variant)` with the variant a platform implies when it names none
/// (containerd's platforms.Normalize: arm64 means v8, arm means v7), so that
/// `linux/arm64` and `linux/arm64/v8` compare equal.
fn normalized(os: &str, arch: &str, variant: Option<&str>) -> (String, String, String) {
    let variant = match (arch, variant.unwrap_or("")) {
        ("arm64", "") => "v8",
        ("arm", "") => "v7",
        (_, v) => v,
    };
    (os.to_string(), arch.to_string(), variant.to_string())
}

fn key_of(d: &Descriptor) -> Option<(String, String, String)> {
    let p = d.platform().as_ref()?;
    Some(normalized(
        &p.os().to_string(),
        &p.architecture().to_string(),
        p.variant().as_deref(),
    ))
}

/// Whether a config's `os`/`architecture`/`variant` are the platform of the index entry
/// that led to it (variants normalized). An entry without a platform says nothing.
pub fn config_matches_entry(
    entry: &Descriptor,
    os: &str,
    arch: &str,
    variant: Option<&str>,
) -> bool {
    key_of(entry).is_none_or(|key| key == normalized(os, arch, variant))
}

/// "linux/arm/v7" from a config's fields, for messages.
pub fn describe_fields(os: &str, arch: &str, variant: Option<&str>) -> String {
    match variant.filter(|v| !v.is_empty()) {
        Some(v) => format!("{os}/{arch}/{v}"),
        None => format!("{os}/{arch}"),
    }
}

/// Chooses `platform`'s image manifest in `index`. Entries of a media type that is not an
/// image manifest (attestations, signatures, artifacts, types from the future) are skipped,
/// not fatal. When several manifests are for the chosen platform, the first is used (as
/// containerd and podman do) and a warning names it.
pub fn select_manifest(
    index: &ImageIndex,
    platform: &Platform,
    what: &str,
) -> Result<Selected, ImageError> {
    let images: Vec<&Descriptor> = index
        .manifests()
        .iter()
        .filter(|d| manifest_kind(d.media_type().as_ref()) == Some(ManifestKind::Image))
        .collect();
    let candidates: Vec<&Descriptor> = images
        .iter()
        .copied()
        .filter(|d| {
            d.platform().as_ref().is_some_and(|p| {
                p.os().to_string() == platform.os()
                    && p.architecture().to_string() == platform.oci_arch()
            })
        })
        .collect();
    for variant in acceptable_variants(platform) {
        let found = candidates.iter().find(|d| {
            let v = d
                .platform()
                .as_ref()
                .and_then(|p| p.variant().as_deref())
                .unwrap_or("");
            v == variant
        });
        if let Some(d) = found {
            let same: Vec<&&Descriptor> = candidates
                .iter()
                .filter(|c| key_of(c) == key_of(d))
                .collect();
            let mut warnings = Vec::new();
            if same.len() > 1 {
                warnings.push(format!(
                    "{what} has {} manifests for {} ({}); using {}",
                    same.len(),
                    describe(d),
                    same.iter()
                        .map(|c| c.digest().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    d.digest()
                ));
            }
            return Ok(Selected {
                descriptor: (*d).clone(),
                warnings,
            });
        }
    }
    Err(ImageError::PlatformNotFound {
        what: what.to_string(),
        platform: platform.to_string(),
        available: images.iter().map(|d| describe(d)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(platforms: &[(&str, Option<&str>)]) -> ImageIndex {
        let manifests: Vec<serde_json::Value> = platforms
            .iter()
            .enumerate()
            .map(|(i, (arch, variant))| {
                let mut p = serde_json::json!({"os": "linux", "architecture": arch});
                if let Some(v) = variant {
                    p["variant"] = serde_json::json!(v);
                }
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": format!("sha256:{:064x}", i),
                    "size": 1,
                    "platform": p,
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({"schemaVersion": 2, "manifests": manifests}))
            .unwrap()
    }

    fn pick(idx: &ImageIndex, p: &str) -> Result<String, ImageError> {
        select_manifest(idx, &p.parse().unwrap(), "test index").map(|s| describe(&s.descriptor))
    }

    #[test]
    fn exact_matches_win_and_arm_falls_back_to_older_variants() {
        let idx = index(&[
            ("amd64", None),
            ("arm", Some("v5")),
            ("arm", Some("v6")),
            ("arm64", Some("v8")),
        ]);
        assert_eq!(pick(&idx, "arm/v7").unwrap(), "linux/arm/v6");
        assert_eq!(pick(&idx, "arm/v6").unwrap(), "linux/arm/v6");
        assert_eq!(pick(&idx, "arm/v5").unwrap(), "linux/arm/v5");
        assert_eq!(pick(&idx, "arm64").unwrap(), "linux/arm64/v8");
        assert_eq!(pick(&idx, "amd64").unwrap(), "linux/amd64");
    }

    #[test]
    fn v6_never_takes_a_v7_image_and_missing_platforms_list_what_exists() {
        let idx = index(&[("arm", Some("v7")), ("arm64", None)]);
        let err = pick(&idx, "arm/v6").unwrap_err().to_string();
        assert!(
            err.contains("linux/arm/v6") && err.contains("linux/arm/v7, linux/arm64"),
            "{err}"
        );
        assert!(pick(&idx, "ppc64le").is_err());
        assert_eq!(pick(&idx, "arm64").unwrap(), "linux/arm64");
    }

    fn entry(media_type: &str, n: u32, arch: &str, variant: Option<&str>) -> serde_json::Value {
        let mut p = serde_json::json!({"os": "linux", "architecture": arch});
        if let Some(v) = variant {
            p["variant"] = serde_json::json!(v);
        }
        serde_json::json!({"mediaType": media_type, "digest": format!("sha256:{n:064x}"), "size": 1, "platform": p})
    }

    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

    #[test]
    fn entries_of_unknown_media_types_are_skipped() {
        let idx: ImageIndex =
            serde_json::from_value(serde_json::json!({"schemaVersion": 2, "manifests": [
                entry("application/vnd.example.future+json", 1, "arm64", None),
                entry(MANIFEST, 2, "arm64", None),
            ]}))
            .unwrap();
        let chosen = select_manifest(&idx, &"arm64".parse().unwrap(), "t").unwrap();
        assert_eq!(
            chosen.descriptor.digest().to_string(),
            format!("sha256:{:064x}", 2)
        );
        assert!(chosen.warnings.is_empty(), "{:?}", chosen.warnings);
        let only_unknown: ImageIndex =
            serde_json::from_value(serde_json::json!({"schemaVersion": 2, "manifests": [
                entry("application/vnd.example.future+json", 1, "arm64", None),
            ]}))
            .unwrap();
        let err = pick(&only_unknown, "arm64").unwrap_err().to_string();
        assert!(err.contains("it has: no platforms"), "{err}");
    }

    #[test]
    fn two_manifests_for_one_platform_warn_and_name_the_first() {
        let idx: ImageIndex =
            serde_json::from_value(serde_json::json!({"schemaVersion": 2, "manifests": [
                entry(MANIFEST, 1, "amd64", None),
                entry(MANIFEST, 2, "arm64", None),
                entry(MANIFEST, 3, "arm64", Some("v8")),
            ]}))
            .unwrap();
        let chosen = select_manifest(&idx, &"arm64".parse().unwrap(), "oci:base").unwrap();
        let first = format!("sha256:{:064x}", 2);
        let second = format!("sha256:{:064x}", 3);
        assert_eq!(chosen.descriptor.digest().to_string(), first);
        assert_eq!(
            chosen.warnings,
            [format!(
                "oci:base has 2 manifests for linux/arm64 ({first}, {second}); using {first}"
            )]
        );
        let amd64 = select_manifest(&idx, &"amd64".parse().unwrap(), "oci:base").unwrap();
        assert!(amd64.warnings.is_empty());
    }

    #[test]
    fn configs_must_be_for_their_entry_s_platform() {
        let d: Descriptor =
            serde_json::from_value(entry(MANIFEST, 1, "arm64", Some("v8"))).unwrap();
        assert!(config_matches_entry(&d, "linux", "arm64", None));
        assert!(config_matches_entry(&d, "linux", "arm64", Some("v8")));
        assert!(!config_matches_entry(&d, "linux", "amd64", None));
        assert!(!config_matches_entry(&d, "windows", "arm64", None));
        let arm: Descriptor =
            serde_json::from_value(entry(MANIFEST, 1, "arm", Some("v6"))).unwrap();
        assert!(config_matches_entry(&arm, "linux", "arm", Some("v6")));
        assert!(!config_matches_entry(&arm, "linux", "arm", Some("v7")));
        assert!(
            !config_matches_entry(&arm, "linux", "arm", None),
            "arm alone is v7"
        );
        let bare: Descriptor = serde_json::from_value(serde_json::json!({"mediaType": MANIFEST, "digest": format!("sha256:{:064x}", 1), "size": 1})).unwrap();
        assert!(config_matches_entry(&bare, "linux", "s390x", None));
    }
}
