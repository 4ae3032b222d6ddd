//! Comparing two images platform by platform, layer by layer, file by file.
//!
//! Layers are aligned by content (align.rs), not by position, so one extra or missing
//! step is reported as such and the layers around it still match. A differing file is
//! explained (explain.rs): the first differing lines or bytes, and the normalisation
//! rule that covers it, if one does.

use super::AuditError;
use super::align::{Aligned, align};
use super::entries::{EntryInfo, describe_differences, read_entries, read_samples};
use super::explain::{
    ContentDiff, RuleRef, SAMPLE_LIMIT, Sample, Side, covering_rule, explain_content,
    unnormalised_side,
};
use super::load::{LoadedImage, LoadedLayer, LoadedPlatform};
use crate::digest::Digest;
use crate::normalize::RuleSet;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// At most this many files of one layer pair are read again to explain their contents
/// (each side's first `SAMPLE_LIMIT` bytes, A's held while B's stream by): what a
/// comparison holds is bounded by this times the sample size.
const EXPLAINED_FILES_PER_LAYER: usize = 16;
/// Files listed per layer in the text report for a layer that is only on one side.
const LISTED_FILES_OF_EXTRA_LAYER: usize = 20;

#[derive(Clone, Debug, Serialize)]
pub struct FileDiff {
    pub path: String,
    pub differences: Vec<String>,
    /// The normalisation rule (normalize/rules.conf) that covers this path, if any.
    pub rule: Option<RuleRef>,
    /// For a regular file on both sides whose content differs: how.
    pub content: Option<ContentDiff>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LayerDiff {
    /// 1-based position in the image (A's when A has this layer, else B's).
    pub index: usize,
    /// Layers in that image.
    pub count: usize,
    pub a: Option<Digest>,
    pub b: Option<Digest>,
    /// Same uncompressed content (diff_id) and so no file differences: only the
    /// compression differs.
    pub same_content: bool,
    pub files: Vec<FileDiff>,
    /// "differs", "same content", "only in A" (missing from B), "only in B" (extra).
    pub status: &'static str,
    /// 1-based positions on each side, when the side has this layer.
    pub a_index: Option<usize>,
    pub b_index: Option<usize>,
}

/// When every differing file is one a normalisation rule covers.
#[derive(Clone, Debug, Serialize)]
pub struct NormalisationHint {
    /// The covered paths that differ.
    pub paths: Vec<String>,
    /// "A" or "B" when the files show which image was not normalised (a log with
    /// content where the rule empties it, a cache present where the rule removes it).
    pub built_without: Option<&'static str>,
    pub message: String,
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
    /// The layers that differ or are on one side only, in the aligned order.
    pub layers: Vec<LayerDiff>,
    /// Layers in A and in B.
    pub a_layers: usize,
    pub b_layers: usize,
    /// Layers byte-identical on both sides, wherever they sit.
    pub matching_layers: usize,
    pub normalisation: Option<NormalisationHint>,
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
                a_layers: pa.map_or(0, |p| p.layers.len()),
                b_layers: pb.map_or(0, |p| p.layers.len()),
                matching_layers: 0,
                normalisation: None,
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
        a_layers: pa.layers.len(),
        b_layers: pb.layers.len(),
        matching_layers: pa.layers.len(),
        normalisation: None,
    };
    if pa.manifest_digest == pb.manifest_digest {
        return Ok(diff);
    }
    diff.status = "differs";
    diff.config = config_differences(&pa.config, &pb.config);
    diff.matching_layers = 0;
    let rules = crate::normalize::builtin().map_err(|e| AuditError::Invalid {
        what: "xbake's normalisation rules".into(),
        message: e.to_string(),
    })?;
    // Aligned on the configs' diff_ids where given (the same content under another
    // compression still lines up), else on the blob digests. The diff_ids are claims:
    // an anchor whose blobs differ is read and compared like any other pair.
    let key = |l: &LoadedLayer| l.diff_id.clone().unwrap_or_else(|| l.digest.clone());
    let mut unnormalised = Vec::new();
    let keys_a: Vec<Digest> = pa.layers.iter().map(key).collect();
    let keys_b: Vec<Digest> = pb.layers.iter().map(key).collect();
    for step in align(&keys_a, &keys_b) {
        let (ia, ib) = match step {
            Aligned::Same(i, j) | Aligned::Paired(i, j) => (Some(i), Some(j)),
            Aligned::OnlyA(i) => (Some(i), None),
            Aligned::OnlyB(j) => (None, Some(j)),
        };
        let la = ia.map(|i| &pa.layers[i]);
        let lb = ib.map(|j| &pb.layers[j]);
        if let (Some(x), Some(y)) = (la, lb)
            && x.digest == y.digest
        {
            diff.matching_layers += 1;
            continue;
        }
        // The configs' diff_ids are claims; compare what the layers really hold.
        let ra = la.map(|l| entries(a, &l.digest)).transpose()?;
        let rb = lb.map(|l| entries(b, &l.digest)).transpose()?;
        let same_content = matches!((&ra, &rb), (Some((_, x)), Some((_, y))) if x == y);
        let (ea, eb) = (
            ra.map(|(e, _)| e).unwrap_or_default(),
            rb.map(|(e, _)| e).unwrap_or_default(),
        );
        let mut files = file_differences(&ea, &eb);
        for f in &mut files {
            f.rule = covering_rule(rules, &f.path).map(RuleRef::from);
        }
        if let (Some(x), Some(y)) = (la, lb) {
            explain_contents(a, &x.digest, b, &y.digest, &ea, &eb, &mut files)?;
        }
        let (index, count) = match (ia, ib) {
            (Some(i), _) => (i + 1, pa.layers.len()),
            (None, Some(j)) => (j + 1, pb.layers.len()),
            (None, None) => (0, 0),
        };
        diff.layers.push(LayerDiff {
            index,
            count,
            a: la.map(|l| l.digest.clone()),
            b: lb.map(|l| l.digest.clone()),
            same_content,
            files,
            status: match (ia, ib) {
                (Some(_), None) => "only in A",
                (None, Some(_)) => "only in B",
                _ if same_content => "same content",
                _ => "differs",
            },
            a_index: ia.map(|i| i + 1),
            b_index: ib.map(|j| j + 1),
        });
        if let Some(layer) = diff.layers.last() {
            unnormalised.extend(unnormalised_sides(rules, layer, &ea, &eb));
        }
    }
    diff.normalisation = normalisation_hint(&a.name, &b.name, &diff, &unnormalised);
    Ok(diff)
}

/// Reads the files whose content differs again (a bounded number, a bounded sample
/// each) and says how they differ. A's samples are held while B's layer streams by.
fn explain_contents(
    a: &LoadedImage,
    a_digest: &Digest,
    b: &LoadedImage,
    b_digest: &Digest,
    ea: &BTreeMap<String, EntryInfo>,
    eb: &BTreeMap<String, EntryInfo>,
    files: &mut [FileDiff],
) -> Result<(), AuditError> {
    let wanted: BTreeSet<String> = files
        .iter()
        .filter(|f| match (ea.get(&f.path), eb.get(&f.path)) {
            (Some(x), Some(y)) => x.kind == "file" && y.kind == "file" && x.content != y.content,
            _ => false,
        })
        .map(|f| f.path.clone())
        .take(EXPLAINED_FILES_PER_LAYER)
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let limit = crate::layer::unpack::DEFAULT_MAX_UNPACK_SIZE;
    let layer_err = |image: &LoadedImage, digest: &Digest| {
        let what = format!("{} layer {digest}", image.name);
        move |source| AuditError::Layer { what, source }
    };
    let mut held: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    read_samples(
        &a.blobs.join(a_digest.hex()),
        a_digest,
        limit,
        &wanted,
        SAMPLE_LIMIT,
        |path, bytes| {
            held.insert(path.to_string(), bytes);
        },
    )
    .map_err(layer_err(a, a_digest))?;
    let mut explained: BTreeMap<String, ContentDiff> = BTreeMap::new();
    read_samples(
        &b.blobs.join(b_digest.hex()),
        b_digest,
        limit,
        &wanted,
        SAMPLE_LIMIT,
        |path, bytes| {
            let (Some(sa), Some(x), Some(y)) = (held.remove(path), ea.get(path), eb.get(path))
            else {
                return;
            };
            let sa = Sample {
                bytes: sa,
                size: x.size,
            };
            let sb = Sample {
                bytes,
                size: y.size,
            };
            explained.insert(path.to_string(), explain_content(&sa, &sb));
        },
    )
    .map_err(layer_err(b, b_digest))?;
    for f in files {
        if let Some(content) = explained.remove(&f.path) {
            f.content = Some(content);
        }
    }
    Ok(())
}

/// For each covered file of a layer pair, which side looks unnormalised (if it shows).
fn unnormalised_sides(
    rules: &RuleSet,
    layer: &LayerDiff,
    ea: &BTreeMap<String, EntryInfo>,
    eb: &BTreeMap<String, EntryInfo>,
) -> Vec<Option<char>> {
    let side = |e: Option<&EntryInfo>| match e {
        None => Side::Absent,
        Some(e) if e.kind == "file" => Side::File(e.size),
        Some(_) => Side::Other,
    };
    layer
        .files
        .iter()
        .filter_map(|f| {
            // A whiteout's rule is its target's: the target's own entry tells the side.
            let rule = rules.rule_for(&f.path)?;
            Some(unnormalised_side(
                rule.action,
                side(ea.get(&f.path)),
                side(eb.get(&f.path)),
            ))
        })
        .collect()
}

/// When files differ and every one of them is covered by a rule (and no layer is on one
/// side only), the images differ the way an image built without the rules differs.
fn normalisation_hint(
    a: &str,
    b: &str,
    diff: &PlatformDiff,
    unnormalised: &[Option<char>],
) -> Option<NormalisationHint> {
    if diff.layers.iter().any(|l| l.a.is_none() || l.b.is_none()) {
        return None;
    }
    let files: Vec<&FileDiff> = diff.layers.iter().flat_map(|l| &l.files).collect();
    if files.is_empty() || files.iter().any(|f| f.rule.is_none()) {
        return None;
    }
    let paths: Vec<String> = files
        .iter()
        .map(|f| f.path.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let told: BTreeSet<char> = unnormalised.iter().flatten().copied().collect();
    let built_without = match told.iter().next() {
        Some('A') if told.len() == 1 => Some("A"),
        Some('B') if told.len() == 1 => Some("B"),
        _ => None,
    };
    let shown: Vec<&str> = paths.iter().take(4).map(String::as_str).collect();
    let more = if paths.len() > shown.len() {
        ", …"
    } else {
        ""
    };
    let who = match built_without {
        Some("A") => format!("A ({a}) was"),
        Some(_) => format!("B ({b}) was"),
        // Both sides unnormalised (two raw builds), or the rules edit inside the files.
        None => "one or both images were".into(),
    };
    let config = if diff.config.is_empty() {
        ""
    } else {
        "besides the config, "
    };
    let message = format!(
        "{config}only files that xbake's normalisation rules cover differ ({}{more}): \
         {who} built without them (by another tool, or with --no-normalize)",
        shown.join(", ")
    );
    Some(NormalisationHint {
        paths,
        built_without,
        message,
    })
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
                rule: None,
                content: None,
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
            if let Some(hint) = &p.normalisation {
                text.push_str(&format!("  {}\n", hint.message));
            }
            if !p.config.is_empty() {
                text.push_str(&format!("  config differs: {}\n", p.config.join(", ")));
            }
            if p.status == "differs" && p.matching_layers > 0 {
                text.push_str(&if p.a_layers == p.b_layers {
                    format!(
                        "  {} of {} layers identical in both\n",
                        p.matching_layers, p.a_layers
                    )
                } else {
                    format!(
                        "  {} layers identical in both, matched by content wherever they sit (A has {}, B has {})\n",
                        p.matching_layers, p.a_layers, p.b_layers
                    )
                });
            }
            for l in &p.layers {
                render_layer(&mut text, l, p);
            }
        }
        text
    }
}

fn short(d: &Option<Digest>) -> String {
    d.as_ref()
        .map(|d| d.to_string()[..19].to_string())
        .unwrap_or_else(|| "none".into())
}

fn render_layer(text: &mut String, l: &LayerDiff, p: &PlatformDiff) {
    let (files, limit) = match (l.a_index, l.b_index) {
        (Some(i), Some(j)) => {
            let position = if i == j {
                format!("{i}/{}", p.a_layers)
            } else {
                format!("{i}/{} → {j}/{}", p.a_layers, p.b_layers)
            };
            text.push_str(&format!(
                "  layer {position} ({} → {}){}\n",
                short(&l.a),
                short(&l.b),
                if l.same_content {
                    ": same files, different compression"
                } else {
                    ""
                }
            ));
            (&l.files[..], usize::MAX)
        }
        (ia, _) => {
            let (side, index, count, digest) = match ia {
                Some(i) => ("A", i, p.a_layers, &l.a),
                None => ("B", l.b_index.unwrap_or(0), p.b_layers, &l.b),
            };
            text.push_str(&format!(
                "  extra layer {index}/{count} ({}) in {side}: {} entr{}\n",
                short(digest),
                l.files.len(),
                if l.files.len() == 1 { "y" } else { "ies" }
            ));
            (&l.files[..], LISTED_FILES_OF_EXTRA_LAYER)
        }
    };
    for f in files.iter().take(limit) {
        let rule = f
            .rule
            .as_ref()
            .map(|r| format!(" (normalisation rule: {} {})", r.action, r.pattern))
            .unwrap_or_default();
        text.push_str(&format!(
            "    {}: {}{rule}\n",
            f.path,
            f.differences.join(", ")
        ));
        if let Some(c) = &f.content {
            render_content(text, c);
        }
    }
    if files.len() > limit {
        text.push_str(&format!("    … and {} more\n", files.len() - limit));
    }
}

fn render_content(text: &mut String, c: &ContentDiff) {
    let sizes = format!("{} → {} bytes", c.a_size, c.b_size);
    match (c.text, c.line, c.first_difference) {
        (true, Some(line), _) => {
            text.push_str(&format!(
                "      text, {sizes}, first difference at line {line}:\n"
            ));
            for l in &c.lines {
                text.push_str(&format!("        {l}\n"));
            }
        }
        (text_kind, _, Some(offset)) => text.push_str(&format!(
            "      {}, {sizes}, first difference at byte {offset}\n",
            if text_kind { "text" } else { "binary" }
        )),
        (text_kind, _, None) => text.push_str(&format!(
            "      {}, {sizes}, the first {} bytes are the same\n",
            if text_kind { "text" } else { "binary" },
            c.compared
        )),
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

    fn covered(path: &str, rule: bool) -> FileDiff {
        FileDiff {
            path: path.into(),
            differences: vec!["content differs".into()],
            rule: rule.then(|| RuleRef {
                action: "truncate",
                pattern: path.into(),
                why: "logs the time".into(),
            }),
            content: None,
        }
    }

    fn platform(layers: Vec<(Option<usize>, Option<usize>, Vec<FileDiff>)>) -> PlatformDiff {
        PlatformDiff {
            platform: "linux/arm64".into(),
            status: "differs",
            a_manifest: None,
            b_manifest: None,
            config: Vec::new(),
            layers: layers
                .into_iter()
                .map(|(ia, ib, files)| LayerDiff {
                    index: 1,
                    count: 1,
                    a: ia.map(|_| Digest::of(b"a")),
                    b: ib.map(|_| Digest::of(b"b")),
                    same_content: false,
                    files,
                    status: "differs",
                    a_index: ia,
                    b_index: ib,
                })
                .collect(),
            a_layers: 2,
            b_layers: 2,
            matching_layers: 1,
            normalisation: None,
        }
    }

    #[test]
    fn the_hint_needs_every_differing_file_covered_and_no_one_sided_layer() {
        let p = platform(vec![(
            Some(2),
            Some(2),
            vec![covered("/var/log/dpkg.log", true)],
        )]);
        let hint = normalisation_hint("pub", "new", &p, &[Some('A')]).unwrap();
        assert_eq!(hint.built_without, Some("A"));
        assert_eq!(
            hint.message,
            "only files that xbake's normalisation rules cover differ (/var/log/dpkg.log): \
             A (pub) was built without them (by another tool, or with --no-normalize)"
        );
        // Sides that disagree or cannot be told: no side named.
        let hint = normalisation_hint("pub", "new", &p, &[Some('A'), Some('B'), None]).unwrap();
        assert_eq!(hint.built_without, None);
        assert!(
            hint.message
                .contains("one or both images were built without them")
        );

        let mixed = platform(vec![(
            Some(2),
            Some(2),
            vec![
                covered("/var/log/dpkg.log", true),
                covered("/etc/motd", false),
            ],
        )]);
        assert!(normalisation_hint("pub", "new", &mixed, &[]).is_none());
        let extra = platform(vec![
            (Some(2), Some(2), vec![covered("/var/log/dpkg.log", true)]),
            (None, Some(3), vec![covered("/var/log/dpkg.log", true)]),
        ]);
        assert!(normalisation_hint("pub", "new", &extra, &[]).is_none());
        assert!(normalisation_hint("pub", "new", &platform(vec![]), &[]).is_none());
    }
}
