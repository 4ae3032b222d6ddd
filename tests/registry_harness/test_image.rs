//! A small hand-made two-platform image in a content store: per platform a config and two
//! layers (a gzip layer shared by both platforms and a plain-tar layer of its own), an OCI
//! manifest, and an OCI index over both.

use serde_json::json;
use std::io::Write;
use xbake::digest::Digest;
use xbake::image::BlobStore;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

pub struct Blob {
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

impl Blob {
    fn put(store: &BlobStore, bytes: Vec<u8>) -> Blob {
        let (digest, _) = store.put_bytes(&bytes).unwrap();
        Blob { digest, bytes }
    }
}

pub struct PlatformImage {
    /// `arm64`, `amd64`: as `--platform` takes it.
    pub platform: &'static str,
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

pub struct TestImage {
    pub index: Blob,
    pub platforms: Vec<PlatformImage>,
}

impl TestImage {
    /// Unique blobs (configs and layers): what a first push uploads.
    pub fn unique_blob_count(&self) -> usize {
        let mut all: Vec<&Digest> = self
            .platforms
            .iter()
            .flat_map(|p| {
                std::iter::once(&p.config.digest).chain(p.layers.iter().map(|l| &l.digest))
            })
            .collect();
        all.sort();
        all.dedup();
        all.len()
    }
}

pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        builder.append_data(&mut header, path, *content).unwrap();
    }
    builder.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn descriptor(media_type: &str, blob: &Blob) -> serde_json::Value {
    json!({"mediaType": media_type, "digest": blob.digest.to_string(), "size": blob.bytes.len()})
}

/// Builds the image in `store`; `tag` makes images with different content (so two tests
/// can push different images).
pub fn build(store: &BlobStore, tag: &str) -> TestImage {
    let shared_tar = tar_of(&[("etc/os-release", format!("NAME=test {tag}\n").as_bytes())]);
    let shared = Blob::put(store, gzip(&shared_tar));
    let shared_diff_id = Digest::of(&shared_tar);
    let mut platforms = Vec::new();
    for (platform, arch, variant) in [("amd64", "amd64", None), ("arm64", "arm64", Some("v8"))] {
        let own = Blob::put(
            store,
            tar_of(&[("arch", format!("{arch} {tag}\n").as_bytes())]),
        );
        let mut config = json!({
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [shared_diff_id.to_string(), own.digest.to_string()]},
        });
        if let Some(v) = variant {
            config["variant"] = json!(v);
        }
        let config = Blob::put(store, serde_json::to_vec(&config).unwrap());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config),
            "layers": [descriptor(LAYER_GZIP, &shared), descriptor(LAYER_TAR, &own)],
        });
        let manifest = Blob::put(store, serde_json::to_vec(&manifest).unwrap());
        let shared_copy = Blob {
            digest: shared.digest.clone(),
            bytes: shared.bytes.clone(),
        };
        platforms.push((
            platform,
            arch,
            variant,
            PlatformImage {
                platform,
                manifest,
                config,
                layers: vec![shared_copy, own],
            },
        ));
    }
    let entries: Vec<serde_json::Value> = platforms
        .iter()
        .map(|(_, arch, variant, image)| {
            let mut entry = descriptor(OCI_MANIFEST, &image.manifest);
            entry["platform"] = json!({"os": "linux", "architecture": arch});
            if let Some(v) = variant {
                entry["platform"]["variant"] = json!(v);
            }
            entry
        })
        .collect();
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
    let index = Blob::put(store, serde_json::to_vec(&index).unwrap());
    TestImage {
        index,
        platforms: platforms
            .into_iter()
            .map(|(_, _, _, image)| image)
            .collect(),
    }
}
