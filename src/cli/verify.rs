//! `xbake verify RECIPE --against IMAGE`: rebuild without the cache, in a temporary
//! place, and compare with a published image.

use super::diff::parse_image;
use super::{EXIT_FAILURE, Failure, UsageError, default_cache_dir};
use crate::audit::{compare, load};
use crate::build::progress::{Progress, ProgressMode};
use crate::build::timefmt::parse_rfc3339;
use crate::build::{BuildRequest, Output};
use crate::layer::LayerCompression;
use crate::platform::Platform;
use crate::recipe::Recipe;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The recipe or Dockerfile the image was built from, or its context folder (as for
    /// `build`: its Dockerfile, else Containerfile, else xbake.yaml).
    #[arg(value_name = "RECIPE|DIR")]
    recipe: PathBuf,
    /// As for `build` (default: the folder given, else the recipe's folder).
    #[arg(long = "context", value_name = "DIR")]
    context: Option<PathBuf>,
    /// The stage the image was built from (`xbake build --target`), if not the final one.
    #[arg(long = "target", value_name = "STAGE")]
    target: Option<String>,
    /// The published image: `oci:DIR[:TAG]`.
    #[arg(long = "against", value_name = "IMAGE")]
    against: String,
    /// Platforms to rebuild (default: every platform of the image).
    #[arg(long = "arch", visible_alias = "platform", value_name = "LIST")]
    arch: Option<String>,
    /// As for `build`.
    #[arg(long = "build-arg", value_name = "NAME=VALUE")]
    build_args: Vec<String>,
    /// As for `build`: a step that needs a secret cannot be rebuilt without it.
    #[arg(long = "secret", value_name = "id=ID,src=FILE|env=VAR")]
    secrets: Vec<String>,
    /// As for `build`: the labels the image was built with.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = super::build::parse_label)]
    labels: Vec<(String, String)>,
    /// As for `build`: the annotations the image was built with.
    #[arg(long = "annotation", value_name = "[TYPE:]KEY=VALUE", value_parser = super::build::parse_annotation)]
    annotations: Vec<Vec<crate::build::annotations::Annotation>>,
    /// Default: $SOURCE_DATE_EPOCH, else the image's own `created` time.
    #[arg(long = "source-date-epoch", value_name = "SECONDS", value_parser = clap::value_parser!(i64).range(0..))]
    source_date_epoch: Option<i64>,
    /// Progress of the rebuild (default: quiet).
    #[arg(long = "progress", default_value = "quiet")]
    progress: ProgressMode,
    /// Print the comparison as JSON.
    #[arg(long)]
    json: bool,
    /// Grant what the recipe asks for beyond the sandbox, as for `xbake build`.
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    allow: Vec<super::Entitlement>,
    /// Where the temporary rebuild happens (default: $XDG_CACHE_HOME/xbake).
    #[arg(long = "cache-dir", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// The `--compression` the image was built with (`xbake.compression` in its
    /// metadata file). Default: the algorithm of the image's top layer at its default
    /// level, since an image does not record the level.
    #[arg(long = "compression", value_name = "ALGO[:LEVEL]", value_parser = super::build::parse_compression)]
    compression: Option<crate::layer::LayerCompression>,
}

pub fn run(args: VerifyArgs) -> Result<u8, Failure> {
    let (recipe_path, context_dir) =
        super::build::resolve_input(Some(&args.recipe), None, args.context.as_deref())?;
    let recipe = Recipe::load(&recipe_path)?;
    let declared_args = recipe.declared_args();
    recipe.output_stage(args.target.as_deref())?;
    let context =
        crate::context::BuildContext::open(context_dir.as_deref().unwrap_or(recipe.dir()))?;
    let reference = parse_image(&args.against)?;
    let published = load(&reference)?;
    let platforms = match &args.arch {
        Some(list) => Platform::parse_list(list)?,
        None => published
            .platforms
            .iter()
            .map(|p| p.platform.parse::<Platform>())
            .collect::<Result<Vec<_>, _>>()?,
    };
    let scope_names: Vec<String> = platforms.iter().map(|p| p.to_string()).collect();
    if platforms.is_empty() {
        return Err(UsageError(format!("{} holds no image", args.against)).into());
    }
    let build_args = super::build::parse_build_args(&args.build_args)?;
    let gzip_threads = super::build::gzip_threads()?;
    let epoch = match super::build::source_date_epoch(args.source_date_epoch)? {
        Some(e) => Some(e),
        None => published
            .platforms
            .first()
            .and_then(|p| p.config["created"].as_str())
            .and_then(parse_rfc3339)
            .filter(|e| *e >= 0),
    };
    let secret_sources = super::build::parse_secrets(&args.secrets)?;
    if let Some(code) = super::preflight(&recipe, &platforms, &build_args, None, &args.allow)? {
        return Ok(code);
    }
    let secrets = crate::build::secrets::Secrets::read(&secret_sources)?;

    let cache_root = args.cache_dir.unwrap_or_else(default_cache_dir);
    std::fs::create_dir_all(&cache_root)?;
    // As for build: a cache inside the context is not part of it.
    let context = context.excluding(&cache_root);
    // A fresh cache and output of its own: nothing from earlier builds is reused.
    let scratch = tempfile::Builder::new()
        .prefix("verify-")
        .tempdir_in(&cache_root)?;
    let out_dir = scratch.path().join("out");
    let count = platforms.len();
    let request = BuildRequest {
        jobs: super::build::default_jobs(count),
        recipe,
        target: args.target.clone(),
        context,
        platforms,
        build_args,
        output: Some(Output::OciLayout {
            dir: out_dir.clone(),
            tag: "rebuilt".into(),
        }),
        progress: Progress::new(args.progress),
        network: None,
        seccomp: Default::default(),
        source_date_epoch: epoch,
        cache_dir: scratch.path().join("cache"),
        no_cache: true,
        no_normalize: false,
        registry: super::registry_options(true),
        push: None,
        push_by_digest: false,
        // An audit rebuilds from nothing: no shared cache in, none out.
        cache_from: Vec::new(),
        cache_to: None,
        max_unpack_size: None,
        force_host_binfmt: super::force_host_binfmt()?,
        limits: super::limits::defaults(),
        labels: args.labels,
        annotations: args.annotations.into_iter().flatten().collect(),
        secrets,
        compression: args
            .compression
            .unwrap_or_else(|| guess_compression(&published)),
        gzip_threads,
    };
    crate::build::run(&request)?;
    let mut rebuilt = load(&crate::image::reference::LayoutRef {
        dir: out_dir,
        tag: Some("rebuilt".into()),
    })?;
    rebuilt.name = format!("rebuild of {}", args.recipe.display());
    // A single published manifest, or --arch: compare those platforms only.
    let single = !published.media_type.contains("index") && !published.media_type.contains("list");
    let scope: Option<Vec<String>> = if single || args.arch.is_some() {
        Some(scope_names)
    } else {
        None
    };
    let report = compare(&published, &rebuilt, scope.as_deref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.identical {
        println!(
            "verified: {} ({}) is reproduced bit for bit from {} ({count} platform{})",
            args.against,
            report.a_digest,
            args.recipe.display(),
            if count == 1 { "" } else { "s" }
        );
    } else {
        print!("{}", report.render());
        if let Some(note) = default_args_note(&declared_args, &args.build_args) {
            println!("{note}");
        }
    }
    Ok(if report.identical { 0 } else { EXIT_FAILURE })
}

/// The compression of the published image's top layer, at that algorithm's default
/// level: the layer the recipe's last step made (or its base, when no step made one).
fn guess_compression(published: &crate::audit::load::LoadedImage) -> LayerCompression {
    let top = published
        .platforms
        .first()
        .and_then(|p| p.layers.last())
        .map(|l| l.media_type.as_str());
    let spec = match top {
        Some(t) if t.ends_with("+zstd") || t.ends_with(".zstd") => "zstd",
        Some(t) if t.ends_with(".tar") => "none",
        _ => "gzip",
    };
    spec.parse().unwrap_or_default()
}

/// After differences: the rebuild took the recipe's defaults for the build args nobody
/// gave, and an image built with `--build-arg` differs for that reason alone. (The
/// image does not record its build args; provenance will.)
fn default_args_note(declared: &[(String, String)], given: &[String]) -> Option<String> {
    let given: Vec<&str> = given
        .iter()
        .map(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k))
        .collect();
    let defaults: Vec<String> = declared
        .iter()
        .filter(|(name, _)| !given.contains(&name.as_str()))
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    (!defaults.is_empty()).then(|| {
        format!(
            "note: the rebuild used the recipe's defaults for {}; if the image was built \
             with --build-arg, give verify the same --build-arg values",
            defaults.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::default_args_note;

    #[test]
    fn the_note_names_the_defaults_the_rebuild_took() {
        let declared = vec![
            ("VERSION".to_string(), "1.0".to_string()),
            ("FLAVOR".to_string(), String::new()),
        ];
        let note = default_args_note(&declared, &[]).unwrap();
        assert!(note.contains("defaults for VERSION=1.0, FLAVOR="), "{note}");
        let note = default_args_note(&declared, &["VERSION=2".into()]).unwrap();
        assert!(note.contains("defaults for FLAVOR="), "{note}");
        assert!(!note.contains("VERSION"), "{note}");
        assert_eq!(
            default_args_note(&declared, &["VERSION=2".into(), "FLAVOR=x".into()]),
            None
        );
        assert_eq!(default_args_note(&[], &[]), None);
    }
}
