//! Choosing one platform's manifest from an image index, with the usual fallbacks
//! (containerd's platforms.Only): arm/v7 also runs v6 and v5 images, arm/v6 runs v5;
//! arm64 matches an absent variant or v8.

use super::ImageError;
use crate::platform::{ArmVariant, Platform};
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

pub fn select_manifest(
    index: &ImageIndex,
    platform: &Platform,
    what: &str,
) -> Result<Descriptor, ImageError> {
    let candidates: Vec<&Descriptor> = index
        .manifests()
        .iter()
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
            return Ok((*d).clone());
        }
    }
    Err(ImageError::PlatformNotFound {
        what: what.to_string(),
        platform: platform.to_string(),
        available: index.manifests().iter().map(describe).collect(),
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
        select_manifest(idx, &p.parse().unwrap(), "test index").map(|d| describe(&d))
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
}
