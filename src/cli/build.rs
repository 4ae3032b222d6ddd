//! `xbake build`.

use super::{Failure, UsageError, default_cache_dir};
use crate::build::annotations::Annotation;
use crate::build::metadata::{BuildFacts, metadata};
use crate::build::progress::{Progress, ProgressMode};
use crate::build::{BuildRequest, Output};
use crate::context::BuildContext;
use crate::image::reference::LayoutRef;
use crate::platform::Platform;
use crate::recipe::{Network, Recipe};
use crate::sandbox::NetworkMode;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The recipe (YAML) or Dockerfile, or a context folder: its Dockerfile, else
    /// Containerfile, else xbake.yaml is built. Default: ./xbake.yaml.
    #[arg(value_name = "RECIPE|DIR")]
    recipe: Option<PathBuf>,
    /// The recipe or Dockerfile, docker-style; a folder given as well is the context
    /// (`-f Containerfile ./context`).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// The build context: the folder COPY and `copy:` sources are read from, whose
    /// `.xbakeignore` (else `.dockerignore`) keeps files out (default: the folder given,
    /// else the recipe's folder).
    #[arg(long = "context", value_name = "DIR")]
    context: Option<PathBuf>,
    /// Platforms, comma-separated or repeated: arm, arm/v6, arm64, ppc64le, s390x,
    /// linux/arm/v7, … Default: the recipe's `platforms:`, else this machine's platform.
    #[arg(long = "arch", visible_alias = "platform", value_name = "LIST", action = clap::ArgAction::Append)]
    arch: Vec<String>,
    /// Where to write the image: `oci:DIR[:TAG]` (an OCI layout), `oci-archive:FILE[:TAG]`
    /// (a tar of one), or `docker-archive:FILE[:NAME:TAG]` (one platform, for `docker
    /// load`). `--push REF` sends it to a registry instead or as well.
    #[arg(short = 'o', long = "output", value_name = "DEST")]
    output: Option<String>,
    /// Build this stage of the recipe (a name under `stages:`) as the output, instead of
    /// the final image.
    #[arg(long = "target", value_name = "STAGE")]
    target: Option<String>,
    /// Tag in the output layout (default: latest); docker's `NAME:TAG` gives TAG.
    #[arg(short = 't', long = "tag")]
    tag: Option<String>,
    /// Override a recipe `args:` value (repeatable).
    #[arg(long = "build-arg", value_name = "NAME=VALUE")]
    build_args: Vec<String>,
    /// A secret for run steps' `type: secret` mounts, docker buildx's syntax:
    /// `id=ID,src=FILE` or `id=ID,env=VARIABLE` (repeatable). Read once, never stored.
    #[arg(long = "secret", value_name = "id=ID,src=FILE|env=VAR")]
    secrets: Vec<String>,
    /// Stage builds (a stage for one platform) run at the same time (default: one per
    /// platform, up to four per CPU).
    #[arg(short = 'j', long = "jobs")]
    jobs: Option<usize>,
    /// plain: every step and its output; tty: one live line per platform; rawjson: one
    /// JSON event per line; quiet: warnings, errors and the digest; auto (default): tty
    /// on a terminal, else plain.
    #[arg(long = "progress", default_value = "auto")]
    progress: ProgressMode,
    /// The network of RUN steps without their own `network:`. private (the default):
    /// their own network namespace, online through slirp4netns or pasta, without the
    /// host's loopback; host: the host's network; none: loopback only.
    #[arg(long = "network", value_name = "private|host|none")]
    network: Option<Network>,
    /// Grant what the recipe asks for beyond the sandbox: `network.host` lets steps with
    /// `network: host` have the host's network (repeatable).
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    allow: Vec<super::Entitlement>,
    /// `seccomp=unconfined`: no seccomp filter (default: Docker's default profile).
    #[arg(long = "security-opt", value_name = "OPT", value_parser = super::security_opt)]
    security_opt: Option<crate::sandbox::SeccompMode>,
    /// Timestamp for `created`, history and the mtime clamp (default:
    /// $SOURCE_DATE_EPOCH, else the recipe's `source_date_epoch:`, else 0).
    #[arg(long = "source-date-epoch", value_name = "SECONDS", value_parser = clap::value_parser!(i64).range(0..))]
    source_date_epoch: Option<i64>,
    /// Cache and scratch folder (default: $XDG_CACHE_HOME/xbake).
    #[arg(long = "cache-dir", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Run every step, even those the cache knows (their results are still recorded).
    #[arg(long = "no-cache")]
    no_cache: bool,
    /// Do not apply the normalisation rules after run steps (see normalize/rules.conf).
    #[arg(long = "no-normalize")]
    no_normalize: bool,
    /// Write the build's digests and inputs as JSON (like docker buildx's).
    #[arg(long = "metadata-file", value_name = "FILE")]
    metadata_file: Option<PathBuf>,
    /// Push the image (every platform and the index) to a registry: `host[:port]/name:tag`.
    #[arg(long = "push", value_name = "REF")]
    push: Option<String>,
    /// Push to this repository (`host[:port]/name`) without a tag, the image known by
    /// its digest alone (printed, and in --metadata-file), for merging per-platform
    /// builds with `xbake manifest create` (buildx's `push-by-digest=true`).
    #[arg(long = "push-by-digest", value_name = "REPO", conflicts_with = "push")]
    push_by_digest: Option<String>,
    /// Write this build's steps and their layers to a shared cache, BuildKit's spelling:
    /// `type=local,dest=DIR[,mode=min|max]` (min, the default: the output's stages only).
    #[arg(long = "cache-to", value_name = "type=local,dest=DIR")]
    cache_to: Option<String>,
    /// Attach SLSA v1 provenance to each platform image, as BuildKit does:
    /// `--provenance` (mode=min), `--provenance=mode=max[,timestamps=true]` (max adds
    /// the output stage's steps; timestamps add the build's start and finish, so the
    /// attestation then differs on every build), `--provenance=false`.
    #[arg(long = "provenance", value_name = "OPTS", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = parse_provenance)]
    provenance: Option<ProvenanceArg>,
    /// Attach an SPDX 2.3 SBOM of each platform image (dpkg, apk and Go modules found in
    /// its final filesystem): `--sbom`, `--sbom=false`.
    #[arg(long = "sbom", value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    sbom: Option<bool>,
    /// Sign the image (its index digest) as `cosign sign --key FILE` does: an ECDSA
    /// P-256 key in cosign's format (`xbake key generate`, or cosign's own), its
    /// password in COSIGN_PASSWORD. The signature goes under cosign's `sha256-HEX.sig`
    /// tag, in the registry (`--push`) and in an oci: layout.
    #[arg(long = "sign-key", value_name = "FILE")]
    sign_key: Option<PathBuf>,
    /// Also attach each statement as an OCI 1.1 referrer of its platform manifest
    /// (`subject`), which `oras discover` lists.
    #[arg(long = "attest-referrers")]
    attest_referrers: bool,
    /// Look steps the local cache misses up in a shared cache (repeatable):
    /// `type=local,src=DIR`.
    #[arg(long = "cache-from", value_name = "type=local,src=DIR")]
    cache_from: Vec<String>,
    /// `false`: plain HTTP, no certificate check, for the registries this build uses.
    #[arg(long = "tls-verify", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    tls_verify: bool,
    /// Most a base may unpack to per platform, in apparent bytes (`500M`, `64G`, `1T`;
    /// default: 64G or the cache's free space, whichever is smaller).
    #[arg(long = "max-unpack-size", value_name = "SIZE", value_parser = parse_unpack_size)]
    max_unpack_size: Option<u64>,
    #[command(flatten)]
    limits: super::limits::LimitArgs,
    /// Add or override a config label, in every platform's image (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Add an annotation, with docker buildx's syntax: `[TYPE[,TYPE…]:]KEY=VALUE`, TYPE
    /// one of manifest (the default), manifest-descriptor, index, index-descriptor; the
    /// manifest ones may name a platform, `manifest[linux/arm64]:KEY=VALUE` (repeatable).
    #[arg(long = "annotation", value_name = "[TYPE:]KEY=VALUE", value_parser = parse_annotation)]
    annotations: Vec<Vec<Annotation>>,
    /// Write the image index digest (`sha256:…`, no newline) to FILE.
    #[arg(long = "iidfile", value_name = "FILE")]
    iidfile: Option<PathBuf>,
    /// How the layers this build makes are compressed: gzip[:1-9] (default gzip:6),
    /// zstd[:1-22] (default level 3) or none. Deterministic: the bytes depend on the
    /// data and this setting only. Base layers are kept as they are.
    #[arg(long = "compression", value_name = "ALGO[:LEVEL]", default_value = "gzip", value_parser = parse_compression)]
    compression: crate::layer::LayerCompression,
}

/// The file to build and the context folder (None: the file's folder), from the
/// positional argument, `-f` and `--context`, as docker build reads them: a folder
/// alone is the context and holds the file; `-f FILE DIR` builds FILE with context DIR.
pub(super) fn resolve_input(
    positional: Option<&Path>,
    file: Option<&Path>,
    context: Option<&Path>,
) -> Result<(PathBuf, Option<PathBuf>), UsageError> {
    let folder = positional.filter(|p| p.is_dir());
    if let (Some(_), Some(_)) = (folder, context) {
        return Err(UsageError(
            "the context is given twice: as the folder argument and as --context".into(),
        ));
    }
    match (positional, file) {
        (Some(p), Some(_)) if folder.is_none() => Err(UsageError(format!(
            "{} is not a folder: with -f, the other argument is the context folder",
            p.display()
        ))),
        (_, Some(file)) => Ok((
            file.to_path_buf(),
            folder.or(context).map(Path::to_path_buf),
        )),
        (Some(dir), None) if folder.is_some() => {
            let found = DEFAULT_FILES
                .iter()
                .map(|name| dir.join(name))
                .find(|p| p.is_file());
            match found {
                Some(path) => Ok((path, Some(dir.to_path_buf()))),
                None => Err(UsageError(format!(
                    "{} has no {}: name the file with -f",
                    dir.display(),
                    DEFAULT_FILES.join(", ")
                ))),
            }
        }
        (Some(path), None) => Ok((path.to_path_buf(), context.map(Path::to_path_buf))),
        (None, None) if Path::new(DEFAULT_RECIPE).is_file() => Ok((
            PathBuf::from(DEFAULT_RECIPE),
            context.map(Path::to_path_buf),
        )),
        (None, None) => Err(UsageError(format!(
            "no recipe given, and this folder has no {DEFAULT_RECIPE}: name a recipe, a \
             Dockerfile or a context folder"
        ))),
    }
}

/// What `xbake build` with no recipe argument builds, from the current folder.
const DEFAULT_RECIPE: &str = "xbake.yaml";

/// What a context folder is searched for, in order.
const DEFAULT_FILES: [&str; 3] = ["Dockerfile", "Containerfile", "xbake.yaml"];

/// `-t app:1` → `1`; `-t 127.0.0.1:5000/app:1` → `1`; `-t 1.0` → `1.0` (xbake's own
/// spelling: the tag alone). A name without a tag (`-t app`) means `app:latest`, as in
/// docker, only when it has a `/`; a bare word stays a tag.
fn tag_part(text: &str) -> &str {
    let last = text.rsplit('/').next().unwrap_or(text);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag,
        None if text.contains('/') => "latest",
        None => text,
    }
}

pub(super) fn parse_compression(text: &str) -> Result<crate::layer::LayerCompression, String> {
    text.parse()
        .map_err(|e: crate::layer::compress::CompressionSpecError| e.to_string())
}

/// `XBAKE_GZIP_THREADS`: how many threads gzip uses (default: one per CPU). The bytes do
/// not depend on it; it is there to measure and to share a machine.
pub(super) fn gzip_threads() -> Result<usize, UsageError> {
    match std::env::var("XBAKE_GZIP_THREADS") {
        Ok(v) if !v.is_empty() => v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
            UsageError(format!(
                "XBAKE_GZIP_THREADS={v:?} is not a number of threads (1 or more)"
            ))
        }),
        _ => Ok(0),
    }
}

pub(super) fn parse_label(text: &str) -> Result<(String, String), String> {
    crate::build::annotations::parse_label(text)
}

pub(super) fn parse_annotation(text: &str) -> Result<Vec<Annotation>, String> {
    crate::build::annotations::parse_annotation(text).map_err(|e| e.to_string())
}

fn parse_unpack_size(text: &str) -> Result<u64, String> {
    crate::cache::prune::parse_size(text)
        .ok_or_else(|| format!("{text:?} is not a size (bytes, or a number with k, M, G or T)"))
}

/// `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]` or `docker-archive:FILE[:NAME:TAG]`, plus
/// `--tag`. `recipe_stem` names a docker-archive image when nothing else does.
fn parse_output(spec: &str, tag: Option<&str>, recipe_stem: &str) -> Result<Output, UsageError> {
    let merge_tag = |from_spec: Option<&str>| -> Result<String, UsageError> {
        let tag = match (from_spec, tag) {
            (Some(a), Some(b)) if a != b => {
                return Err(UsageError(format!(
                    "two tags: {a:?} in --output and {b:?} in --tag"
                )));
            }
            (Some(t), _) | (None, Some(t)) => t,
            (None, None) => "latest",
        };
        if tag.is_empty() || tag.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(UsageError(format!("invalid tag {tag:?}")));
        }
        Ok(tag.to_string())
    };
    if let Some(parsed) = LayoutRef::parse(spec) {
        let parsed = parsed.map_err(UsageError)?;
        return Ok(Output::OciLayout {
            tag: merge_tag(parsed.tag.as_deref())?,
            dir: parsed.dir,
        });
    }
    if let Some(rest) = spec.strip_prefix("oci-archive:") {
        let parsed = LayoutRef::parse_rest(rest).map_err(UsageError)?;
        return Ok(Output::OciArchive {
            tag: merge_tag(parsed.tag.as_deref())?,
            file: parsed.dir,
        });
    }
    if let Some(rest) = spec.strip_prefix("docker-archive:") {
        // skopeo's form: the path ends at the first colon; a docker reference follows.
        let (file, reference) = match rest.split_once(':') {
            Some((f, r)) => (f, Some(r)),
            None => (rest, None),
        };
        if file.is_empty() {
            return Err(UsageError(format!("output {spec:?} names no file")));
        }
        let repo_tag = match (reference, tag) {
            (Some(r), None) => r.to_string(),
            (Some(r), Some(t)) if r.ends_with(&format!(":{t}")) => r.to_string(),
            (Some(r), Some(t)) => {
                return Err(UsageError(format!(
                    "two names: {r:?} in --output and tag {t:?}"
                )));
            }
            (None, Some(t)) if t.contains(':') => t.to_string(),
            (None, t) => format!("localhost/{recipe_stem}:{}", merge_tag(t)?),
        };
        return Ok(Output::DockerArchive {
            file: PathBuf::from(file),
            repo_tag,
        });
    }
    Err(UsageError(format!(
        "unsupported output {spec:?}; use oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE[:NAME:TAG]"
    )))
}

pub(super) fn parse_build_args(raw: &[String]) -> Result<Vec<(String, String)>, UsageError> {
    raw.iter()
        .map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| UsageError(format!("--build-arg {a:?}: expected NAME=VALUE")))
        })
        .collect()
}

/// `--secret` flags (build and run): their syntax is checked before any work, their
/// files and variables are read later, inside the build's namespace.
pub(super) fn parse_secrets(
    raw: &[String],
) -> Result<Vec<crate::build::secrets::SecretSource>, UsageError> {
    raw.iter()
        .map(|text| {
            text.parse()
                .map_err(|e: crate::build::secrets::SecretError| UsageError(e.to_string()))
        })
        .collect()
}

pub(super) fn source_date_epoch(flag: Option<i64>) -> Result<Option<i64>, UsageError> {
    if flag.is_some() {
        return Ok(flag);
    }
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(|| {
                UsageError(format!(
                    "SOURCE_DATE_EPOCH={v:?} is not a number of seconds"
                ))
            }),
        _ => Ok(None),
    }
}

pub fn run(args: BuildArgs) -> Result<u8, Failure> {
    let (recipe_path, context_dir) = resolve_input(
        args.recipe.as_deref(),
        args.file.as_deref(),
        args.context.as_deref(),
    )?;
    let recipe = Recipe::load(&recipe_path)?;
    let cache_dir = args.cache_dir.clone().unwrap_or_else(default_cache_dir);
    // A cache inside the context is never part of it (`COPY .` must not take it in).
    let context =
        BuildContext::open(context_dir.as_deref().unwrap_or(recipe.dir()))?.excluding(&cache_dir);
    let platforms = match args.arch.as_slice() {
        [] if !recipe.platforms().is_empty() => recipe.platforms(),
        [] => vec![Platform::host()],
        lists => Platform::parse_list(&lists.join(","))?,
    };
    let tag = args.tag.as_deref().map(tag_part);
    let stem = recipe_path
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_else(|| "image".into());
    let output = args
        .output
        .as_deref()
        .map(|o| parse_output(o, tag, &stem))
        .transpose()?;
    if matches!(output, Some(Output::DockerArchive { .. })) && platforms.len() != 1 {
        return Err(UsageError(format!(
            "a docker-archive holds one platform; this build is for {} (choose one with --arch)",
            platforms.len()
        ))
        .into());
    }
    if output.is_none() && tag.is_some() {
        return Err(UsageError("--tag needs --output".into()).into());
    }
    let build_args = parse_build_args(&args.build_args)?;
    let push = args
        .push
        .as_deref()
        .map(|r| {
            r.strip_prefix("docker://")
                .unwrap_or(r)
                .parse::<crate::registry::Reference>()
        })
        .transpose()
        .map_err(|e| UsageError(format!("--push: {e}")))?;
    let push_repo = args
        .push_by_digest
        .as_deref()
        .map(|r| {
            let text = r.strip_prefix("docker://").unwrap_or(r);
            let mut parsed = text
                .parse::<crate::registry::Reference>()
                .map_err(|e| UsageError(format!("--push-by-digest: {e}")))?;
            // The parser fills in `latest`; a tag written by the user is in the last
            // path component (a port is in the first).
            let last = text.rsplit('/').next().unwrap_or(text);
            if text.contains('/') && last.contains(':') || text.contains('@') {
                return Err(UsageError(format!(
                    "--push-by-digest {r}: give a repository without a tag or digest \
                     (the image is pushed under its own digest)"
                )));
            }
            parsed.tag = None;
            Ok(parsed)
        })
        .transpose()?;
    let push_by_digest = push_repo.is_some();
    let push = push.or(push_repo);
    let cache_to = args
        .cache_to
        .as_deref()
        .map(|t| {
            crate::cache::shared::parse_flag(t, true)
                .map(|(location, max)| crate::cache::shared::CacheTo { location, max })
                .map_err(|e| UsageError(format!("--cache-to {t}: {e}")))
        })
        .transpose()?;
    let cache_from = args
        .cache_from
        .iter()
        .map(|f| {
            crate::cache::shared::parse_flag(f, false)
                .map(|(location, _)| location)
                .map_err(|e| UsageError(format!("--cache-from {f}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let epoch = source_date_epoch(args.source_date_epoch)?;
    let network = args.network.map(NetworkMode::from);
    let secret_sources = parse_secrets(&args.secrets)?;
    let gzip_threads = gzip_threads()?;
    if let Some(code) = super::preflight(&recipe, &platforms, &build_args, network, &args.allow)? {
        return Ok(code);
    }
    // Inside the build's namespace, once: files and variables are read before any work.
    let secrets = crate::build::secrets::Secrets::read(&secret_sources)?;
    // A push that cannot succeed (registry down, no or wrong credentials, no right to
    // push there) fails now, not after the whole build.
    if let Some(target) = &push {
        let creds = crate::registry::auth::credentials_for(&target.registry)?;
        crate::registry::Client::new(target, &super::registry_options(args.tls_verify), creds)?
            .check_push_access(&target.to_string())?;
    }
    // The same for a registry cache to write (a cache to read that fails is left out
    // with a warning: the build still works without it).
    if let Some(crate::cache::shared::CacheTo {
        location: crate::cache::shared::CacheLocation::Registry { reference },
        ..
    }) = &cache_to
    {
        let target: crate::registry::Reference = reference
            .parse()
            .map_err(|e| UsageError(format!("--cache-to: {e}")))?;
        let creds = crate::registry::auth::credentials_for(&target.registry)?;
        crate::registry::Client::new(&target, &super::registry_options(args.tls_verify), creds)?
            .check_push_access(reference)?;
    }

    // Refused before the namespace is entered, so the error is plain.
    recipe.output_stage(args.target.as_deref())?;
    let effective_epoch = epoch.or(recipe.source_date_epoch()).unwrap_or(0);
    let recipe_path = recipe_path.display().to_string();
    let recipe_digest = recipe.digest();
    let attest = crate::attest::AttestOptions {
        provenance: args.provenance.and_then(|p| p.0),
        sbom: args.sbom.unwrap_or(false),
        referrers: args.attest_referrers,
        image_name: None,
    };
    if attest.referrers && !attest.any() {
        return Err(UsageError("--attest-referrers needs --provenance or --sbom".into()).into());
    }
    // Attestations and signatures need somewhere to go: a layout or OCI archive beside
    // the image, or the registry it is pushed to (a docker-archive has no room).
    let room = push.is_some()
        || matches!(
            output,
            Some(Output::OciLayout { .. } | Output::OciArchive { .. })
        );
    if attest.any() && !room {
        return Err(UsageError(
            "--provenance/--sbom: the attestations need -o oci:DIR (or oci-archive:) or --push; \
             a docker-archive has no room for them"
                .into(),
        )
        .into());
    }
    let sign = match &args.sign_key {
        Some(path) => {
            if !room {
                return Err(UsageError(
                    "--sign-key: the signature needs -o oci:DIR (or oci-archive:) or --push; \
                     a docker-archive has no room for one"
                        .into(),
                )
                .into());
            }
            Some(std::sync::Arc::new(load_sign_key(path)?))
        }
        None => None,
    };
    let progress = Progress::new(args.progress);
    let request = BuildRequest {
        jobs: args.jobs.unwrap_or_else(|| default_jobs(platforms.len())),
        recipe,
        target: args.target.clone(),
        context,
        platforms,
        build_args,
        output: output.clone(),
        progress,
        network,
        seccomp: args.security_opt.unwrap_or_default(),
        source_date_epoch: epoch,
        cache_dir,
        no_cache: args.no_cache,
        no_normalize: args.no_normalize,
        registry: super::registry_options(args.tls_verify),
        push,
        push_by_digest,
        cache_from,
        cache_to,
        max_unpack_size: args.max_unpack_size,
        force_host_binfmt: super::force_host_binfmt()?,
        limits: args.limits.limits(),
        labels: args.labels,
        annotations: args.annotations.into_iter().flatten().collect(),
        secrets,
        compression: args.compression,
        gzip_threads,
        attest,
        base_pins: Vec::new(),
        sign,
    };
    let outcome = crate::build::run(&request)?;
    if epoch.is_none() && request.recipe.source_date_epoch().is_none() {
        note_epoch_default_once(&request.cache_dir, &request.progress);
    }
    let image_name = output.as_ref().map(Output::to_string);
    if let Some(path) = &args.metadata_file {
        let facts = BuildFacts {
            recipe_path: &recipe_path,
            recipe_digest,
            image_name: image_name.clone(),
            source_date_epoch: effective_epoch,
            build_args: &request.build_args,
            normalize: crate::build::metadata::NormalizeFacts {
                rules: crate::normalize::builtin()?,
                enabled: !args.no_normalize,
                steps: outcome.normalized_steps.clone(),
            },
            compression: args.compression,
            target: args.target.as_deref(),
            labels: &request.labels,
            annotations: &request.annotations,
        };
        write_json_atomically(path, &metadata(&outcome, &facts))?;
        hand_back(path)?;
    }
    if let Some(path) = &args.iidfile {
        // As buildx writes it: the digest alone, without a newline.
        write_atomically(path, outcome.index_digest.to_string().as_bytes())?;
        hand_back(path)?;
    }
    // The last lines, in the progress mode's form: none under quiet (the digest on
    // stdout says it all), events under rawjson.
    let progress = &request.progress;
    progress.note(&format!(
        "{} platform{}: {} step{} run, {} cached",
        outcome.platforms.len(),
        if outcome.platforms.len() == 1 {
            ""
        } else {
            "s"
        },
        outcome.steps_run,
        if outcome.steps_run == 1 { "" } else { "s" },
        outcome.steps_cached
    ));
    match (&image_name, &request.push) {
        (Some(name), _) => progress.note(&format!("wrote {name}")),
        (None, Some(target)) if request.push_by_digest => progress.note(&format!(
            "pushed {}@{}",
            target.name(),
            outcome.index_digest
        )),
        (None, Some(_)) => {}
        (None, None) => progress.note("built; nothing written (no --output or --push given)"),
    }
    progress.result(
        &outcome.index_digest.to_string(),
        outcome.steps_run,
        outcome.steps_cached,
    );
    println!("{}", outcome.index_digest);
    Ok(0)
}

/// A file this build wrote for the caller goes back to the caller's ids (root builds).
fn hand_back(path: &std::path::Path) -> Result<(), Failure> {
    crate::sandbox::userns::hand_back_to_caller(path)
        .map_err(|e| anyhow::anyhow!("giving {} back to the caller: {e}", path.display()))?;
    Ok(())
}

/// Pretty JSON and a newline, written atomically.
fn write_json_atomically(path: &std::path::Path, value: &serde_json::Value) -> Result<(), Failure> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    write_atomically(path, &bytes)
}

/// `bytes` to `path` via a temporary file beside it, so readers never see half of it.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<(), Failure> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".xbake-tmp-")
        .tempfile_in(dir)?;
    use std::io::Write;
    tmp.write_all(bytes)?;
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// How many stage builds run at once unless `--jobs` says: every platform side by side,
/// as BuildKit does, up to four per CPU. A platform's emulated steps are mostly one
/// process at a time, waiting on QEMU's translation of each new program and on the
/// kernel; with one slot per CPU, three platforms on two CPUs run in two rounds and the
/// second leaves a CPU idle (2 × T against 1.5 × T side by side). The cap bounds
/// memory when many platforms are built on a small machine.
pub(super) fn default_jobs(platforms: usize) -> usize {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    platforms.clamp(1, 4 * cpus)
}

/// Where the cache remembers that the 1970 note was given.
const EPOCH_NOTE_MARK: &str = "notes/created-1970";

/// The first build of a cache that dates its image by the default SOURCE_DATE_EPOCH (0)
/// says so, once: `podman images` then shows "56 years ago", which looks like a bug.
fn note_epoch_default_once(cache_dir: &std::path::Path, progress: &Progress) {
    if !progress.is_plain() {
        return;
    }
    let mark = cache_dir.join(EPOCH_NOTE_MARK);
    if mark.exists() {
        return;
    }
    progress.note(
        "note: the image's created time is 1970-01-01T00:00:00Z, SOURCE_DATE_EPOCH's \
         default of 0, so that every rebuild gives the same digest (`podman images` shows it \
         as decades ago); --source-date-epoch, $SOURCE_DATE_EPOCH or the recipe's \
         source_date_epoch: date it (said once per cache)",
    );
    // Failing to remember only means saying it again.
    if let Some(dir) = mark.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(&mark, b"");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_a_file_or_both_as_docker_build_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path();
        std::fs::write(ctx.join("Containerfile"), "FROM scratch\n").unwrap();
        std::fs::write(ctx.join("xbake.yaml"), "from: scratch\n").unwrap();
        // A folder: its Containerfile (no Dockerfile there), the folder as context.
        assert_eq!(
            resolve_input(Some(ctx), None, None).unwrap(),
            (ctx.join("Containerfile"), Some(ctx.to_path_buf()))
        );
        std::fs::write(ctx.join("Dockerfile"), "FROM scratch\n").unwrap();
        assert_eq!(
            resolve_input(Some(ctx), None, None).unwrap().0,
            ctx.join("Dockerfile")
        );
        // -f FILE DIR: that file, that context.
        let other = Path::new("elsewhere/Containerfile");
        assert_eq!(
            resolve_input(Some(ctx), Some(other), None).unwrap(),
            (other.to_path_buf(), Some(ctx.to_path_buf()))
        );
        // A file: its own folder unless --context says otherwise.
        let recipe = ctx.join("xbake.yaml");
        assert_eq!(
            resolve_input(Some(&recipe), None, None).unwrap(),
            (recipe.clone(), None)
        );
        assert_eq!(
            resolve_input(Some(&recipe), None, Some(Path::new("c")))
                .unwrap()
                .1,
            Some(PathBuf::from("c"))
        );
        let errors = [
            resolve_input(Some(ctx), None, Some(Path::new("c")))
                .unwrap_err()
                .0,
            resolve_input(Some(&recipe), Some(other), None)
                .unwrap_err()
                .0,
            resolve_input(Some(&ctx.join("missing")), Some(other), None)
                .unwrap_err()
                .0,
        ];
        assert_eq!(
            errors[0],
            "the context is given twice: as the folder argument and as --context"
        );
        assert!(errors[1].ends_with(
            "xbake.yaml is not a folder: with -f, the other argument is the context folder"
        ));
        assert!(errors[2].contains("is not a folder"));
        let empty = tempfile::tempdir().unwrap();
        assert!(
            resolve_input(Some(empty.path()), None, None)
                .unwrap_err()
                .0
                .ends_with("has no Dockerfile, Containerfile, xbake.yaml: name the file with -f")
        );
    }

    #[test]
    fn docker_style_tags_give_their_tag_part() {
        assert_eq!(tag_part("app:1"), "1");
        assert_eq!(tag_part("127.0.0.1:5000/team/app:2.0"), "2.0");
        assert_eq!(tag_part("127.0.0.1:5000/app"), "latest");
        assert_eq!(tag_part("1.0"), "1.0");
    }

    #[test]
    fn output_specs() {
        assert_eq!(
            parse_output("oci:out/app", Some("1.0"), "hello").unwrap(),
            Output::OciLayout {
                dir: "out/app".into(),
                tag: "1.0".into()
            }
        );
        assert_eq!(
            parse_output("oci:out/app:2.0", None, "hello").unwrap(),
            Output::OciLayout {
                dir: "out/app".into(),
                tag: "2.0".into()
            }
        );
        assert_eq!(
            parse_output("oci:/abs/dir", None, "hello").unwrap(),
            Output::OciLayout {
                dir: "/abs/dir".into(),
                tag: "latest".into()
            }
        );
        assert!(parse_output("oci:out:1", Some("2"), "hello").is_err());
        assert!(parse_output("docker:x", None, "hello").is_err());
        assert!(parse_output("oci:", None, "hello").is_err());
        let archive = |spec, tag| parse_output(spec, tag, "hello").map(|o| o.to_string());
        assert_eq!(
            archive("oci-archive:a.tar", Some("1.0")).unwrap(),
            "oci-archive:a.tar:1.0"
        );
        assert_eq!(
            archive("oci-archive:a.tar:2", None).unwrap(),
            "oci-archive:a.tar:2"
        );
        assert_eq!(
            archive("docker-archive:d.tar", Some("1.0")).unwrap(),
            "docker-archive:d.tar:localhost/hello:1.0"
        );
        assert_eq!(
            archive("docker-archive:d.tar:me/app:3", None).unwrap(),
            "docker-archive:d.tar:me/app:3"
        );
        assert_eq!(
            archive("docker-archive:d.tar", Some("reg/x:1")).unwrap(),
            "docker-archive:d.tar:reg/x:1"
        );
        assert!(archive("docker-archive:d.tar:me/app:3", Some("4")).is_err());
        assert!(parse_build_args(&["A=1".into(), "B".into()]).is_err());
        assert_eq!(
            parse_build_args(&["A=1=2".into()]).unwrap(),
            [("A".into(), "1=2".into())]
        );
    }
}

/// `--provenance`'s value: a mode, or off (`false`).
#[derive(Clone, Debug)]
struct ProvenanceArg(Option<crate::attest::ProvenanceMode>);

fn parse_provenance(text: &str) -> Result<ProvenanceArg, String> {
    crate::attest::ProvenanceMode::parse(text).map(ProvenanceArg)
}

/// The `--sign-key` file, decrypted with COSIGN_PASSWORD (cosign's variable).
pub(super) fn load_sign_key(path: &std::path::Path) -> Result<crate::sign::SigningKey, Failure> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("--sign-key {}: {e}", path.display())))?;
    let password = std::env::var_os("COSIGN_PASSWORD").map(|p| p.into_encoded_bytes());
    crate::sign::load_signing_key(&pem, password.as_deref())
        .map_err(|e| UsageError(format!("--sign-key {}: {e}", path.display())).into())
}
