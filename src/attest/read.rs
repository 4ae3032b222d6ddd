//! Finding the statements attached to an image, wherever a builder put them: BuildKit's
//! attestation manifests in the index, and OCI 1.1 referrers of each platform manifest
//! (a registry's referrers API, its `sha256-HEX` fallback tag, or a layout's untagged
//! index.json entries). Every document is read by digest and size, so what comes back
//! is what the index names.

use super::manifest::is_attestation_entry;
use super::{IN_TOTO_MEDIA_TYPE, REFERENCE_DIGEST};
use crate::digest::Digest;
use crate::image::{ImageError, descriptor_digest, parse_json};
use crate::registry::media_types::{ManifestKind, manifest_kind};
use oci_spec::image::ImageIndex;
use serde_json::Value;

/// Where the documents come from: a layout or a registry.
pub trait Source {
    /// A manifest or index by digest, `size` bytes.
    fn document(&self, digest: &Digest, size: u64) -> Result<Vec<u8>, String>;
    /// A blob by digest, `size` bytes.
    fn blob(&self, digest: &Digest, size: u64) -> Result<Vec<u8>, String>;
    /// The referrers list of `digest` (an image index), if the source has one.
    fn referrers(&self, digest: &Digest) -> Result<Option<Vec<u8>>, String>;
    /// The document under `tag`, if there is one (a signature's `sha256-HEX.sig`).
    fn tagged(&self, tag: &str) -> Result<Option<Vec<u8>>, String>;
}

/// How a statement was attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attached {
    AttestationManifest,
    Referrer,
}

/// One statement found.
#[derive(Clone, Debug)]
pub struct Found {
    /// The platform manifest it is about.
    pub subject: Digest,
    /// That manifest's platform in the index (`linux/arm64`), when it is listed there.
    pub platform: Option<String>,
    pub predicate_type: String,
    pub statement: Value,
    /// The statement layer's digest.
    pub layer: Digest,
    pub attached: Attached,
}

/// At most this many statements, and bytes of them, are read from one image: enough for
/// any build's, and no more memory than that for a hostile one's.
const MAX_STATEMENTS: usize = 1024;
const MAX_STATEMENT_BYTES: u64 = 256 << 20;

/// The platform manifests of an image: (digest, size, platform).
pub type Platforms = Vec<(Digest, u64, String)>;

/// Every statement about the image whose top document is `top` (bytes, already
/// checked against its digest): its index's attestation manifests and, with
/// `referrers`, each platform manifest's referrers.
pub fn statements(
    source: &dyn Source,
    top: &[u8],
    top_digest: &Digest,
    top_size: u64,
    referrers: bool,
) -> Result<(Platforms, Vec<Found>), String> {
    let kind_of = |v: &Value| v["mediaType"].as_str().and_then(manifest_kind);
    let doc: Value =
        serde_json::from_slice(top).map_err(|e| format!("the image's top document: {e}"))?;
    let mut platforms: Platforms = Vec::new();
    let mut found = Vec::new();
    let mut budget = 0u64;
    if kind_of(&doc) == Some(ManifestKind::Index) || doc.get("manifests").is_some() {
        let index: ImageIndex =
            parse_json(top, "image index").map_err(|e: ImageError| e.to_string())?;
        for d in index.manifests() {
            if manifest_kind(d.media_type().as_ref()) != Some(ManifestKind::Image) {
                continue;
            }
            let digest = descriptor_digest(d).map_err(|e| e.to_string())?;
            if is_attestation_entry(d) {
                let subject = d
                    .annotations()
                    .as_ref()
                    .and_then(|a| a.get(REFERENCE_DIGEST))
                    .and_then(|s| s.parse::<Digest>().ok());
                let Some(subject) = subject else { continue };
                let manifest = source.document(&digest, d.size())?;
                found.extend(layers_of(
                    &mut budget,
                    source,
                    &manifest,
                    &subject,
                    Attached::AttestationManifest,
                )?);
                check_budget(&found)?;
            } else if let Some(p) = d.platform() {
                let name = crate::image::select::describe_fields(
                    &p.os().to_string(),
                    &p.architecture().to_string(),
                    p.variant().as_deref(),
                );
                platforms.push((digest, d.size(), name));
            }
        }
    } else {
        platforms.push((top_digest.clone(), top_size, String::new()));
    }
    if referrers {
        for (digest, _, _) in &platforms {
            let Some(list) = source.referrers(digest)? else {
                continue;
            };
            let list: ImageIndex =
                parse_json(&list, "referrers list").map_err(|e: ImageError| e.to_string())?;
            for d in list.manifests() {
                if d.artifact_type().as_ref().map(|t| t.to_string()).as_deref()
                    != Some(IN_TOTO_MEDIA_TYPE)
                {
                    continue;
                }
                let referrer_digest = descriptor_digest(d).map_err(|e| e.to_string())?;
                let manifest = source.document(&referrer_digest, d.size())?;
                let doc: Value = serde_json::from_slice(&manifest)
                    .map_err(|e| format!("referrer {referrer_digest}: {e}"))?;
                // A referrers list is only an index of candidates: the manifest itself
                // must name this subject.
                if doc["subject"]["digest"].as_str() != Some(digest.to_string().as_str()) {
                    return Err(format!(
                        "referrer {referrer_digest} is listed for {digest} but names subject {}",
                        doc["subject"]["digest"]
                    ));
                }
                found.extend(layers_of(
                    &mut budget,
                    source,
                    &manifest,
                    digest,
                    Attached::Referrer,
                )?);
                check_budget(&found)?;
            }
        }
    }
    check_budget(&found)?;
    for f in &mut found {
        f.platform = platforms
            .iter()
            .find(|(d, _, _)| *d == f.subject)
            .map(|(_, _, p)| p.clone())
            .filter(|p| !p.is_empty());
    }
    Ok((platforms, found))
}

fn check_budget(found: &[Found]) -> Result<(), String> {
    if found.len() > MAX_STATEMENTS {
        return Err(format!(
            "it carries more than {MAX_STATEMENTS} statements; not reading them"
        ));
    }
    Ok(())
}

fn layers_of(
    budget: &mut u64,
    source: &dyn Source,
    manifest: &[u8],
    subject: &Digest,
    attached: Attached,
) -> Result<Vec<Found>, String> {
    let doc: Value =
        serde_json::from_slice(manifest).map_err(|e| format!("attestation manifest: {e}"))?;
    let mut out = Vec::new();
    for layer in doc["layers"].as_array().into_iter().flatten() {
        if layer["mediaType"] != IN_TOTO_MEDIA_TYPE {
            continue;
        }
        let digest: Digest = layer["digest"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .map_err(|e| format!("attestation layer: {e}"))?;
        let size = layer["size"]
            .as_u64()
            .ok_or_else(|| format!("attestation layer {digest} has no size"))?;
        *budget = budget.saturating_add(size);
        if *budget > MAX_STATEMENT_BYTES {
            return Err(format!(
                "its statements are more than {MAX_STATEMENT_BYTES} bytes; not reading them"
            ));
        }
        if out.len() >= MAX_STATEMENTS {
            return Err(format!(
                "an attestation manifest lists more than {MAX_STATEMENTS} statements"
            ));
        }
        let bytes = source.blob(&digest, size)?;
        let statement: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("statement {digest} is not JSON: {e}"))?;
        // The statement must be about the manifest it is attached to.
        let names_subject = statement["subject"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["digest"]["sha256"].as_str() == Some(subject.hex()));
        if !names_subject {
            return Err(format!(
                "statement {digest} is attached to {subject} but is not about it"
            ));
        }
        out.push(Found {
            subject: subject.clone(),
            platform: None,
            predicate_type: statement["predicateType"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            statement,
            layer: digest,
            attached,
        });
    }
    Ok(out)
}
