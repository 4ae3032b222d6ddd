//! `xbake attest inspect IMAGE`: the provenance and SBOMs attached to an image, per
//! platform, wherever they were attached (attestation manifests, OCI 1.1 referrers).

use super::{Failure, UsageError, default_cache_dir};
use crate::attest::read::{Found, statements};
use crate::attest::{SLSA_PROVENANCE_V1, SPDX_DOCUMENT, provenance, sources};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

#[derive(Args, Debug)]
pub struct AttestArgs {
    #[command(subcommand)]
    command: AttestCommand,
}

#[derive(Subcommand, Debug)]
enum AttestCommand {
    /// List each platform's statements and what they say.
    Inspect(InspectArgs),
}

#[derive(Args, Debug)]
struct InspectArgs {
    /// `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, or a registry reference.
    image: String,
    /// Every statement whole, as JSON.
    #[arg(long)]
    json: bool,
    /// Plain HTTP / no certificate check for this registry.
    #[arg(long = "tls-verify", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    tls_verify: bool,
}

pub fn run(args: AttestArgs) -> Result<u8, Failure> {
    match args.command {
        AttestCommand::Inspect(args) => inspect(args),
    }
}

/// Reads every statement of `image` (attestation manifests and referrers).
pub fn read_all(image: &str, tls_verify: bool) -> Result<Vec<Found>, Failure> {
    read_all_in(image, tls_verify, &default_cache_dir())
}

/// [`read_all`] with its scratch space under `cache_dir`.
pub fn read_all_in(
    image: &str,
    tls_verify: bool,
    cache_dir: &std::path::Path,
) -> Result<Vec<Found>, Failure> {
    let scratch = crate::build::Workspace::create(cache_dir)?;
    let opened = sources::open(image, scratch.path(), &super::registry_options(tls_verify))
        .map_err(|e| UsageError(format!("{image}: {e}")))?;
    let (_, found) = statements(
        opened.source.as_ref(),
        &opened.top,
        &opened.top_digest,
        opened.top_size,
        true,
    )
    .map_err(|e| anyhow::anyhow!("{image}: {e}"))?;
    Ok(found)
}

fn inspect(args: InspectArgs) -> Result<u8, Failure> {
    let found = read_all(&args.image, args.tls_verify)?;
    if args.json {
        let all: Vec<Value> = found
            .iter()
            .map(|f| {
                json!({
                    "platform": f.platform,
                    "subject": f.subject,
                    "predicateType": f.predicate_type,
                    "attached": f.attached,
                    "digest": f.layer,
                    "statement": f.statement,
                })
            })
            .collect();
        super::print_out(&format!("{}\n", serde_json::to_string_pretty(&all)?))?;
        return Ok(0);
    }
    if found.is_empty() {
        super::print_out(&format!("{}: no attestations\n", args.image))?;
        return Ok(0);
    }
    let mut out = String::new();
    for f in &found {
        let attached = match f.attached {
            crate::attest::read::Attached::AttestationManifest => "attestation manifest",
            crate::attest::read::Attached::Referrer => "referrer",
        };
        out.push_str(&format!(
            "{} ({}): {} [{attached}, {}]\n",
            f.platform.as_deref().unwrap_or("?"),
            f.subject,
            f.predicate_type,
            f.layer
        ));
        for line in summary(f) {
            out.push_str(&format!("  {line}\n"));
        }
    }
    super::print_out(&out)?;
    Ok(0)
}

/// A few lines on what a statement says.
fn summary(f: &Found) -> Vec<String> {
    let predicate = &f.statement["predicate"];
    match f.predicate_type.as_str() {
        SLSA_PROVENANCE_V1 => match provenance::read(predicate) {
            Ok(r) => {
                let p = &r.parameters;
                let mut lines = vec![
                    format!(
                        "builder: {} {}",
                        predicate["runDetails"]["builder"]["id"]
                            .as_str()
                            .unwrap_or("?"),
                        predicate["runDetails"]["builder"]["version"]["xbake"]
                            .as_str()
                            .unwrap_or("")
                    ),
                    format!("recipe: {} ({}, {})", p.recipe, p.frontend, p.recipe_sha256),
                    format!(
                        "context: {} files{}",
                        r.inputs.len(),
                        r.context_digest
                            .map(|d| format!(" ({d})"))
                            .unwrap_or_default()
                    ),
                    format!("source date epoch: {}", p.source_date_epoch),
                ];
                for b in &r.bases {
                    let digest = b.manifest.as_ref().or(b.layers.first());
                    lines.push(format!(
                        "base: {} for {} ({})",
                        b.reference,
                        b.platform,
                        digest
                            .map(|d| d.to_string())
                            .unwrap_or_else(|| "nothing".into())
                    ));
                }
                if !p.build_args.is_empty() {
                    let args: Vec<String> = p
                        .build_args
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    lines.push(format!("build args: {}", args.join(" ")));
                }
                if let Some(e) = &r.emulator {
                    lines.push(format!(
                        "emulator: {} ({}, {})",
                        e.path, e.version, e.sha256
                    ));
                }
                lines
            }
            Err(e) => vec![format!("not xbake's provenance: {e}")],
        },
        SPDX_DOCUMENT => {
            let packages = predicate["packages"].as_array().map_or(0, Vec::len);
            vec![format!(
                "{} ({packages} package{}, the image's own included)",
                predicate["spdxVersion"].as_str().unwrap_or("SPDX"),
                if packages == 1 { "" } else { "s" }
            )]
        }
        _ => Vec::new(),
    }
}
