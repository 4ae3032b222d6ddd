//! `xbake manifest create` and `xbake manifest inspect`: multi-platform indexes from
//! per-architecture images (the multi-platform proposal's manifest tool), in a
//! registry or from local layouts.

use super::{Failure, UsageError, default_cache_dir, registry_options};
use crate::audit::open::open;
use crate::digest::Digest;
use crate::image::reference::{ImageRef, LayoutRef};
use crate::image::select::select_manifest;
use crate::image::{BlobStore, canonical_json, descriptor, descriptor_digest, layout, parse_json};
use crate::platform::Platform;
use crate::registry::media_types::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX};
use crate::registry::{self, Client, Reference, RegistryOptions};
use clap::{Args, Subcommand};
use oci_spec::image::{
    Arch, Descriptor, ImageIndex, ImageIndexBuilder, ImageManifest, MediaType, Os, PlatformBuilder,
    SCHEMA_VERSION,
};

#[derive(Args, Debug)]
pub struct ManifestArgs {
    #[command(subcommand)]
    command: ManifestCommand,
}

#[derive(Subcommand, Debug)]
enum ManifestCommand {
    /// Make an index over per-platform images and push it (or write it to a layout).
    Create(CreateArgs),
    /// Show an index: as `xbake inspect`.
    Inspect(super::inspect::InspectArgs),
}

#[derive(Args, Debug)]
struct CreateArgs {
    /// Where the index goes: a registry reference, or `oci:DIR:TAG`.
    #[arg(long)]
    target: String,
    /// With --template: the platforms, comma-separated (`linux/amd64,linux/arm,linux/arm64`).
    #[arg(long, requires = "template")]
    platforms: Option<String>,
    /// Per-platform image names, with ARCH, VARIANT and OS as placeholders
    /// (`registry:5000/name-ARCH:v1`).
    #[arg(long, requires = "platforms")]
    template: Option<String>,
    /// Skip platforms whose image does not exist instead of failing.
    #[arg(long = "ignore-missing")]
    ignore_missing: bool,
    /// Local images to merge (`oci:DIR:TAG`, e.g. built natively on each architecture).
    #[arg(conflicts_with = "template")]
    sources: Vec<String>,
    /// `false`: plain HTTP, no certificate check.
    #[arg(long = "tls-verify", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    tls_verify: bool,
}

pub fn run(args: ManifestArgs) -> Result<u8, Failure> {
    match args.command {
        ManifestCommand::Inspect(args) => super::inspect::run(args),
        ManifestCommand::Create(args) => create(args),
    }
}

/// `registry:5000/name-ARCH:v1` for linux/arm/v7 → `registry:5000/name-arm:v1`.
pub fn expand_template(template: &str, platform: &Platform) -> String {
    template
        .replace("ARCH", platform.oci_arch())
        .replace("VARIANT", platform.oci_variant().unwrap_or(""))
        .replace("OS", platform.os())
}

fn oci_platform(p: &Platform) -> Result<oci_spec::image::Platform, Failure> {
    let mut b = PlatformBuilder::default()
        .architecture(Arch::from(p.oci_arch()))
        .os(Os::from(p.os()));
    if let Some(v) = p.oci_variant() {
        b = b.variant(v.to_string());
    }
    Ok(b.build().map_err(|e| UsageError(e.to_string()))?)
}

/// One platform's manifest, ready to be referenced from the new index.
struct Entry {
    platform: Platform,
    digest: Digest,
    size: u64,
    media_type: String,
    /// The annotations of its descriptor in the index it came from, kept.
    annotations: Option<std::collections::HashMap<String, String>>,
}

/// Whether an attestation entry describes one of the manifests taken.
fn describes_one_of(d: &Descriptor, entries: &[Entry]) -> bool {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(crate::attest::REFERENCE_DIGEST))
        .is_some_and(|subject| entries.iter().any(|e| e.digest.to_string() == *subject))
}

/// `attestations`: BuildKit attestation manifests of the entries, listed after them as in
/// the index they came from.
fn index_bytes(
    entries: &[Entry],
    attestations: &[Descriptor],
) -> Result<(Vec<u8>, &'static str), Failure> {
    // Docker manifests go into a Docker manifest list, anything else into an OCI index.
    let all_docker = entries.iter().all(|e| e.media_type == DOCKER_MANIFEST);
    let media_type = if all_docker {
        DOCKER_MANIFEST_LIST
    } else {
        OCI_INDEX
    };
    let mut manifests = entries
        .iter()
        .map(|e| {
            let mut d = descriptor(MediaType::from(e.media_type.as_str()), &e.digest, e.size)?;
            d.set_platform(Some(oci_platform(&e.platform)?));
            d.set_annotations(e.annotations.clone());
            Ok(d)
        })
        .collect::<Result<Vec<Descriptor>, Failure>>()?;
    manifests.extend(attestations.iter().cloned());
    let index = ImageIndexBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::from(media_type))
        .manifests(manifests)
        .build()
        .map_err(|e| UsageError(e.to_string()))?;
    Ok((canonical_json(&index, "image index")?, media_type))
}

fn create(args: CreateArgs) -> Result<u8, Failure> {
    let opts = registry_options(args.tls_verify);
    let target = ImageRef::parse(&args.target).map_err(UsageError)?;
    match (&args.template, &args.platforms) {
        (Some(template), Some(platforms)) => {
            let ImageRef::Registry(target) = target else {
                return Err(UsageError("--template works with a registry --target".into()).into());
            };
            let target: Reference = target.parse()?;
            let platforms = Platform::parse_list(platforms)?;
            from_template(template, &platforms, &target, &opts, args.ignore_missing)
        }
        _ if !args.sources.is_empty() => match &target {
            // Registry to registry: manifests and blobs go across (mounted where they
            // share a registry), nothing is pulled that the target has.
            ImageRef::Registry(name)
                if args
                    .sources
                    .iter()
                    .all(|s| matches!(ImageRef::parse(s), Ok(ImageRef::Registry(_)))) =>
            {
                merge_registry(&args.sources, &name.parse()?, &opts)
            }
            _ => merge_local(&args.sources, &target, &opts),
        },
        _ => Err(
            UsageError("give --platforms and --template, or local images to merge".into()).into(),
        ),
    }
}

fn from_template(
    template: &str,
    platforms: &[Platform],
    target: &Reference,
    opts: &RegistryOptions,
    ignore_missing: bool,
) -> Result<u8, Failure> {
    let target_client = Client::new(
        target,
        opts,
        registry::auth::credentials_for(&target.registry)?,
    )?;
    let scratch = crate::build::Workspace::create(&default_cache_dir())?;
    let store = BlobStore::open(scratch.path())?;
    let mut entries = Vec::new();
    for platform in platforms {
        let name = expand_template(template, platform);
        let source: Reference = name.parse()?;
        let client = Client::new(
            &source,
            opts,
            registry::auth::credentials_for(&source.registry)?,
        )?;
        let mut manifest = match client.get_manifest(&source.tag_or_digest()) {
            Ok(m) => m,
            Err(registry::RegistryError::ManifestUnknown { .. }) if ignore_missing => {
                eprintln!("skipping {platform}: {name} does not exist");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if manifest.media_type == OCI_INDEX || manifest.media_type == DOCKER_MANIFEST_LIST {
            let index: ImageIndex = parse_json(&manifest.bytes, "image index")?;
            let chosen = select_manifest(&index, platform, &name)?.descriptor;
            manifest = client.get_manifest_sized(&descriptor_digest(&chosen)?, chosen.size())?;
        }
        copy_manifest(&client, &source, &target_client, target, &manifest, &store)?;
        eprintln!("{platform}: {name} ({})", manifest.digest);
        entries.push(Entry {
            platform: *platform,
            digest: manifest.digest,
            size: manifest.bytes.len() as u64,
            media_type: manifest.media_type,
            annotations: None,
        });
    }
    if entries.is_empty() {
        return Err(UsageError("none of the images exists; nothing to push".into()).into());
    }
    let (bytes, media_type) = index_bytes(&entries, &[])?;
    let tag = target.tag_or_digest();
    target_client.put_manifest(&tag, media_type, &bytes)?;
    eprintln!("pushed {target}");
    println!("{}", Digest::of(&bytes));
    Ok(0)
}

/// Puts one platform manifest (from `client`'s repository) into the target repository:
/// its config and layers first (skipped where the target has them, mounted across
/// repositories of one registry, else copied through `store`), then the manifest under
/// its digest.
fn copy_manifest(
    client: &Client,
    source: &Reference,
    target_client: &Client,
    target: &Reference,
    manifest: &registry::Manifest,
    store: &BlobStore,
) -> Result<(), Failure> {
    let parsed: ImageManifest = parse_json(&manifest.bytes, "image manifest")?;
    let blobs = std::iter::once(parsed.config().clone()).chain(parsed.layers().iter().cloned());
    for d in blobs {
        let digest = descriptor_digest(&d)?;
        if target_client.blob_exists(&digest)? {
            continue;
        }
        // Same registry: mount across repositories; otherwise copy through here.
        let mounted = source.registry == target.registry
            && source.repository != target.repository
            && target_client.mount_blob(&digest, &source.repository)?;
        if !mounted {
            client.fetch_blob(&digest, d.size(), store)?;
            target_client.upload_blob(&digest, d.size(), store.open_blob(&digest)?)?;
        }
    }
    target_client.put_manifest(
        &manifest.digest.to_string(),
        &manifest.media_type,
        &manifest.bytes,
    )?;
    Ok(())
}

/// The platform a lone manifest is for, from its config.
fn platform_of_manifest(
    client: &Client,
    manifest: &registry::Manifest,
    store: &BlobStore,
) -> Result<Platform, Failure> {
    let parsed: ImageManifest = parse_json(&manifest.bytes, "image manifest")?;
    let config = parsed.config();
    let digest = descriptor_digest(config)?;
    client.fetch_blob(&digest, config.size(), store)?;
    let bytes = store.read_bytes(&digest)?;
    let value: serde_json::Value = parse_json(&bytes, "image config")?;
    Ok(crate::audit::load::platform_name(&value).parse()?)
}

/// `xbake manifest create --target REF SOURCE…` with every source in a registry: the
/// CI merge of per-platform pushes (`--push-by-digest`), as `docker buildx imagetools
/// create` does. A source may be a platform manifest or an index (its platform
/// manifests are taken, with their annotations); a platform in two sources is an error.
fn merge_registry(
    sources: &[String],
    target: &Reference,
    opts: &RegistryOptions,
) -> Result<u8, Failure> {
    let target_client = Client::new(
        target,
        opts,
        registry::auth::credentials_for(&target.registry)?,
    )?;
    let scratch = crate::build::Workspace::create(&default_cache_dir())?;
    let store = BlobStore::open(scratch.path())?;
    let mut entries: Vec<Entry> = Vec::new();
    let mut attestations: Vec<Descriptor> = Vec::new();
    for name in sources {
        let source: Reference = name.strip_prefix("docker://").unwrap_or(name).parse()?;
        let client = Client::new(
            &source,
            opts,
            registry::auth::credentials_for(&source.registry)?,
        )?;
        let top = client.get_manifest(&source.tag_or_digest())?;
        let mut found: Vec<(registry::Manifest, Platform, Option<_>)> = Vec::new();
        let mut attached: Vec<Descriptor> = Vec::new();
        if top.media_type == OCI_INDEX || top.media_type == DOCKER_MANIFEST_LIST {
            let index: ImageIndex = parse_json(&top.bytes, "image index")?;
            for d in index.manifests() {
                // Attestation manifests go along with the manifests they describe.
                if crate::attest::manifest::is_attestation_entry(d) {
                    attached.push(d.clone());
                    continue;
                }
                let Some(p) = d.platform() else { continue };
                let text = match p.variant() {
                    Some(v) => format!("{}/{}/{v}", p.os(), p.architecture()),
                    None => format!("{}/{}", p.os(), p.architecture()),
                };
                let Ok(platform) = text.parse::<Platform>() else {
                    continue;
                };
                let manifest = client.get_manifest_sized(&descriptor_digest(d)?, d.size())?;
                found.push((manifest, platform, d.annotations().clone()));
            }
        } else {
            let platform = platform_of_manifest(&client, &top, &store)?;
            found.push((top, platform, None));
        }
        for (manifest, platform, annotations) in found {
            if entries.iter().any(|e| e.platform == platform) {
                return Err(
                    UsageError(format!("{platform} appears in more than one source")).into(),
                );
            }
            copy_manifest(&client, &source, &target_client, target, &manifest, &store)?;
            eprintln!("{platform}: {name} ({})", manifest.digest);
            entries.push(Entry {
                platform,
                size: manifest.bytes.len() as u64,
                digest: manifest.digest,
                media_type: manifest.media_type,
                annotations,
            });
        }
        for d in attached
            .into_iter()
            .filter(|d| describes_one_of(d, &entries))
        {
            let manifest = client.get_manifest_sized(&descriptor_digest(&d)?, d.size())?;
            copy_manifest(&client, &source, &target_client, target, &manifest, &store)?;
            attestations.push(d);
        }
    }
    if entries.is_empty() {
        return Err(UsageError("the sources hold no platform images".into()).into());
    }
    let (bytes, media_type) = index_bytes(&entries, &attestations)?;
    target_client.put_manifest(&target.tag_or_digest(), media_type, &bytes)?;
    eprintln!("pushed {target}");
    println!("{}", Digest::of(&bytes));
    Ok(0)
}

/// Merges the platform manifests of local layouts into one index.
fn merge_local(
    sources: &[String],
    target: &ImageRef,
    opts: &RegistryOptions,
) -> Result<u8, Failure> {
    let scratch = crate::build::Workspace::create(&default_cache_dir())?;
    let store = BlobStore::open(&scratch.path().join("store"))?;
    let mut entries: Vec<Entry> = Vec::new();
    let mut attestations: Vec<Descriptor> = Vec::new();
    let mut blobs: Vec<Digest> = Vec::new();
    for (i, text) in sources.iter().enumerate() {
        let reference = ImageRef::parse(text).map_err(UsageError)?;
        let opened = open(
            &reference,
            &scratch.path().join(format!("source-{i}")),
            opts,
            true,
        )?;
        let image = &opened.image;
        let source_store = BlobStore::open(
            image
                .blobs
                .parent()
                .and_then(|p| p.parent())
                .unwrap_or(&image.blobs),
        )?;
        for p in &image.platforms {
            let platform: Platform = p.platform.parse()?;
            if entries.iter().any(|e| e.platform == platform) {
                return Err(
                    UsageError(format!("{platform} appears in more than one source")).into(),
                );
            }
            let manifest_bytes = source_store.read_bytes(&p.manifest_digest)?;
            let manifest: ImageManifest = parse_json(&manifest_bytes, "image manifest")?;
            let mut all = vec![
                p.manifest_digest.clone(),
                descriptor_digest(manifest.config())?,
            ];
            for l in manifest.layers() {
                all.push(descriptor_digest(l)?);
            }
            for d in &all {
                source_store.export_to(d, &store)?;
            }
            blobs.extend(all);
            let media_type = serde_json::from_slice::<serde_json::Value>(&manifest_bytes)
                .ok()
                .and_then(|v| v["mediaType"].as_str().map(String::from))
                .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
            // The source index's annotations for this manifest, if it is an index.
            let annotations = serde_json::from_slice::<ImageIndex>(&image.raw)
                .ok()
                .and_then(|index| {
                    index
                        .manifests()
                        .iter()
                        .find(|d| d.digest().to_string() == p.manifest_digest.to_string())
                        .and_then(|d| d.annotations().clone())
                });
            entries.push(Entry {
                platform,
                digest: p.manifest_digest.clone(),
                size: manifest_bytes.len() as u64,
                media_type,
                annotations,
            });
        }
        // The source's attestation manifests of the manifests taken, when it has them
        // (a registry source read for merging carries none).
        let listed = serde_json::from_slice::<ImageIndex>(&image.raw)
            .map(|index| index.manifests().clone())
            .unwrap_or_default();
        for d in listed {
            if !crate::attest::manifest::is_attestation_entry(&d) || !describes_one_of(&d, &entries)
            {
                continue;
            }
            let digest = descriptor_digest(&d)?;
            if !source_store.contains(&digest) {
                continue;
            }
            let bytes = source_store.read_bytes(&digest)?;
            let manifest: ImageManifest = parse_json(&bytes, "attestation manifest")?;
            let mut all = vec![digest, descriptor_digest(manifest.config())?];
            for l in manifest.layers() {
                all.push(descriptor_digest(l)?);
            }
            for b in &all {
                source_store.export_to(b, &store)?;
            }
            blobs.extend(all);
            attestations.push(d);
        }
    }
    let (bytes, media_type) = index_bytes(&entries, &attestations)?;
    let (index_digest, size) = store.put_bytes(&bytes)?;
    blobs.push(index_digest.clone());
    blobs.sort();
    blobs.dedup();
    match target {
        ImageRef::Layout(LayoutRef { dir, tag }) => {
            let top = descriptor(MediaType::from(media_type), &index_digest, size)?;
            layout::write_tag(
                dir,
                &store,
                &blobs,
                tag.as_deref().unwrap_or("latest"),
                &top,
            )?;
            eprintln!("wrote {target}");
        }
        ImageRef::Registry(name) => {
            let reference: Reference = name.parse()?;
            let creds = registry::auth::credentials_for(&reference.registry)?;
            registry::push(
                &store,
                media_type,
                &index_digest,
                &reference,
                opts,
                creds,
                None,
            )?;
            eprintln!("pushed {reference}");
        }
        ImageRef::OciArchive(_) | ImageRef::DockerArchive(_) => {
            return Err(UsageError("write the index to oci:DIR:TAG or a registry".into()).into());
        }
    }
    println!("{index_digest}");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_per_platform() {
        let p = |s: &str| s.parse::<Platform>().unwrap();
        assert_eq!(
            expand_template("r:5000/name-ARCH:v1", &p("linux/arm")),
            "r:5000/name-arm:v1"
        );
        assert_eq!(
            expand_template("r/name-ARCHVARIANT:v1", &p("arm/v6")),
            "r/name-armv6:v1"
        );
        assert_eq!(
            expand_template("r/name-OS-ARCH:v1", &p("arm64")),
            "r/name-linux-arm64:v1"
        );
    }
}
