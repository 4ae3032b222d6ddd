//! Comparing two images platform by platform, layer by layer, file by file.

use super::AuditError;
use super::entries::{EntryInfo, describe_differences, read_entries};
use super::load::{LoadedImage, LoadedPlatform};
use crate::digest::Digest;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, Serialize)]
pub struct FileDiff {
    pub path: String,
    pub differences: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LayerDiff {
    /// 1-based position in the image.
    pub index: usize,
    pub count: usize,
    pub a: Option<Digest>,
    pub b: Option<Digest>,
    /// Same uncompressed content (diff_id) and so no file differences: only the
    /// compression differs.
    pub same_content: bool,
    pub files: Vec<FileDiff>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PlatformDiff {
    pub platform: String,
    /// "identical", "differs", "only in A", "only in B".
    pub status: &'static str,
    pub a_manifest: Option<Digest>,
    pub b_manifest: Option<Digest>,
    /// Configuration fields that differ (`created`, `config.Env`, `history`, …).
    pub config: Vec<String>,
    pub layers: Vec<LayerDiff>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub a: String,
    pub b: String,
    pub a_digest: Digest,
    pub b_digest: Digest,
    /// Every compared platform identical (and, for whole images, the same index).
    pub identical: bool,
    /// Differences of the index itself: platform order, media type, annotations.
    pub index: Vec<String>,
    pub platforms: Vec<PlatformDiff>,
}

/// Compares `a` and `b`. With `scope`, only those platforms (`linux/arm64`…) are
/// compared and the images count as identical when those are: what `verify --arch`
/// and a single-platform published image need. Without it, whole images.
pub fn compare(
    a: &LoadedImage,
    b: &LoadedImage,
    scope: Option<&[String]>,
) -> Result<Report, AuditError> {
    let mut names: Vec<String> = a.platforms.iter().map(|p| p.platform.clone()).collect();
    for p in &b.platforms {
        if !names.contains(&p.platform) {
            names.push(p.platform.clone());
        }
    }
    if let Some(scope) = scope {
        names.retain(|n| scope.contains(n));
        for wanted in scope {
            if !names.contains(wanted) {
                names.push(wanted.clone());
            }
        }
    }
    let mut platforms = Vec::new();
    for name in names {
        let pa = a.platforms.iter().find(|p| p.platform == name);
        let pb = b.platforms.iter().find(|p| p.platform == name);
        platforms.push(match (pa, pb) {
            (Some(pa), Some(pb)) => compare_platform(a, b, pa, pb)?,
            (pa, pb) => PlatformDiff {
                platform: name,
                status: if pa.is_some() {
                    "only in A"
                } else {
                    "only in B"
                },
                a_manifest: pa.map(|p| p.manifest_digest.clone()),
                b_manifest: pb.map(|p| p.manifest_digest.clone()),
                config: Vec::new(),
                layers: Vec::new(),
            },
        });
    }
    let platforms_identical = platforms.iter().all(|p| p.status == "identical");
    let (identical, index) = match scope {
        Some(_) => (platforms_identical, Vec::new()),
        None => (a.digest == b.digest, index_differences(a, b)),
    };
    Ok(Report {
        a: a.name.clone(),
        b: b.name.clone(),
        a_digest: a.digest.clone(),
        b_digest: b.digest.clone(),
        identical,
        index,
        platforms,
    })
}

/// What differs in the index itself when its bytes differ.
fn index_differences(a: &LoadedImage, b: &LoadedImage) -> Vec<String> {
    if a.digest == b.digest {
        return Vec::new();
    }
    let mut out = Vec::new();
    if a.media_type != b.media_type {
        out.push(format!(
            "media type differs ({} → {})",
            a.media_type, b.media_type
        ));
    }
    let order = |i: &LoadedImage| {
        i.platforms
            .iter()
            .map(|p| p.platform.clone())
            .collect::<Vec<_>>()
    };
    let (oa, ob) = (order(a), order(b));
    if oa != ob {
        let (mut sa, mut sb) = (oa.clone(), ob.clone());
        sa.sort();
        sb.sort();
        if sa == sb {
            out.push(format!(
                "platform order differs ({} → {})",
                oa.join(", "),
                ob.join(", ")
            ));
        }
    }
    let top =
        |i: &LoadedImage| serde_json::from_slice::<serde_json::Value>(&i.raw).unwrap_or_default();
    let (ta, tb) = (top(a), top(b));
    if ta.get("annotations") != tb.get("annotations") {
        out.push("index annotations differ".into());
    }
    let descriptors = |v: &serde_json::Value| {
        v["manifests"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|d| (d["annotations"].clone(), d["mediaType"].clone()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    if oa == ob && descriptors(&ta) != descriptors(&tb) {
        out.push("manifest descriptors differ (annotations or media types)".into());
    }
    if out.is_empty()
        && a.platforms
            .iter()
            .zip(&b.platforms)
            .all(|(x, y)| x.manifest_digest == y.manifest_digest)
    {
        out.push("index bytes differ (same manifests)".into());
    }
    out
}

fn compare_platform(
    a: &LoadedImage,
    b: &LoadedImage,
    pa: &LoadedPlatform,
    pb: &LoadedPlatform,
) -> Result<PlatformDiff, AuditError> {
    let mut diff = PlatformDiff {
        platform: pa.platform.clone(),
        status: "identical",
        a_manifest: Some(pa.manifest_digest.clone()),
        b_manifest: Some(pb.manifest_digest.clone()),
        config: Vec::new(),
        layers: Vec::new(),
    };
    if pa.manifest_digest == pb.manifest_digest {
        return Ok(diff);
    }
    diff.status = "differs";
    diff.config = config_differences(&pa.config, &pb.config);
    let count = pa.layers.len().max(pb.layers.len());
    for i in 0..count {
        let la = pa.layers.get(i);
        let lb = pb.layers.get(i);
        if la.map(|l| &l.digest) == lb.map(|l| &l.digest) {
            continue;
        }
        // The configs' diff_ids are claims; compare what the layers really hold.
        let ra = la.map(|l| entries(a, &l.digest)).transpose()?;
        let rb = lb.map(|l| entries(b, &l.digest)).transpose()?;
        let same_content = matches!((&ra, &rb), (Some((_, x)), Some((_, y))) if x == y);
        let files = file_differences(
            &ra.map(|(e, _)| e).unwrap_or_default(),
            &rb.map(|(e, _)| e).unwrap_or_default(),
        );
        diff.layers.push(LayerDiff {
            index: i + 1,
            count,
            a: la.map(|l| l.digest.clone()),
            b: lb.map(|l| l.digest.clone()),
            same_content,
            files,
        });
    }
    Ok(diff)
}

fn entries(
    image: &LoadedImage,
    digest: &Digest,
) -> Result<(BTreeMap<String, EntryInfo>, Digest), AuditError> {
    // `diff` and `verify` write nothing, so the free-space half of the build's default
    // rule does not apply: the ceiling alone bounds what one layer is read to.
    let limit = crate::layer::unpack::DEFAULT_MAX_UNPACK_SIZE;
    read_entries(&image.blobs.join(digest.hex()), digest, limit).map_err(|source| {
        AuditError::Layer {
            what: format!("{} layer {digest}", image.name),
            source,
        }
    })
}

/// Per path: what differs, or that it exists on one side only.
pub fn file_differences(
    a: &BTreeMap<String, EntryInfo>,
    b: &BTreeMap<String, EntryInfo>,
) -> Vec<FileDiff> {
    let paths: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut out = Vec::new();
    for path in paths {
        let differences = match (a.get(path), b.get(path)) {
            (Some(x), Some(y)) => describe_differences(x, y),
            (Some(_), None) => vec!["only in A".into()],
            (None, Some(_)) => vec!["only in B".into()],
            (None, None) => Vec::new(),
        };
        if !differences.is_empty() {
            out.push(FileDiff {
                path: path.clone(),
                differences,
            });
        }
    }
    out
}

/// Top-level config fields (and `config.*` runtime settings) whose values differ. The
/// rootfs diff_ids are left to the layer comparison.
fn config_differences(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    let keys = |v: &serde_json::Value| -> BTreeSet<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    for key in keys(a).union(&keys(b)) {
        if key == "rootfs" || a.get(key) == b.get(key) {
            continue;
        }
        if key == "config" {
            let (ca, cb) = (&a["config"], &b["config"]);
            for sub in keys(ca).union(&keys(cb)) {
                if ca.get(sub) != cb.get(sub) {
                    out.push(format!("config.{sub}"));
                }
            }
        } else {
            out.push(key.clone());
        }
    }
    out
}

impl Report {
    /// The human-readable form: one line per finding.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if self.identical {
            text.push_str(&format!(
                "{} and {} are identical ({})\n",
                self.a, self.b, self.a_digest
            ));
            return text;
        }
        text.push_str(&format!(
            "A: {} ({})\nB: {} ({})\n",
            self.a, self.a_digest, self.b, self.b_digest
        ));
        for note in &self.index {
            text.push_str(&format!("index: {note}\n"));
        }
        for p in &self.platforms {
            text.push_str(&format!("{}: {}\n", p.platform, p.status));
            if !p.config.is_empty() {
                text.push_str(&format!("  config differs: {}\n", p.config.join(", ")));
            }
            for l in &p.layers {
                let short = |d: &Option<Digest>| {
                    d.as_ref()
                        .map(|d| d.to_string()[..19].to_string())
                        .unwrap_or_else(|| "none".into())
                };
                text.push_str(&format!(
                    "  layer {}/{} ({} → {}){}\n",
                    l.index,
                    l.count,
                    short(&l.a),
                    short(&l.b),
                    if l.same_content {
                        ": same files, different compression"
                    } else {
                        ""
                    }
                ));
                for f in &l.files {
                    text.push_str(&format!("    {}: {}\n", f.path, f.differences.join(", ")));
                }
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(content: &[u8], mode: u32, mtime: i64) -> EntryInfo {
        EntryInfo {
            kind: "file",
            mode,
            uid: 0,
            gid: 0,
            mtime,
            size: content.len() as u64,
            content: Some(Digest::of(content)),
            link: None,
            xattrs: BTreeMap::new(),
            device: None,
        }
    }

    #[test]
    fn file_differences_name_each_property() {
        let mut a = BTreeMap::new();
        let mut b = BTreeMap::new();
        a.insert("/var/lib/x/state".to_string(), entry(b"1", 0o644, 0));
        b.insert("/var/lib/x/state".to_string(), entry(b"2", 0o600, 5));
        a.insert("/same".to_string(), entry(b"s", 0o644, 0));
        b.insert("/same".to_string(), entry(b"s", 0o644, 0));
        a.insert("/gone".to_string(), entry(b"g", 0o644, 0));
        let d = file_differences(&a, &b);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].path, "/gone");
        assert_eq!(d[0].differences, ["only in A"]);
        assert_eq!(d[1].path, "/var/lib/x/state");
        assert_eq!(
            d[1].differences,
            [
                "content differs",
                "mode differs (0644 → 0600)",
                "mtime differs (0 → 5)"
            ]
        );
    }

    #[test]
    fn config_differences_list_fields() {
        let a = serde_json::json!({"created": "1970", "config": {"Env": ["A=1"], "Cmd": ["x"]}, "rootfs": {"diff_ids": ["1"]}});
        let b = serde_json::json!({"created": "2023", "config": {"Env": ["A=2"], "Cmd": ["x"]}, "rootfs": {"diff_ids": ["2"]}});
        assert_eq!(config_differences(&a, &b), ["config.Env", "created"]);
    }
}
