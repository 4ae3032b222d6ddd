//! The statements a build attaches to its images (`--provenance`, `--sbom`): gathered
//! from what the build resolved and read, laid out by `attest::provenance` and
//! `attest::sbom`, written into the store as BuildKit's attestation manifests and,
//! with `--attest-referrers`, as OCI 1.1 referrers. The platform manifests are not
//! touched.

use super::graph::Graph;
use super::{BuildError, BuildRequest, PlatformImage};
use crate::attest::manifest::{Statement, Written, attestation_manifest, referrer_manifest};
use crate::attest::provenance::{self, BaseFact, EmulatorFact, Facts, InputFact, Parameters};
use crate::attest::{SLSA_PROVENANCE_V1, SPDX_DOCUMENT, statement};
use crate::digest::Digest;
use crate::image::BlobStore;
use serde_json::json;
use std::path::{Path, PathBuf};

/// What the build attaches, per platform, ready for the index and the push.
pub struct Attached {
    /// Attestation manifests, one per platform, in the platforms' order.
    pub manifests: Vec<Written>,
    /// `--attest-referrers`: (the platform manifest, its referrers).
    pub referrers: Vec<(Digest, Vec<Written>)>,
}

impl Attached {
    /// The referrers as a layout's index.json lists them: untagged entries.
    pub fn referrer_entries(&self) -> Result<Vec<oci_spec::image::Descriptor>, BuildError> {
        let mut out = Vec::new();
        for w in self.referrers.iter().flat_map(|(_, list)| list) {
            out.push(serde_json::from_value(w.descriptor.clone()).map_err(|e| {
                crate::image::ImageError::Invalid {
                    what: "referrer descriptor".into(),
                    message: e.to_string(),
                }
            })?);
        }
        Ok(out)
    }

    /// Pushes the referrers (src/registry/referrers.rs); returns the progress line.
    pub fn push_referrers(
        &self,
        client: &crate::registry::Client,
        store: &BlobStore,
    ) -> Result<String, BuildError> {
        let mut fallback = false;
        for (subject, list) in &self.referrers {
            let list: Vec<(Digest, serde_json::Value)> = list
                .iter()
                .map(|w| (w.digest.clone(), w.descriptor.clone()))
                .collect();
            fallback |= crate::registry::referrers::attach(client, store, subject, &list)?;
        }
        let count: usize = self.referrers.iter().map(|(_, l)| l.len()).sum();
        Ok(format!(
            "attached {count} referrers{}",
            if fallback {
                " (the registry has no referrers API: listed under each manifest's sha256-HEX tag)"
            } else {
                ""
            }
        ))
    }

    /// Every blob the attachments need.
    pub fn blobs(&self) -> Vec<Digest> {
        let mut all: Vec<Digest> = self
            .manifests
            .iter()
            .flat_map(|w| w.blobs.clone())
            .collect();
        for (_, list) in &self.referrers {
            all.extend(list.iter().flat_map(|w| w.blobs.clone()));
        }
        all
    }
}

/// The build-wide facts of the provenance: what the request said.
pub fn parameters(req: &BuildRequest) -> Parameters {
    let recipe = relative_to(req.recipe.file(), req.context.dir());
    Parameters {
        recipe,
        recipe_sha256: req.recipe.digest(),
        frontend: if req.recipe.is_dockerfile() {
            "dockerfile"
        } else {
            "recipe"
        }
        .into(),
        target: req.target.clone(),
        platforms: req.platforms.iter().map(|p| p.to_string()).collect(),
        build_args: req.build_args.clone(),
        secrets: req.secrets.ids(),
        source_date_epoch: 0,
        labels: req.labels.clone(),
        annotations: req.annotations.iter().map(|a| a.to_string()).collect(),
        compression: req.compression.to_string(),
        normalize: !req.no_normalize,
    }
}

/// `file` relative to `dir` when inside it, else its file name (a recipe given from
/// elsewhere: verify then needs it named again).
fn relative_to(file: &Path, dir: &Path) -> String {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (file, dir) = (abs(file), abs(dir));
    match file.strip_prefix(&dir) {
        Ok(rel) => rel.display().to_string(),
        Err(_) => file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

/// The statements of one platform image, then their attachments.
#[allow(clippy::too_many_arguments)]
pub fn attach(
    req: &BuildRequest,
    store: &BlobStore,
    graph: &Graph,
    outputs: &[(usize, &PlatformImage)],
    emulator_of: &dyn Fn(&crate::platform::Platform) -> Option<(PathBuf, Digest)>,
    image_name: Option<&str>,
    times: Option<(String, String)>,
    unpack_limit: u64,
) -> Result<Attached, BuildError> {
    let mut attached = Attached {
        manifests: Vec::new(),
        referrers: Vec::new(),
    };
    let base_params = parameters(req);
    for &(node, image) in outputs {
        let plan = &graph.nodes[node].plan;
        let subject = statement::subject_name(image_name, &image.platform);
        let mut statements = Vec::new();
        if let Some(mode) = req.attest.provenance {
            let mut params = base_params.clone();
            params.source_date_epoch = super::effective_epoch(req.source_date_epoch, plan);
            let bases: Vec<BaseFact> = graph
                .bases_of(node)
                .into_iter()
                .map(|(text, platform, base)| BaseFact {
                    reference: text,
                    platform: platform.to_string(),
                    manifest: base.manifest_digest.clone(),
                    layers: base.layers.iter().map(|l| l.digest.clone()).collect(),
                })
                .collect();
            let inputs: Vec<InputFact> = image
                .inputs
                .iter()
                .map(|i| InputFact {
                    path: i.path.clone(),
                    sha256: i.sha256.clone(),
                    mode: i.mode,
                    symlink: i.symlink,
                })
                .collect();
            let emulator = match emulator_of(&image.platform) {
                Some((path, sha256)) => {
                    let version = crate::emulation::qemu::version_of(&path).map_err(|source| {
                        BuildError::Io {
                            what: format!("asking {} for its version", path.display()),
                            source,
                        }
                    })?;
                    Some(EmulatorFact {
                        path: path.display().to_string(),
                        version,
                        sha256,
                    })
                }
                None => None,
            };
            let steps: Vec<String> = plan
                .steps
                .iter()
                .map(|s| format!("{}: {}", s.number, s.describe()))
                .collect();
            let predicate = provenance::predicate(&Facts {
                platform: image.platform.to_string(),
                parameters: &params,
                inputs: &inputs,
                bases: &bases,
                emulator: emulator.as_ref(),
                xbake_version: env!("CARGO_PKG_VERSION"),
                steps: mode.max.then_some(steps.as_slice()),
                times: times.clone().filter(|_| mode.timestamps),
            });
            let s = statement::statement(
                &subject,
                &image.manifest_digest,
                SLSA_PROVENANCE_V1,
                predicate,
            );
            statements.push(Statement {
                predicate_type: SLSA_PROVENANCE_V1.into(),
                bytes: crate::image::canonical_json(&s, "in-toto statement")?,
            });
        }
        if req.attest.sbom {
            let document = sbom_of(store, image, &subject, plan, req, unpack_limit)?;
            let s = statement::statement(&subject, &image.manifest_digest, SPDX_DOCUMENT, document);
            statements.push(Statement {
                predicate_type: SPDX_DOCUMENT.into(),
                bytes: crate::image::canonical_json(&s, "in-toto statement")?,
            });
        }
        attached.manifests.push(attestation_manifest(
            store,
            &image.manifest_digest,
            &statements,
        )?);
        if req.attest.referrers {
            let subject_descriptor = json!({
                "mediaType": image.manifest.media_type().to_string(),
                "digest": image.manifest_digest.to_string(),
                "size": image.manifest.size(),
            });
            let list = statements
                .iter()
                .map(|s| referrer_manifest(store, &subject_descriptor, s))
                .collect::<Result<Vec<_>, _>>()?;
            attached
                .referrers
                .push((image.manifest_digest.clone(), list));
        }
    }
    Ok(attached)
}

/// The SPDX document of one platform image (attest::sbom): the packages of its final
/// filesystem, dated by its SOURCE_DATE_EPOCH and named by its manifest digest, so the
/// same image gives the same document.
fn sbom_of(
    store: &BlobStore,
    image: &PlatformImage,
    subject: &str,
    plan: &crate::recipe::Plan,
    req: &BuildRequest,
    unpack_limit: u64,
) -> Result<serde_json::Value, BuildError> {
    let platform = image.platform.short_name();
    let manifest: oci_spec::image::ImageManifest =
        crate::image::parse_json(&store.read_bytes(&image.manifest_digest)?, "image manifest")?;
    let packages = crate::attest::sbom::packages_in_image(store, manifest.layers(), unpack_limit)
        .map_err(|e| BuildError::Command {
        what: format!("[{platform}] --sbom"),
        message: e.to_string(),
    })?;
    let epoch = super::effective_epoch(req.source_date_epoch, plan);
    let name = if subject == "_" {
        image.manifest_digest.to_string()
    } else {
        subject.to_string()
    };
    Ok(crate::attest::sbom::spdx_document(
        &packages,
        &name,
        &format!("urn:xbake:spdx:{}", image.manifest_digest.hex()),
        &super::timefmt::rfc3339(epoch),
        &format!("xbake-{}", env!("CARGO_PKG_VERSION")),
    ))
}
