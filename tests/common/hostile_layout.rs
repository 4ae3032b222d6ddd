//! A hostile-image corpus: writes a small, valid one-platform OCI layout (index.json →
//! image index → manifest → config + one gzip layer holding `/base.txt`), or the same
//! layout with one twist an attacker would try. Independent of xbake's code (serde_json,
//! sha2, flate2 and tar only), so it can show xbake's readers what they must refuse.

use super::sha256_hex;
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The tag every corpus layout carries (unless the twist is about the tag).
pub const TAG: &str = "1.0";
/// The one file of the base layer, and its content.
pub const BASE_FILE: &str = "base.txt";
pub const BASE_TEXT: &str = "from the base layer\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Twist {
    /// A good layout.
    None,
    /// The layer blob is a symlink to /dev/zero (a build read it forever).
    LayerLinkedToDevZero,
    /// The layer blob is a symlink to a file outside the layout holding the right bytes.
    LayerLinkedOutside,
    /// The layer's descriptor says one byte more than the blob has.
    LayerSizePlusOne,
    /// The layer's descriptor says one byte less.
    LayerSizeMinusOne,
    /// The layer's descriptor says 2^62 bytes.
    LayerSizeHuge,
    /// The config's descriptor says one byte more.
    ConfigSizePlusOne,
    /// The image index's entry for the manifest says one byte less.
    ManifestSizeMinusOne,
    /// The manifest also has a `manifests` list (an index and a manifest at once).
    ManifestAndIndex,
    /// The manifest says it is a Docker manifest; its descriptor says OCI.
    MediaTypeMismatch,
    /// The layer is a plain tar declared `+gzip`.
    TarDeclaredGzip,
    /// index.json and the image index also list an entry of an unknown media type
    /// (a signature, an artifact): it must be skipped, the build succeeds.
    UnknownIndexEntry,
    /// The image index lists the manifest for the host but its config says another CPU.
    ConfigArchMismatch,
    /// `oci-layout` says imageLayoutVersion 2.0.0.
    LayoutVersion2,
    /// The image index lists two manifests for the host platform: the build succeeds with
    /// a warning naming the first.
    DuplicatePlatform,
    /// index.json's ref.name is outside the image-layout grammar (`1.0$(id)`): not a tag.
    BadRefName,
}

/// What was written: digests a test may look for.
pub struct Written {
    pub layer_digest: String,
    pub layer_size: u64,
    pub manifest_digest: String,
    pub second_manifest_digest: Option<String>,
}

/// A ref.name outside the image-layout grammar that a recipe can still ask for.
pub const BAD_REF_NAME: &str = "1.0$(id)";

/// The host's OCI architecture (tests build natively, no emulator needed).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Some other architecture than the host's.
pub fn other_arch() -> &'static str {
    if host_arch() == "s390x" {
        "arm64"
    } else {
        "s390x"
    }
}

fn put(dir: &Path, bytes: &[u8]) -> String {
    let hex = sha256_hex(bytes);
    std::fs::write(dir.join("blobs/sha256").join(&hex), bytes).unwrap();
    format!("sha256:{hex}")
}

fn descriptor(media_type: &str, digest: &str, size: u64) -> Value {
    json!({"mediaType": media_type, "digest": digest, "size": size})
}

/// The uncompressed layer: one file, fixed metadata (so every corpus layout shares the
/// layer digest, as the cache-poisoning test needs).
pub fn layer_tar() -> Vec<u8> {
    let mut tar_bytes = Vec::new();
    {
        let mut b = tar::Builder::new(&mut tar_bytes);
        let mut h = tar::Header::new_ustar();
        h.set_size(BASE_TEXT.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, BASE_FILE, BASE_TEXT.as_bytes())
            .unwrap();
        b.finish().unwrap();
    }
    tar_bytes
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::new(6));
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// Writes the layout at `dir` (created) with `twist`.
pub fn write_layout(dir: &Path, twist: Twist) -> Written {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let version = if twist == Twist::LayoutVersion2 {
        "2.0.0"
    } else {
        "1.0.0"
    };
    std::fs::write(
        dir.join("oci-layout"),
        format!(r#"{{"imageLayoutVersion":"{version}"}}"#),
    )
    .unwrap();

    let tar_bytes = layer_tar();
    let diff_id = format!("sha256:{}", sha256_hex(&tar_bytes));
    let layer = if twist == Twist::TarDeclaredGzip {
        tar_bytes.clone()
    } else {
        gzip(&tar_bytes)
    };
    let layer_digest = put(dir, &layer);
    let layer_path = dir
        .join("blobs/sha256")
        .join(layer_digest.trim_start_matches("sha256:"));
    match twist {
        Twist::LayerLinkedToDevZero => {
            std::fs::remove_file(&layer_path).unwrap();
            std::os::unix::fs::symlink("/dev/zero", &layer_path).unwrap();
        }
        Twist::LayerLinkedOutside => {
            let outside = dir.with_extension("outside-layer");
            std::fs::write(&outside, &layer).unwrap();
            std::fs::remove_file(&layer_path).unwrap();
            std::os::unix::fs::symlink(&outside, &layer_path).unwrap();
        }
        _ => {}
    }
    let real = layer.len() as u64;
    let layer_size = match twist {
        Twist::LayerSizePlusOne => real + 1,
        Twist::LayerSizeMinusOne => real - 1,
        Twist::LayerSizeHuge => 1 << 62,
        _ => real,
    };

    let config_arch = if twist == Twist::ConfigArchMismatch {
        other_arch()
    } else {
        host_arch()
    };
    let config = serde_json::to_vec(&json!({
        "architecture": config_arch,
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .unwrap();
    let config_digest = put(dir, &config);
    let config_size = config.len() as u64 + u64::from(twist == Twist::ConfigSizePlusOne);

    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": if twist == Twist::MediaTypeMismatch { DOCKER_MANIFEST } else { OCI_MANIFEST },
        "config": descriptor(OCI_CONFIG, &config_digest, config_size),
        "layers": [descriptor(LAYER_GZIP, &layer_digest, layer_size)],
    });
    if twist == Twist::ManifestAndIndex {
        manifest["manifests"] = json!([]);
    }
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = put(dir, &manifest_bytes);
    let manifest_size =
        manifest_bytes.len() as u64 - u64::from(twist == Twist::ManifestSizeMinusOne);
    let platform = json!({"os": "linux", "architecture": host_arch()});
    let mut entry = descriptor(OCI_MANIFEST, &manifest_digest, manifest_size);
    entry["platform"] = platform.clone();
    let mut entries = vec![entry];
    let unknown = || {
        let bytes = br#"{"schemaVersion":2,"artifactType":"application/example"}"#;
        let mut d = descriptor(
            "application/vnd.example.signature.v1+json",
            &put(dir, bytes),
            bytes.len() as u64,
        );
        d["platform"] = json!({"os": "linux", "architecture": host_arch()});
        d
    };
    if twist == Twist::UnknownIndexEntry {
        entries.insert(0, unknown());
    }
    let mut second_manifest_digest = None;
    if twist == Twist::DuplicatePlatform {
        // Same image, another manifest document (an annotation makes the bytes differ).
        let mut other = manifest.clone();
        other["annotations"] = json!({"org.example.copy": "second"});
        let bytes = serde_json::to_vec(&other).unwrap();
        let digest = put(dir, &bytes);
        let mut d = descriptor(OCI_MANIFEST, &digest, bytes.len() as u64);
        d["platform"] = platform;
        entries.push(d);
        second_manifest_digest = Some(digest);
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": entries,
    }))
    .unwrap();
    let index_digest = put(dir, &index);
    let ref_name = if twist == Twist::BadRefName {
        BAD_REF_NAME
    } else {
        TAG
    };
    let mut top = descriptor(OCI_INDEX, &index_digest, index.len() as u64);
    top["annotations"] = json!({"org.opencontainers.image.ref.name": ref_name});
    let mut top_entries = vec![top];
    if twist == Twist::UnknownIndexEntry {
        top_entries.push(unknown());
    }
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": top_entries})).unwrap(),
    )
    .unwrap();
    Written {
        layer_digest,
        layer_size: real,
        manifest_digest,
        second_manifest_digest,
    }
}
