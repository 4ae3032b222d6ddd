//! `xbake inspect IMAGE`: the platforms of an image, or its exact bytes.

use super::{Failure, UsageError, default_cache_dir};
use crate::audit::LoadedImage;
use crate::audit::open::open;
use crate::image::reference::ImageRef;
use clap::Args;
use serde_json::{Value, json};
use std::io::Write;

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, `docker-archive:FILE`, or a registry
    /// reference.
    image: String,
    /// Machine-readable summary.
    #[arg(long, conflicts_with = "raw")]
    json: bool,
    /// The index (or manifest) exactly as stored.
    #[arg(long)]
    raw: bool,
    /// Plain HTTP / no certificate check for this registry.
    #[arg(long = "tls-verify", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    tls_verify: bool,
}

/// One line per platform: what `docker buildx imagetools inspect` shows, plus sizes.
pub fn summary(image: &LoadedImage) -> Value {
    let platforms: Vec<Value> = image
        .platforms
        .iter()
        .map(|p| {
            let c = &p.config["config"];
            json!({
                "platform": p.platform,
                "manifest": p.manifest_digest,
                "layers": p.layers.len(),
                "size": p.layers.iter().map(|l| l.size).sum::<u64>(),
                "created": p.config["created"],
                "entrypoint": c["Entrypoint"],
                "cmd": c["Cmd"],
            })
        })
        .collect();
    json!({"name": image.name, "digest": image.digest, "mediaType": image.media_type, "platforms": platforms})
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / 1_048_576.0),
        b if b >= 1 << 10 => format!("{:.1} kB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

pub fn render(image: &LoadedImage) -> String {
    let mut out = format!(
        "{}\n  digest: {}\n  type:   {}\n",
        image.name, image.digest, image.media_type
    );
    for p in &image.platforms {
        let c = &p.config["config"];
        let show = |v: &Value| {
            if v.is_null() {
                "-".to_string()
            } else {
                v.to_string()
            }
        };
        out.push_str(&format!(
            "{}\n  manifest:   {}\n  layers:     {} ({})\n  created:    {}\n  entrypoint: {}\n  cmd:        {}\n",
            p.platform,
            p.manifest_digest,
            p.layers.len(),
            human_size(p.layers.iter().map(|l| l.size).sum()),
            p.config["created"].as_str().unwrap_or("-"),
            show(&c["Entrypoint"]),
            show(&c["Cmd"]),
        ));
    }
    out
}

pub fn run(args: InspectArgs) -> Result<u8, Failure> {
    let reference = ImageRef::parse(&args.image).map_err(UsageError)?;
    let scratch = crate::build::Workspace::create(&default_cache_dir())?;
    let opened = open(
        &reference,
        scratch.path(),
        &super::registry_options(args.tls_verify),
        false,
    )?;
    if args.raw {
        std::io::stdout().write_all(&opened.image.raw)?;
    } else if args.json {
        println!("{}", serde_json::to_string_pretty(&summary(&opened.image))?);
    } else {
        print!("{}", render(&opened.image));
    }
    Ok(0)
}
