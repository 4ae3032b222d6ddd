//! A step cache shared between machines, BuildKit's `--cache-to type=local,dest=DIR`
//! / `type=registry,ref=REF` and `--cache-from type=local,src=DIR` / `type=registry,
//! ref=REF`: after a build, its step records and their layers are written as an OCI
//! layout (tag `cache`), or pushed to a registry, holding an image index of one
//! cache manifest per platform, whose config lists the steps (key → record) and whose
//! layers are the steps' layers. Before a build, such a layout is read (every document
//! checked against its digest); a step the local cache misses is looked up there, and
//! only then is its layer brought in, verified twice: the blob against its digest and
//! size, its uncompressed bytes against the record's diff_id. A cache of another format
//! or with a damaged document is refused as a whole, a damaged layer refuses its step
//! alone; either way the steps run as if the cache had not been given.
//!
//! The keys are the local cache's (cache/key.rs): computed here from the step and its
//! inputs, never taken from the imported cache, so an entry can only ever stand in for
//! the very step that would have made it. What a key cannot tell is whether whoever
//! wrote the cache ran the step honestly: import caches you would take images from.

use super::{Cache, RecordKind, StepRecord};
use crate::digest::{Digest, HashingReader};
use crate::image::layout::{self, Layout};
use crate::image::{BlobStore, ImageError, canonical_json, descriptor, parse_json};
use crate::registry::{Client, Reference, RegistryError, RegistryOptions};
use oci_spec::image::{ImageIndex, ImageManifest, MediaType};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The version of the config document; anything else is refused.
const FORMAT: &str = "xbake-cache-v1";
/// The cache manifests' config (and artifact) media type.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.xbake.cache.config.v1+json";
/// The tag the cache index is written under in its layout.
pub const CACHE_TAG: &str = "cache";
/// Cache configs list steps, not files: bound what an input can make xbake read.
const CONFIG_LIMIT: u64 = 16 << 20;
const PLATFORM_ANNOTATION: &str = "dev.xbake.cache.platform";

/// Where a shared cache is: `type=local,dest=DIR` / `type=local,src=DIR`, or
/// `type=registry,ref=HOST/REPO:TAG` (the same index, pushed; plain registries store it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheLocation {
    Local { dir: PathBuf },
    Registry { reference: String },
}

impl CacheLocation {
    /// As a flag would name it.
    pub fn describe(&self, to: bool) -> String {
        match self {
            CacheLocation::Local { dir } if to => format!("type=local,dest={}", dir.display()),
            CacheLocation::Local { dir } => format!("type=local,src={}", dir.display()),
            CacheLocation::Registry { reference } => format!("type=registry,ref={reference}"),
        }
    }
}

/// `--cache-to`: where, and whether every stage's steps go there (`mode=max`) or only
/// those of the stages the output is made of (the default, BuildKit's `mode=min`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheTo {
    pub location: CacheLocation,
    pub max: bool,
}

/// Parses `type=local,dest=DIR[,mode=min|max]` (`to`) or `type=local,src=DIR`, and
/// `type=registry,ref=REF[,mode=min|max]`.
pub fn parse_flag(text: &str, to: bool) -> Result<(CacheLocation, bool), String> {
    let mut kind = None;
    let mut dir = None;
    let mut reference = None;
    let mut max = false;
    for field in text.split(',') {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| format!("{field:?} is not KEY=VALUE"))?;
        match (k, to) {
            ("type", _) => kind = Some(v.to_string()),
            ("dest", true) | ("src", false) => dir = Some(PathBuf::from(v)),
            ("ref", _) => reference = Some(v.to_string()),
            ("mode", true) => {
                max = match v {
                    "max" => true,
                    "min" => false,
                    other => return Err(format!("mode={other}: expected min or max")),
                }
            }
            (other, _) => return Err(format!("unknown key {other:?}")),
        }
    }
    let location = match (kind.as_deref(), dir, reference) {
        (Some("local"), Some(dir), None) => CacheLocation::Local { dir },
        (Some("registry"), None, Some(reference)) => CacheLocation::Registry { reference },
        (Some("local"), None, None) if to => return Err("dest=DIR is missing".into()),
        (Some("local"), None, None) => return Err("src=DIR is missing".into()),
        (Some("registry"), None, None) => return Err("ref=HOST/REPO:TAG is missing".into()),
        (Some("local" | "registry"), _, _) => {
            return Err("type=local takes dest= (or src=), type=registry takes ref=".into());
        }
        (Some(other), _, _) => return Err(format!("type={other}: expected local or registry")),
        (None, _, _) => return Err("type= is missing (type=local or type=registry)".into()),
    };
    Ok((location, max))
}

#[derive(Debug, Serialize, Deserialize)]
struct CacheConfig {
    format: String,
    platform: String,
    steps: Vec<CachedStep>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CachedStep {
    key: Digest,
    record: StepRecord,
}

/// Writes `steps` (key → record, every layer in `cache`'s store) to `location`: a layout
/// under [`CACHE_TAG`] (its other tags kept), or pushed to a registry reference.
/// Deterministic: the same steps give the same bytes. Returns the cache index's digest.
pub fn export(
    cache: &Cache,
    location: &CacheLocation,
    steps: &[(Digest, StepRecord)],
    registry: &RegistryOptions,
) -> Result<Digest, String> {
    let (index_digest, index_size, blobs) = stage(cache, steps).map_err(|e| e.to_string())?;
    match location {
        CacheLocation::Local { dir } => {
            let top = descriptor(MediaType::ImageIndex, &index_digest, index_size)
                .map_err(|e| e.to_string())?;
            layout::write_tag(dir, cache.store(), &blobs, CACHE_TAG, &top)
                .map_err(|e| e.to_string())?;
        }
        CacheLocation::Registry { reference } => {
            let target: Reference = reference
                .parse()
                .map_err(|e: RegistryError| e.to_string())?;
            let creds = crate::registry::auth::credentials_for(&target.registry)
                .map_err(|e| e.to_string())?;
            crate::registry::push(
                cache.store(),
                MediaType::ImageIndex.as_ref(),
                &index_digest,
                &target,
                registry,
                creds,
                None,
            )
            .map_err(|e| e.to_string())?;
        }
    }
    Ok(index_digest)
}

/// The cache's documents, put into `cache`'s store: (index digest, size, every blob).
fn stage(
    cache: &Cache,
    steps: &[(Digest, StepRecord)],
) -> Result<(Digest, u64, Vec<Digest>), ImageError> {
    let store = cache.store();
    let mut by_platform: BTreeMap<&str, BTreeMap<&Digest, &StepRecord>> = BTreeMap::new();
    for (key, record) in steps {
        by_platform
            .entry(record.platform.as_str())
            .or_default()
            .insert(key, record);
    }
    let mut blobs: Vec<Digest> = Vec::new();
    let mut manifests = Vec::new();
    for (platform, steps) in by_platform {
        let config = CacheConfig {
            format: FORMAT.into(),
            platform: platform.into(),
            steps: steps
                .iter()
                .map(|(key, record)| CachedStep {
                    key: (*key).clone(),
                    record: (*record).clone(),
                })
                .collect(),
        };
        let (config_digest, config_size) =
            store.put_bytes(&canonical_json(&config, "cache config")?)?;
        let mut layers = Vec::new();
        for layer in steps.values().filter_map(|r| r.layer.as_ref()) {
            if !layers
                .iter()
                .any(|(d, _, _): &(Digest, u64, String)| *d == layer.digest)
            {
                layers.push((layer.digest.clone(), layer.size, layer.media_type.clone()));
            }
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": CONFIG_MEDIA_TYPE,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest.to_string(), "size": config_size},
            "layers": layers.iter().map(|(d, s, m)| serde_json::json!({"mediaType": m, "digest": d.to_string(), "size": s})).collect::<Vec<_>>(),
        });
        let (manifest_digest, manifest_size) =
            store.put_bytes(&canonical_json(&manifest, "cache manifest")?)?;
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": CONFIG_MEDIA_TYPE,
            "digest": manifest_digest.to_string(),
            "size": manifest_size,
            "annotations": {PLATFORM_ANNOTATION: platform},
        }));
        blobs.push(config_digest);
        blobs.push(manifest_digest);
        blobs.extend(layers.into_iter().map(|(d, _, _)| d));
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let (index_digest, index_size) = store.put_bytes(&canonical_json(&index, "cache index")?)?;
    blobs.push(index_digest.clone());
    blobs.sort();
    blobs.dedup();
    Ok((index_digest, index_size, blobs))
}

/// A shared cache read for a build.
pub struct Imported {
    /// As given (`type=local,src=DIR`), for messages.
    pub what: String,
    source: Source,
    steps: HashMap<Digest, StepRecord>,
}

/// Where an imported cache's layers come from, when a step needs one.
enum Source {
    Layout(BlobStore),
    Registry(Box<Client>),
}

/// What reading a cache gives: where its layers are, and each cache manifest's config
/// (media type, verified bytes).
type ReadCache = (Source, Vec<(String, Vec<u8>)>);

impl Imported {
    /// Reads the cache index at `location` and every cache manifest and config in it,
    /// each checked against its digest; a foreign format is refused.
    pub fn open(
        location: &CacheLocation,
        cache: &Cache,
        registry: &RegistryOptions,
    ) -> Result<Imported, String> {
        let (source, configs) = match location {
            CacheLocation::Local { dir } => read_layout(dir).map_err(|e| e.to_string())?,
            CacheLocation::Registry { reference } => {
                read_registry(reference, cache, registry).map_err(|e| e.to_string())?
            }
        };
        let mut steps = HashMap::new();
        for (media_type, bytes) in configs {
            if media_type != CONFIG_MEDIA_TYPE {
                return Err(format!(
                    "not an xbake cache: a manifest's config is {media_type}"
                ));
            }
            let parsed: CacheConfig =
                parse_json(&bytes, "a cache config").map_err(|e| e.to_string())?;
            if parsed.format != FORMAT {
                return Err(format!(
                    "cache format {:?}, not {FORMAT:?} (written by another xbake version)",
                    parsed.format
                ));
            }
            for step in parsed.steps {
                if step.record.platform != parsed.platform {
                    return Err(format!(
                        "a step of {} is listed under {}",
                        step.record.platform, parsed.platform
                    ));
                }
                steps.insert(step.key, step.record);
            }
        }
        Ok(Imported {
            what: location.describe(false),
            source,
            steps,
        })
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The record for `key`, its layer brought into `cache` and checked (digest, size,
    /// diff_id), and recorded there: later builds find it locally. None if the shared
    /// cache has no such step; an error if its layer is damaged (the step then runs).
    pub fn adopt(&self, key: &Digest, cache: &Cache) -> Result<Option<StepRecord>, ImageError> {
        let Some(record) = self.steps.get(key) else {
            return Ok(None);
        };
        if let Some(layer) = &record.layer {
            let what = format!("cache layer {}", layer.digest);
            let invalid = |message: String| ImageError::Invalid {
                what: what.clone(),
                message,
            };
            match &self.source {
                Source::Layout(store) => store.import_verified(
                    &layer.digest,
                    layer.size,
                    cache.store(),
                    "cache layer",
                )?,
                // Fetched by digest and size, checked as it streams (registry/client.rs).
                Source::Registry(client) if !cache.blob_verifies(&layer.digest, layer.size) => {
                    client
                        .fetch_blob(&layer.digest, layer.size, cache.store())
                        .map_err(|e| invalid(e.to_string()))?
                }
                Source::Registry(_) => {}
            }
            let blob = cache
                .store()
                .open_sized(&layer.digest, layer.size, "cache layer")?;
            let unpacked = crate::layer::compress::decompressor(std::io::BufReader::new(blob))
                .map_err(|e| invalid(e.to_string()))?;
            let (diff_id, _) = HashingReader::new(unpacked)
                .drain_and_finish()
                .map_err(|e| invalid(e.to_string()))?;
            if diff_id != layer.diff_id {
                return Err(invalid(format!(
                    "it unpacks to {diff_id}, not the recorded diff_id {}",
                    layer.diff_id
                )));
            }
        }
        cache
            .put(RecordKind::Step, key, record)
            .map_err(|e| ImageError::Invalid {
                what: "the local cache".into(),
                message: e.to_string(),
            })?;
        Ok(Some(record.clone()))
    }
}

/// A cache layout's configs (media type, verified bytes), and its blobs for later.
fn read_layout(dir: &Path) -> Result<ReadCache, ImageError> {
    let layout = Layout::open(dir)?;
    let top = layout.resolve(Some(CACHE_TAG))?;
    let (bytes, _, _) = layout.read_document(&top)?;
    let index: ImageIndex = parse_json(&bytes, "the cache index")?;
    let mut configs = Vec::new();
    for d in index.manifests() {
        let (bytes, _, _) = layout.read_document(d)?;
        let manifest: ImageManifest = parse_json(&bytes, "a cache manifest")?;
        let config = manifest.config();
        let digest = crate::image::descriptor_digest(config)?;
        let bytes =
            layout
                .store()
                .read_sized(&digest, config.size(), CONFIG_LIMIT, "cache config")?;
        configs.push((config.media_type().to_string(), bytes));
    }
    Ok((Source::Layout(layout.store().clone()), configs))
}

/// The same from a registry: the index by tag, each manifest and config by digest,
/// checked (the configs land in the cache's store; layers wait until a step needs one).
fn read_registry(
    reference: &str,
    cache: &Cache,
    registry: &RegistryOptions,
) -> Result<ReadCache, RegistryError> {
    let target: Reference = reference.parse()?;
    let creds = crate::registry::auth::credentials_for(&target.registry)?;
    let client = Client::new(&target, registry, creds)?;
    let top = client.get_manifest(&target.tag_or_digest())?;
    let invalid = |message: String| RegistryError::InvalidResponse {
        registry: target.registry.clone(),
        reference: reference.to_string(),
        message,
    };
    let index: ImageIndex =
        parse_json(&top.bytes, "the cache index").map_err(|e| invalid(e.to_string()))?;
    let mut configs = Vec::new();
    for d in index.manifests() {
        let digest = crate::image::descriptor_digest(d).map_err(|e| invalid(e.to_string()))?;
        let manifest = client.get_manifest_sized(&digest, d.size())?;
        let manifest: ImageManifest =
            parse_json(&manifest.bytes, "a cache manifest").map_err(|e| invalid(e.to_string()))?;
        let config = manifest.config();
        if config.size() > CONFIG_LIMIT {
            return Err(invalid(format!(
                "a cache config of {} bytes",
                config.size()
            )));
        }
        let digest = crate::image::descriptor_digest(config).map_err(|e| invalid(e.to_string()))?;
        client.fetch_blob(&digest, config.size(), cache.store())?;
        let bytes = cache
            .store()
            .read_sized(&digest, config.size(), CONFIG_LIMIT, "cache config")
            .map_err(|e| invalid(e.to_string()))?;
        configs.push((config.media_type().to_string(), bytes));
    }
    Ok((Source::Registry(Box::new(client)), configs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_flags_take_buildkits_spelling() {
        assert_eq!(
            parse_flag("type=local,dest=/tmp/c,mode=max", true),
            Ok((
                CacheLocation::Local {
                    dir: "/tmp/c".into()
                },
                true
            ))
        );
        assert_eq!(
            parse_flag("type=local,src=c", false),
            Ok((CacheLocation::Local { dir: "c".into() }, false))
        );
        assert_eq!(
            parse_flag("type=registry,ref=127.0.0.1:5000/app:cache,mode=max", true),
            Ok((
                CacheLocation::Registry {
                    reference: "127.0.0.1:5000/app:cache".into()
                },
                true
            ))
        );
        for (bad, to) in [
            ("type=local", true),
            ("dest=c", true),
            ("type=local,src=c", true),
            ("type=local,dest=c", false),
            ("type=local,dest=c,mode=all", true),
            ("type=s3,dest=c", true),
            ("type=registry", true),
            ("type=registry,dest=c", true),
        ] {
            assert!(parse_flag(bad, to).is_err(), "{bad}");
        }
    }
}
