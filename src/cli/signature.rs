//! `xbake verify-signature IMAGE --key cosign.pub`: checks the cosign signatures of an
//! image (registry or layout) as `cosign verify --key` does with a key: each signature
//! under the `sha256-HEX.sig` tag of the image's digest must verify under the key over
//! its simple-signing payload, and the payload must name that digest.

use super::{EXIT_FAILURE, Failure, UsageError, default_cache_dir};
use crate::attest::sources;
use crate::sign::{load_verifying_key, signature_tag, signatures_in, verify_signature_layer};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct VerifySignatureArgs {
    /// `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, or a registry reference.
    image: String,
    /// The public key (`cosign.pub`, PEM).
    #[arg(long = "key", value_name = "FILE")]
    key: PathBuf,
    /// Plain HTTP / no certificate check for this registry.
    #[arg(long = "tls-verify", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    tls_verify: bool,
}

pub fn run(args: VerifySignatureArgs) -> Result<u8, Failure> {
    let pem = std::fs::read_to_string(&args.key)
        .map_err(|e| UsageError(format!("--key {}: {e}", args.key.display())))?;
    let key = load_verifying_key(&pem)
        .map_err(|e| UsageError(format!("--key {}: {e}", args.key.display())))?;
    let scratch = crate::build::Workspace::create(&default_cache_dir())?;
    let opened = sources::open(
        &args.image,
        scratch.path(),
        &super::registry_options(args.tls_verify),
    )
    .map_err(|e| UsageError(format!("{}: {e}", args.image)))?;
    let digest = &opened.top_digest;
    let tag = signature_tag(digest);
    let Some(manifest) = opened
        .source
        .tagged(&tag)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.image))?
    else {
        println!("{} ({digest}): no signatures (no {tag} tag)", args.image);
        return Ok(EXIT_FAILURE);
    };
    let layers =
        signatures_in(&manifest).map_err(|e| anyhow::anyhow!("{}: {tag}: {e}", args.image))?;
    let mut valid = 0;
    for layer in &layers {
        let checked = opened
            .source
            .blob(&layer.digest, layer.size)
            .map_err(|e| e.to_string())
            .and_then(|payload| {
                verify_signature_layer(&key, layer, &payload, digest).map_err(|e| e.to_string())
            });
        match checked {
            Ok(payload) => {
                valid += 1;
                println!(
                    "verified: {} ({digest}) is signed by {} for {}",
                    args.image,
                    args.key.display(),
                    payload.docker_reference
                );
            }
            Err(why) => println!("not verified: signature {}: {why}", layer.digest),
        }
    }
    if valid == 0 {
        println!(
            "{} ({digest}): none of the {} signature{} under {tag} verifies with {}",
            args.image,
            layers.len(),
            if layers.len() == 1 { "" } else { "s" },
            args.key.display()
        );
        return Ok(EXIT_FAILURE);
    }
    Ok(0)
}
