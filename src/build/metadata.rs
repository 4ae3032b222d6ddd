//! `--metadata-file`: what CI and auditors need to know about a build, as JSON — the
//! keys `docker buildx build --metadata-file` writes, plus every input that made the
//! image: the recipe, the bases, the copied files, and the emulators. None of it goes
//! into the image, so the image digest does not depend on the machine.

use super::BuildOutcome;
use crate::digest::Digest;
use crate::emulation::qemu::identify;
use serde_json::{Value, json};

pub struct BuildFacts<'a> {
    pub recipe_path: &'a str,
    pub recipe_digest: Digest,
    pub image_name: Option<String>,
    pub source_date_epoch: i64,
    pub build_args: &'a [(String, String)],
    /// The normalisation rules of this xbake, whether `--no-normalize` turned them off,
    /// and the (1-based) steps they ran after (run steps without `normalize: false`).
    pub normalize: NormalizeFacts<'a>,
    /// `--compression`, as `verify --compression` takes it back (`gzip:6`): an image
    /// does not record its level.
    pub compression: crate::layer::LayerCompression,
    /// `--target`: the stage built as the output, if not the final image.
    pub target: Option<&'a str>,
    /// `--label` and `--annotation`, as given: part of what made the image, and what
    /// `verify` needs again.
    pub labels: &'a [(String, String)],
    pub annotations: &'a [super::annotations::Annotation],
}

pub struct NormalizeFacts<'a> {
    pub rules: &'a crate::normalize::RuleSet,
    pub enabled: bool,
    pub steps: Vec<usize>,
}

fn normalize_json(facts: &NormalizeFacts) -> Value {
    let rules: Vec<Value> = facts
        .rules
        .rules
        .iter()
        .map(|r| json!({"action": r.action.name(), "path": r.pattern, "why": r.why}))
        .collect();
    json!({
        "enabled": facts.enabled,
        "version": facts.rules.version,
        "sha256": facts.rules.digest,
        "steps": if facts.enabled { facts.steps.clone() } else { Vec::new() },
        "rules": rules,
    })
}

pub fn metadata(outcome: &BuildOutcome, facts: &BuildFacts) -> Value {
    let platforms: Vec<Value> = outcome
        .platforms
        .iter()
        .map(|p| {
            let emulator =
                p.emulator
                    .as_ref()
                    .map(|(path, sha256)| match identify(path, sha256.clone()) {
                        Ok(id) => json!(id),
                        Err(e) => json!({"path": path, "error": e.to_string()}),
                    });
            json!({
                "platform": p.platform.to_string(),
                "manifest": p.manifest_digest,
                "base_manifest": p.base_manifest,
                "base_layers": p.base_layers,
                "copy_inputs": p.inputs,
                "emulator": emulator,
            })
        })
        .collect();
    let args: serde_json::Map<String, Value> = facts
        .build_args
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let mut out = json!({
        "containerimage.digest": outcome.index_digest,
        "containerimage.descriptor": {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": outcome.index_digest,
            "size": outcome.index_size,
        },
        "xbake.recipe": {"path": facts.recipe_path, "sha256": facts.recipe_digest},
        "xbake.source_date_epoch": facts.source_date_epoch,
        "xbake.build_args": args,
        "xbake.platforms": platforms,
        "xbake.steps": {"run": outcome.steps_run, "cached": outcome.steps_cached},
        "xbake.normalize": normalize_json(&facts.normalize),
        "xbake.compression": facts.compression.to_string(),
        "xbake.target": facts.target,
        "xbake.labels": facts
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect::<serde_json::Map<_, _>>(),
        "xbake.annotations": facts
            .annotations
            .iter()
            .map(|a| json!({
                "type": a.level.name(),
                "platform": a.platform.map(|p| p.to_string()),
                "key": a.key,
                "value": a.value,
            }))
            .collect::<Vec<_>>(),
    });
    if let Some(name) = &facts.image_name {
        out["image.name"] = json!(name);
    }
    out
}
