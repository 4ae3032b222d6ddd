//! `xbake verify RECIPE --against IMAGE`, or `xbake verify IMAGE` from its provenance:
//! rebuild without the cache, in a temporary place, and compare with the published image.

use super::{EXIT_FAILURE, Failure, UsageError, default_cache_dir};
use crate::audit::open::open;
use crate::audit::{LoadedImage, compare, load};
use crate::build::progress::{Progress, ProgressMode};
use crate::build::timefmt::parse_rfc3339;
use crate::build::{BuildRequest, Output};
use crate::image::reference::ImageRef;
use crate::layer::LayerCompression;
use crate::platform::Platform;
use crate::recipe::Recipe;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// With `--against`: the recipe or Dockerfile the image was built from, or its
    /// context folder (as for `build`). Without: the published image itself
    /// (`oci:DIR[:TAG]`, `oci-archive:FILE`, a registry reference), rebuilt from what its
    /// provenance records (`xbake build --provenance`).
    #[arg(value_name = "RECIPE|DIR|IMAGE")]
    input: String,
    /// As for `build` (default: the folder given, else the recipe's folder; from a
    /// provenance: the current folder).
    #[arg(long = "context", value_name = "DIR")]
    context: Option<PathBuf>,
    /// The stage the image was built from (`xbake build --target`), if not the final one.
    #[arg(long = "target", value_name = "STAGE")]
    target: Option<String>,
    /// The published image: `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, or a registry
    /// reference.
    #[arg(long = "against", value_name = "IMAGE")]
    against: Option<String>,
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
    /// Plain HTTP / no certificate check for the registries involved.
    #[arg(long = "tls-verify", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    tls_verify: bool,
}

/// What the rebuild is given, from the command line or from a provenance.
struct Rebuild {
    recipe: Recipe,
    recipe_name: String,
    context: crate::context::BuildContext,
    target: Option<String>,
    platforms: Vec<Platform>,
    build_args: Vec<(String, String)>,
    epoch: Option<i64>,
    labels: Vec<(String, String)>,
    annotations: Vec<crate::build::annotations::Annotation>,
    compression: LayerCompression,
    no_normalize: bool,
    base_pins: Vec<crate::attest::provenance::BaseFact>,
    /// The statements to attach again, so the rebuilt index can equal the published.
    attest: crate::attest::AttestOptions,
    /// Scope the comparison to these platforms (None: the whole index).
    scope: Option<Vec<String>>,
}

pub fn run(args: VerifyArgs) -> Result<u8, Failure> {
    let cache_root = args.cache_dir.clone().unwrap_or_else(default_cache_dir);
    std::fs::create_dir_all(&cache_root)?;
    let scratch = tempfile::Builder::new()
        .prefix("verify-")
        .tempdir_in(&cache_root)?;
    let against = args.against.clone().unwrap_or_else(|| args.input.clone());
    let reference = ImageRef::parse(&against).map_err(UsageError)?;
    let opened = open(
        &reference,
        scratch.path(),
        &super::registry_options(args.tls_verify),
        true,
    )?;
    let published = &opened.image;
    let rebuild = match &args.against {
        Some(_) => from_recipe(&args, published)?,
        None => match from_provenance(&args, &against, published, &cache_root)? {
            Ok(rebuild) => rebuild,
            Err(code) => return Ok(code),
        },
    };
    rebuild_and_compare(
        &args,
        &against,
        rebuild,
        published,
        &cache_root,
        scratch.path(),
    )
}

/// `verify RECIPE --against IMAGE`: the recipe and options as given.
fn from_recipe(args: &VerifyArgs, published: &LoadedImage) -> Result<Rebuild, Failure> {
    let input = PathBuf::from(&args.input);
    let (recipe_path, context_dir) =
        super::build::resolve_input(Some(&input), None, args.context.as_deref())?;
    let recipe = Recipe::load(&recipe_path)?;
    recipe.output_stage(args.target.as_deref())?;
    let context =
        crate::context::BuildContext::open(context_dir.as_deref().unwrap_or(recipe.dir()))?;
    let platforms = match &args.arch {
        Some(list) => Platform::parse_list(list)?,
        None => published_platforms(published)?,
    };
    let epoch = match super::build::source_date_epoch(args.source_date_epoch)? {
        Some(e) => Some(e),
        None => published
            .platforms
            .first()
            .and_then(|p| p.config["created"].as_str())
            .and_then(parse_rfc3339)
            .filter(|e| *e >= 0),
    };
    let single = !published.media_type.contains("index") && !published.media_type.contains("list");
    // The rebuild attaches nothing: an index with attestations is compared by platform.
    let scope = (single || args.arch.is_some() || has_attestations(published))
        .then(|| platforms.iter().map(|p| p.to_string()).collect());
    Ok(Rebuild {
        recipe,
        recipe_name: args.input.clone(),
        context,
        target: args.target.clone(),
        platforms,
        build_args: super::build::parse_build_args(&args.build_args)?,
        epoch,
        labels: args.labels.clone(),
        annotations: args.annotations.iter().flatten().cloned().collect(),
        compression: args
            .compression
            .unwrap_or_else(|| guess_compression(published)),
        no_normalize: false,
        base_pins: Vec::new(),
        attest: Default::default(),
        scope,
    })
}

/// Whether the published index lists attestation manifests.
fn has_attestations(published: &LoadedImage) -> bool {
    serde_json::from_slice::<serde_json::Value>(&published.raw)
        .ok()
        .and_then(|v| v["manifests"].as_array().cloned())
        .is_some_and(|m| {
            m.iter().any(|d| {
                d["annotations"][crate::attest::REFERENCE_TYPE]
                    == crate::attest::ATTESTATION_MANIFEST
            })
        })
}

fn published_platforms(published: &LoadedImage) -> Result<Vec<Platform>, Failure> {
    Ok(published
        .platforms
        .iter()
        .map(|p| p.platform.parse::<Platform>())
        .collect::<Result<Vec<_>, _>>()?)
}

/// `verify IMAGE`: the recipe, context, bases and options its provenance records. The
/// recipe and every copy input are checked against their recorded digests before
/// anything is rebuilt; a difference is named and ends the verification (exit 1).
fn from_provenance(
    args: &VerifyArgs,
    image: &str,
    published: &LoadedImage,
    cache_root: &std::path::Path,
) -> Result<Result<Rebuild, u8>, Failure> {
    use crate::attest::provenance;
    // The statements of the index that is compared: a registry tag is read again by
    // the digest it had, so a tag moving in between cannot swap the provenance.
    let pinned = match ImageRef::parse(image) {
        Ok(ImageRef::Registry(name)) => {
            let name = name.strip_prefix("docker://").unwrap_or(&name);
            let r: crate::registry::Reference = name.parse()?;
            format!("{}@{}", r.name(), published.digest)
        }
        _ => image.to_string(),
    };
    let found = super::attest::read_all_in(&pinned, args.tls_verify, cache_root)?;
    let mut recorded: Vec<(String, provenance::Recorded)> = Vec::new();
    for f in found
        .iter()
        .filter(|f| f.predicate_type == crate::attest::SLSA_PROVENANCE_V1)
    {
        let Some(platform) = &f.platform else {
            continue;
        };
        if recorded.iter().any(|(p, _)| p == platform) {
            continue;
        }
        let r = provenance::read(&f.statement["predicate"])
            .map_err(|e| UsageError(format!("{image}: the provenance of {platform}: {e}")))?;
        recorded.push((platform.clone(), r));
    }
    let Some((_, first)) = recorded.first() else {
        return Err(UsageError(format!(
            "{image} carries no xbake provenance (build it with --provenance); \
             or give the recipe: xbake verify RECIPE --against {image}"
        ))
        .into());
    };
    let p = first.parameters.clone();
    if p.source_date_epoch < 0 {
        return Err(UsageError(format!(
            "{image}: its provenance records a negative SOURCE_DATE_EPOCH ({})",
            p.source_date_epoch
        ))
        .into());
    }
    let context_dir = args.context.clone().unwrap_or_else(|| PathBuf::from("."));
    // The provenance is the image's word, not ours: a path it records must stay inside
    // the context folder.
    check_inside_context(&p.recipe, image)?;
    for (_, r) in &recorded {
        for i in &r.inputs {
            check_inside_context(&i.path, image)?;
        }
    }
    let recipe_path = context_dir.join(&p.recipe);
    if !std::fs::symlink_metadata(&recipe_path).is_ok_and(|m| m.is_file()) {
        return Err(UsageError(format!(
            "{}: the recipe the provenance records is not a regular file in {} (run verify in \
             the build's context, or give --context DIR)",
            recipe_path.display(),
            context_dir.display()
        ))
        .into());
    }
    let recipe = Recipe::load(&recipe_path)?;
    if recipe.digest() != p.recipe_sha256 {
        println!(
            "differs: {} is not the recipe the provenance records ({} here, {} recorded)",
            recipe_path.display(),
            recipe.digest(),
            p.recipe_sha256
        );
        return Ok(Err(EXIT_FAILURE));
    }
    // Every platform's copy inputs, once per path.
    let mut inputs: Vec<&provenance::InputFact> = Vec::new();
    for (_, r) in &recorded {
        for i in &r.inputs {
            if !inputs.iter().any(|k| k.path == i.path) {
                inputs.push(i);
            }
        }
    }
    let mut differing = 0;
    for input in &inputs {
        if let Some(why) = input_differs(&context_dir, input) {
            println!("differs: context file {}: {why}", input.path);
            differing += 1;
        }
    }
    if differing > 0 {
        println!(
            "not rebuilt: {differing} of the {} context files the provenance records differ in {}",
            inputs.len(),
            context_dir.display()
        );
        return Ok(Err(EXIT_FAILURE));
    }
    let platforms: Vec<Platform> = match &args.arch {
        Some(list) => Platform::parse_list(list)?,
        // Every platform that carries a provenance, in the index's order: a merged
        // index (`manifest create`) holds platforms built on different machines, each
        // provenance naming only its own build's.
        None => {
            let mut ps = Vec::new();
            for (name, _) in &recorded {
                ps.push(name.parse::<Platform>()?);
            }
            ps
        }
    };
    let annotations = p
        .annotations
        .iter()
        .map(|a| super::build::parse_annotation(a).map_err(UsageError))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    let compression = super::build::parse_compression(&p.compression).map_err(UsageError)?;
    let context = crate::context::BuildContext::open(&context_dir)?;
    // The rebuild attaches what the image carries, named as it is named, so the note
    // below can say whether the whole index came out the same (never with timestamps).
    let has = |t: &str| found.iter().any(|f| f.predicate_type == t);
    let provenance_of = found
        .iter()
        .find(|f| f.predicate_type == crate::attest::SLSA_PROVENANCE_V1);
    let attest = crate::attest::AttestOptions {
        provenance: Some(crate::attest::ProvenanceMode {
            max: provenance_of.is_some_and(|f| {
                f.statement["predicate"]["buildDefinition"]["externalParameters"]["steps"]
                    .is_array()
            }),
            timestamps: false,
        }),
        sbom: has(crate::attest::SPDX_DOCUMENT),
        referrers: found
            .iter()
            .any(|f| f.attached == crate::attest::read::Attached::Referrer),
        image_name: provenance_of.and_then(|f| {
            crate::attest::statement::image_name_of(f.statement["subject"][0]["name"].as_str()?)
        }),
    };
    // Platform by platform: the index also holds the attestations, which name this
    // machine's emulators and xbake's version, so another machine's rebuild of the same
    // images need not give the same index (it is compared too, as a note).
    let scope = Some(platforms.iter().map(|p| p.to_string()).collect());
    Ok(Ok(Rebuild {
        recipe,
        recipe_name: format!(
            "the recipe and context its provenance records ({})",
            p.recipe
        ),
        context,
        target: p.target.clone(),
        platforms,
        build_args: p.build_args.clone(),
        epoch: Some(p.source_date_epoch),
        labels: p.labels.clone(),
        annotations,
        compression,
        no_normalize: !p.normalize,
        base_pins: recorded.iter().flat_map(|(_, r)| r.bases.clone()).collect(),
        attest,
        scope,
    }))
}

/// A recorded path must be relative, without `..`: what a copy step reads from the context.
fn check_inside_context(path: &str, image: &str) -> Result<(), UsageError> {
    let clean = !path.is_empty()
        && std::path::Path::new(path).components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        });
    if clean {
        Ok(())
    } else {
        Err(UsageError(format!(
            "{image}: its provenance records the context path {path:?}, which is not inside a context folder; refusing to read it"
        )))
    }
}

/// Why a context file is not the one recorded, if it is not. Its folder must resolve
/// inside the context (a symlinked folder on the way must not lead out of it); a file
/// that is itself a symlink is hashed by its target text, as the build hashes it.
fn input_differs(
    dir: &std::path::Path,
    input: &crate::attest::provenance::InputFact,
) -> Option<String> {
    let path = dir.join(&input.path);
    let inside = match (
        path.parent().map(std::fs::canonicalize),
        std::fs::canonicalize(dir),
    ) {
        (Some(Ok(folder)), Ok(root)) => folder.starts_with(&root),
        _ => false,
    };
    if !inside {
        return Some(format!("its folder is not inside {} here", dir.display()));
    }
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) => return Some(format!("cannot read it here ({e})")),
    };
    if !meta.file_type().is_symlink() && !meta.file_type().is_file() {
        return Some("it is not a regular file here".into());
    }
    if meta.file_type().is_symlink() != input.symlink {
        return Some(if input.symlink {
            "a symlink was recorded, a file is here".into()
        } else {
            "a file was recorded, a symlink is here".into()
        });
    }
    let here = if meta.file_type().is_symlink() {
        match std::fs::read_link(&path) {
            Ok(target) => crate::digest::Digest::of(target.as_os_str().as_encoded_bytes()),
            Err(e) => return Some(format!("cannot read the link ({e})")),
        }
    } else {
        match std::fs::File::open(&path)
            .and_then(|f| crate::digest::HashingReader::new(f).drain_and_finish())
        {
            Ok((digest, _)) => digest,
            Err(e) => return Some(format!("cannot read it here ({e})")),
        }
    };
    if here != input.sha256 {
        return Some(format!("{here} here, {} recorded", input.sha256));
    }
    None
}

fn rebuild_and_compare(
    args: &VerifyArgs,
    against: &str,
    rebuild: Rebuild,
    published: &LoadedImage,
    cache_root: &std::path::Path,
    scratch: &std::path::Path,
) -> Result<u8, Failure> {
    let declared_args = rebuild.recipe.declared_args();
    let count = rebuild.platforms.len();
    if count == 0 {
        return Err(UsageError(format!("{against} holds no image")).into());
    }
    let gzip_threads = super::build::gzip_threads()?;
    let secret_sources = super::build::parse_secrets(&args.secrets)?;
    if let Some(code) = super::preflight(
        &rebuild.recipe,
        &rebuild.platforms,
        &rebuild.build_args,
        None,
        &args.allow,
    )? {
        return Ok(code);
    }
    let secrets = crate::build::secrets::Secrets::read(&secret_sources)?;
    // As for build: a cache inside the context is not part of it.
    let context = rebuild.context.excluding(cache_root);
    // A fresh cache and output of its own: nothing from earlier builds is reused.
    let out_dir = scratch.join("out");
    let request = BuildRequest {
        jobs: super::build::default_jobs(count),
        recipe: rebuild.recipe,
        target: rebuild.target,
        context,
        platforms: rebuild.platforms,
        build_args: rebuild.build_args,
        output: Some(Output::OciLayout {
            dir: out_dir.clone(),
            tag: "rebuilt".into(),
        }),
        progress: Progress::new(args.progress),
        network: None,
        seccomp: Default::default(),
        source_date_epoch: rebuild.epoch,
        cache_dir: scratch.join("cache"),
        no_cache: true,
        no_normalize: rebuild.no_normalize,
        registry: super::registry_options(args.tls_verify),
        push: None,
        push_by_digest: false,
        // An audit rebuilds from nothing: no shared cache in, none out.
        cache_from: Vec::new(),
        cache_to: None,
        max_unpack_size: None,
        force_host_binfmt: super::force_host_binfmt()?,
        limits: super::limits::defaults(),
        labels: rebuild.labels,
        annotations: rebuild.annotations,
        secrets,
        compression: rebuild.compression,
        gzip_threads,
        attest: rebuild.attest.clone(),
        base_pins: rebuild.base_pins,
        sign: None,
    };
    crate::build::run(&request)?;
    let mut rebuilt = load(&crate::image::reference::LayoutRef {
        dir: out_dir,
        tag: Some("rebuilt".into()),
    })?;
    rebuilt.name = format!("rebuild of {}", rebuild.recipe_name);
    let report = compare(published, &rebuilt, rebuild.scope.as_deref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.identical {
        println!(
            "verified: {against} ({}) is reproduced bit for bit from {} ({count} platform{})",
            report.a_digest,
            rebuild.recipe_name,
            if count == 1 { "" } else { "s" }
        );
        if rebuild.attest.any() {
            if report.b_digest == report.a_digest {
                println!("index: identical too, attestations included");
            } else {
                println!(
                    "index: the same platform manifests; its attestations differ \
                     (they name the machine's emulators and xbake's version)"
                );
            }
        }
    } else {
        print!("{}", report.render());
        if args.against.is_some()
            && let Some(note) = default_args_note(&declared_args, &args.build_args)
        {
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
    use super::{check_inside_context, default_args_note};

    #[test]
    fn a_provenance_cannot_point_verify_outside_the_context() {
        assert!(check_inside_context("files/hello.txt", "oci:x").is_ok());
        assert!(check_inside_context("./recipe.yaml", "oci:x").is_ok());
        for hostile in ["../secret", "/etc/shadow", "files/../../x", ""] {
            let err = check_inside_context(hostile, "oci:x").unwrap_err();
            assert!(
                err.0.contains("not inside a context folder"),
                "{hostile}: {}",
                err.0
            );
        }
    }

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
