//! Annotations and labels from the command line (`--annotation`, `--label`), merged
//! with the recipe's, and the four places an annotation can go, as docker buildx names
//! them: the image `manifest` (the default), the manifest's descriptor in the index
//! (`manifest-descriptor`), the `index`, and the index's descriptor in the output
//! layout's index.json (`index-descriptor`). Pure: no I/O.

use std::collections::{BTreeMap, HashMap};

use oci_spec::image::Descriptor;

use super::BuildError;
use crate::platform::Platform;
use crate::recipe::Plan;

/// Where an annotation goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnnotationLevel {
    Manifest,
    ManifestDescriptor,
    Index,
    IndexDescriptor,
}

impl AnnotationLevel {
    const NAMES: [(&'static str, AnnotationLevel); 4] = [
        ("manifest", AnnotationLevel::Manifest),
        ("manifest-descriptor", AnnotationLevel::ManifestDescriptor),
        ("index", AnnotationLevel::Index),
        ("index-descriptor", AnnotationLevel::IndexDescriptor),
    ];

    /// The name `--annotation` spells it with.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, level)| *level == self)
            .map_or("manifest", |(name, _)| name)
    }

    /// Manifests (and their descriptors) exist per platform; the index once.
    fn per_platform(self) -> bool {
        matches!(
            self,
            AnnotationLevel::Manifest | AnnotationLevel::ManifestDescriptor
        )
    }
}

/// One `--annotation` for one level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Annotation {
    pub level: AnnotationLevel,
    /// `manifest[linux/arm64]:…`: only that platform's; None: every platform's.
    pub platform: Option<Platform>,
    pub key: String,
    pub value: String,
}

impl Annotation {
    fn applies_to(&self, level: AnnotationLevel, platform: &Platform) -> bool {
        self.level == level && self.platform.is_none_or(|p| p == *platform)
    }
}

/// As `--annotation` takes it back: `TYPE[PLATFORM]:KEY=VALUE`.
impl std::fmt::Display for Annotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.level.name())?;
        if let Some(p) = &self.platform {
            write!(f, "[{p}]")?;
        }
        write!(f, ":{}={}", self.key, self.value)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--annotation {text:?}: {reason}")]
pub struct BadAnnotation {
    text: String,
    reason: String,
}

/// `[TYPE[,TYPE…]:]KEY=VALUE`, docker buildx's syntax, where TYPE is `manifest`,
/// `manifest-descriptor` (either may name one platform: `manifest[linux/arm64]`),
/// `index` or `index-descriptor`; no TYPE means `manifest`. As in buildx the types end
/// at the first `:` before the `=`, so a key cannot hold a colon unless types are given.
pub fn parse_annotation(text: &str) -> Result<Vec<Annotation>, BadAnnotation> {
    let bad = |reason: String| BadAnnotation {
        text: text.to_string(),
        reason,
    };
    let (target, value) = text
        .split_once('=')
        .ok_or_else(|| bad("expected [TYPE:]KEY=VALUE".into()))?;
    let (types, key) = match target.split_once(':') {
        Some((types, key)) => (Some(types), key),
        None => (None, target),
    };
    if key.is_empty() {
        return Err(bad("the key is empty".into()));
    }
    let Some(types) = types else {
        return Ok(vec![Annotation {
            level: AnnotationLevel::Manifest,
            platform: None,
            key: key.to_string(),
            value: value.to_string(),
        }]);
    };
    types
        .split(',')
        .map(|typ| {
            let (name, platform) = match typ.strip_suffix(']').and_then(|t| t.split_once('[')) {
                Some((name, platform)) => (name, Some(platform)),
                None => (typ, None),
            };
            let level = AnnotationLevel::NAMES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, level)| *level)
                .ok_or_else(|| {
                    bad(format!(
                        "unknown annotation type {name:?}; expected manifest, \
                         manifest-descriptor, index or index-descriptor"
                    ))
                })?;
            let platform = match platform {
                None => None,
                Some(_) if !level.per_platform() => {
                    return Err(bad(format!(
                        "{name} annotations are not per platform; only manifest and \
                         manifest-descriptor take [PLATFORM]"
                    )));
                }
                Some(p) => Some(p.parse::<Platform>().map_err(|e| bad(e.to_string()))?),
            };
            Ok(Annotation {
                level,
                platform,
                key: key.to_string(),
                value: value.to_string(),
            })
        })
        .collect()
}

/// `--label KEY=VALUE`.
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("--label {text:?}: expected KEY=VALUE with a KEY")),
    }
}

/// The command line's labels and manifest annotations over the recipe's, in one
/// platform's plan (later ones win; the lists stay sorted by key).
pub(crate) fn apply_to_plan(plan: &mut Plan, labels: &[(String, String)], cli: &[Annotation]) {
    let platform = plan.platform;
    let config = &mut plan.config;
    config.labels = merged(&config.labels, labels.iter().cloned());
    config.manifest_annotations = merged(
        &config.manifest_annotations,
        for_level(cli, AnnotationLevel::Manifest, &platform),
    );
}

fn merged(
    base: &[(String, String)],
    over: impl IntoIterator<Item = (String, String)>,
) -> Vec<(String, String)> {
    let mut map: BTreeMap<String, String> = base.iter().cloned().collect();
    map.extend(over);
    map.into_iter().collect()
}

fn for_level<'a>(
    cli: &'a [Annotation],
    level: AnnotationLevel,
    platform: &'a Platform,
) -> impl Iterator<Item = (String, String)> + 'a {
    cli.iter()
        .filter(move |a| a.applies_to(level, platform))
        .map(|a| (a.key.clone(), a.value.clone()))
}

/// The index's annotations: the recipe's `annotations: index:` (expanded per platform,
/// so they must agree: there is one index), then the command line's.
pub(crate) fn index_annotations(
    plans: &[Plan],
    cli: &[Annotation],
) -> Result<BTreeMap<String, String>, BuildError> {
    let mut map = BTreeMap::new();
    if let Some(first) = plans.first() {
        for other in &plans[1..] {
            if other.config.index_annotations != first.config.index_annotations {
                return Err(BuildError::Command {
                    what: "config.annotations.index".into(),
                    message: format!(
                        "the values differ between {} ({}) and {} ({}); an image index has \
                         one set of annotations, so they may not depend on TARGET* variables",
                        first.platform,
                        pairs_text(&first.config.index_annotations),
                        other.platform,
                        pairs_text(&other.config.index_annotations)
                    ),
                });
            }
        }
        map.extend(first.config.index_annotations.iter().cloned());
    }
    map.extend(
        cli.iter()
            .filter(|a| a.level == AnnotationLevel::Index)
            .map(|a| (a.key.clone(), a.value.clone())),
    );
    Ok(map)
}

fn pairs_text(pairs: &[(String, String)]) -> String {
    let texts: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    texts.join(", ")
}

/// Adds the `--annotation manifest-descriptor:` ones for `platform` to a manifest's
/// descriptor in the index.
pub(crate) fn annotate_manifest_descriptor(
    descriptor: &mut Descriptor,
    platform: &Platform,
    cli: &[Annotation],
) {
    annotate(
        descriptor,
        for_level(cli, AnnotationLevel::ManifestDescriptor, platform),
    );
}

/// Adds the `--annotation index-descriptor:` ones to the index's descriptor (the entry
/// of an OCI layout's index.json).
pub(crate) fn annotate_index_descriptor(descriptor: &mut Descriptor, cli: &[Annotation]) {
    annotate(
        descriptor,
        cli.iter()
            .filter(|a| a.level == AnnotationLevel::IndexDescriptor)
            .map(|a| (a.key.clone(), a.value.clone())),
    );
}

/// A descriptor's annotations are a HashMap in oci-spec: canonical_json sorts them.
fn annotate(descriptor: &mut Descriptor, extra: impl Iterator<Item = (String, String)>) {
    let extra: Vec<(String, String)> = extra.collect();
    if extra.is_empty() {
        return;
    }
    let mut annotations: HashMap<String, String> =
        descriptor.annotations().clone().unwrap_or_default();
    annotations.extend(extra);
    descriptor.set_annotations(Some(annotations));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(level: AnnotationLevel, platform: Option<&str>, key: &str, value: &str) -> Annotation {
        Annotation {
            level,
            platform: platform.map(|p| p.parse().unwrap()),
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn annotations_parse_as_buildx_parses_them() {
        use AnnotationLevel::*;
        let cases: &[(&str, Vec<Annotation>)] = &[
            ("a=b", vec![one(Manifest, None, "a", "b")]),
            (
                "org.opencontainers.image.title=x=y",
                vec![one(Manifest, None, "org.opencontainers.image.title", "x=y")],
            ),
            ("k=", vec![one(Manifest, None, "k", "")]),
            ("index:k=v", vec![one(Index, None, "k", "v")]),
            ("manifest:k=v", vec![one(Manifest, None, "k", "v")]),
            (
                "manifest-descriptor:k=v",
                vec![one(ManifestDescriptor, None, "k", "v")],
            ),
            (
                "index-descriptor:k=v",
                vec![one(IndexDescriptor, None, "k", "v")],
            ),
            (
                "manifest,index:k=v",
                vec![one(Manifest, None, "k", "v"), one(Index, None, "k", "v")],
            ),
            (
                "manifest[linux/arm64]:k=v",
                vec![one(Manifest, Some("linux/arm64"), "k", "v")],
            ),
            (
                "manifest-descriptor[arm/v7],index:url=http://x:1/",
                vec![
                    one(
                        ManifestDescriptor,
                        Some("linux/arm/v7"),
                        "url",
                        "http://x:1/",
                    ),
                    one(Index, None, "url", "http://x:1/"),
                ],
            ),
        ];
        for (text, want) in cases {
            assert_eq!(&parse_annotation(text).unwrap(), want, "{text}");
        }
        for (text, reason) in [
            ("novalue", "expected [TYPE:]KEY=VALUE"),
            ("=v", "the key is empty"),
            ("index:=v", "the key is empty"),
            ("config:k=v", "unknown annotation type \"config\""),
            ("a:b=c", "unknown annotation type \"a\""),
            ("index[linux/amd64]:k=v", "not per platform"),
            ("manifest[windows/amd64]:k=v", "windows"),
        ] {
            let err = parse_annotation(text).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("--annotation {text:?}: ")) && err.contains(reason),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn labels_need_a_key_and_an_equals_sign() {
        assert_eq!(parse_label("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_label("a="), Ok(("a".into(), String::new())));
        for bad in ["a", "=b", ""] {
            assert!(parse_label(bad).unwrap_err().contains("expected KEY=VALUE"));
        }
    }

    fn plan(platform: &str, labels: &[(&str, &str)], index: &[(&str, &str)]) -> Plan {
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let recipe = crate::recipe::Recipe::parse("from: scratch\n", "r.yaml".as_ref()).unwrap();
        let host: Platform = "amd64".parse().unwrap();
        let mut plan = recipe.plan(&platform.parse().unwrap(), &host, &[]).unwrap();
        plan.config.labels = pairs(labels);
        plan.config.manifest_annotations = pairs(labels);
        plan.config.index_annotations = pairs(index);
        plan
    }

    #[test]
    fn the_command_line_overrides_the_recipe_per_platform() {
        use AnnotationLevel::*;
        let cli = [
            one(Manifest, None, "b", "cli"),
            one(Manifest, Some("arm64"), "c", "arm64 only"),
            one(Index, None, "i", "index"),
        ];
        let labels = [("a".to_string(), "cli".to_string())];
        let mut arm64 = plan("arm64", &[("a", "recipe"), ("b", "recipe")], &[]);
        apply_to_plan(&mut arm64, &labels, &cli);
        let texts = |pairs: &[(String, String)]| pairs_text(pairs);
        assert_eq!(texts(&arm64.config.labels), "a=cli, b=recipe");
        assert_eq!(
            texts(&arm64.config.manifest_annotations),
            "a=recipe, b=cli, c=arm64 only"
        );
        let mut amd64 = plan("amd64", &[], &[]);
        apply_to_plan(&mut amd64, &[], &cli);
        assert_eq!(texts(&amd64.config.manifest_annotations), "b=cli");
    }

    #[test]
    fn index_annotations_must_agree_across_platforms() {
        let cli = [one(AnnotationLevel::Index, None, "z", "cli")];
        let same = [
            plan("amd64", &[], &[("v", "1")]),
            plan("arm64", &[], &[("v", "1")]),
        ];
        let map = index_annotations(&same, &cli).unwrap();
        assert_eq!(
            map.into_iter().collect::<Vec<_>>(),
            [("v".into(), "1".into()), ("z".into(), "cli".into())]
        );
        let differ = [
            plan("amd64", &[], &[("arch", "amd64")]),
            plan("arm64", &[], &[("arch", "arm64")]),
        ];
        let err = index_annotations(&differ, &[]).unwrap_err().to_string();
        assert!(
            err.contains("linux/amd64 (arch=amd64) and linux/arm64 (arch=arm64)"),
            "{err}"
        );
    }

    #[test]
    fn descriptors_get_their_levels_only() {
        use AnnotationLevel::*;
        let cli = [
            one(ManifestDescriptor, Some("arm64"), "m", "arm64"),
            one(ManifestDescriptor, None, "all", "1"),
            one(IndexDescriptor, None, "top", "2"),
            one(Manifest, None, "not", "here"),
        ];
        let digest = crate::digest::Digest::of(b"x");
        let base = crate::image::descriptor(oci_spec::image::MediaType::ImageManifest, &digest, 1)
            .unwrap();
        let keys = |d: &Descriptor| {
            let mut keys: Vec<String> = d
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_keys()
                .collect();
            keys.sort();
            keys.join(",")
        };
        let mut d = base.clone();
        annotate_manifest_descriptor(&mut d, &"arm64".parse().unwrap(), &cli);
        assert_eq!(keys(&d), "all,m");
        let mut d = base.clone();
        annotate_manifest_descriptor(&mut d, &"amd64".parse().unwrap(), &cli);
        assert_eq!(keys(&d), "all");
        let mut d = base.clone();
        annotate_index_descriptor(&mut d, &cli);
        assert_eq!(keys(&d), "top");
        let mut d = base;
        annotate_index_descriptor(&mut d, &[]);
        assert!(d.annotations().is_none(), "no annotations, no field");
    }
}
