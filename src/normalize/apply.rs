//! Applying the rules after a run step: only to the paths the step added or changed,
//! only to regular files, always through `RootDir` (paths resolved inside the rootfs).
//! Returns the step's change set as it is after the rules (a removed file the step
//! added is no longer a change; one it changed becomes a deletion).

use super::rules::{Action, RuleSet};
use crate::layer::LayerError;
use crate::layer::root::RootDir;
use crate::layer::snapshot::{Change, ChangeKind, ChangeSet};
use nix::sys::stat::SFlag;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What the stateful rules need from before the step: the contents of the files that
/// `shadow-lastchg` names (None: absent or not a regular file).
#[derive(Debug, Default)]
pub struct Before {
    files: BTreeMap<String, Option<Vec<u8>>>,
}

/// One file a rule changed, for the progress line and the tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub path: PathBuf,
    pub action: Action,
}

/// Reads what the stateful rules compare against; call it before the step runs.
pub fn before_step(rules: &RuleSet, root: &RootDir) -> Result<Before, LayerError> {
    let mut before = Before::default();
    for rule in rules
        .rules
        .iter()
        .filter(|r| r.action == Action::ShadowLastChange)
    {
        let mut contents = None;
        root.edit_regular_file(Path::new(&rule.pattern), &mut |bytes| {
            contents = Some(bytes.to_vec());
            None
        })?;
        before.files.insert(rule.pattern.clone(), contents);
    }
    Ok(before)
}

/// Applies `rules` to the paths in `changes`; returns the adjusted change set and what
/// was done.
pub fn apply(
    rules: &RuleSet,
    root: &RootDir,
    before: &Before,
    epoch: i64,
    changes: ChangeSet,
) -> Result<(ChangeSet, Vec<Applied>), LayerError> {
    let mut kept = Vec::with_capacity(changes.changes.len());
    let mut applied = Vec::new();
    for change in changes.changes {
        if !matches!(change.kind, ChangeKind::Added | ChangeKind::Modified) {
            kept.push(change);
            continue;
        }
        let absolute = format!("/{}", change.path.display());
        let Some(rule) = rules.rule_for(&absolute) else {
            kept.push(change);
            continue;
        };
        let done = match rule.action {
            Action::Remove => remove_regular(root, &change.path)?,
            Action::Truncate => edit(root, &change.path, |bytes| {
                (!bytes.is_empty()).then(Vec::new)
            })?,
            Action::ShadowLastChange => {
                let old = before.files.get(&rule.pattern).cloned().flatten();
                edit(root, &change.path, |bytes| {
                    shadow_lastchg(old.as_deref(), bytes, epoch)
                })?
            }
            Action::PycMtime => edit(root, &change.path, |bytes| pyc_mtime(bytes, epoch))?,
        };
        if done {
            applied.push(Applied {
                path: change.path.clone(),
                action: rule.action,
            });
        }
        match (rule.action, done, change.kind) {
            // Added and removed again: as if the step had never written it.
            (Action::Remove, true, ChangeKind::Added) => {}
            (Action::Remove, true, _) => kept.push(Change {
                path: change.path,
                kind: ChangeKind::Deleted,
            }),
            _ => kept.push(change),
        }
    }
    Ok((
        ChangeSet {
            changes: kept,
            link_ids: changes.link_ids,
        },
        applied,
    ))
}

fn edit(
    root: &RootDir,
    rel: &Path,
    mut f: impl FnMut(&[u8]) -> Option<Vec<u8>>,
) -> Result<bool, LayerError> {
    Ok(root.edit_regular_file(rel, &mut f)? == Some(true))
}

fn remove_regular(root: &RootDir, rel: &Path) -> Result<bool, LayerError> {
    match root.lstat(rel)? {
        Some(st) if crate::layer::root::file_type(&st) == SFlag::S_IFREG => {
            root.remove_all(rel)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// shadow(5): `name:password:lastchg:min:max:warn:inactive:expire:reserved`. For each
/// entry that is new or different from `before` (the step added the user or changed
/// the entry), a non-empty lastchg becomes SOURCE_DATE_EPOCH's day, which is what
/// shadow's own tools write when they honour SOURCE_DATE_EPOCH (lib/getdate/gettime in
/// shadow >= 4.9). Entries the step did not touch keep their bytes. None: no change.
pub fn shadow_lastchg(before: Option<&[u8]>, after: &[u8], epoch: i64) -> Option<Vec<u8>> {
    let day = epoch.div_euclid(86_400).to_string();
    let old: BTreeMap<&[u8], &[u8]> = before
        .unwrap_or_default()
        .split(|&b| b == b'\n')
        .filter_map(|line| Some((line.split(|&b| b == b':').next()?, line)))
        .collect();
    let mut changed = false;
    let mut out = Vec::with_capacity(after.len());
    for (i, line) in after.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        let fields: Vec<&[u8]> = line.split(|&b| b == b':').collect();
        let untouched = old.get(fields[0]) == Some(&line);
        if untouched || fields.len() < 3 || fields[2].is_empty() || fields[2] == day.as_bytes() {
            out.extend_from_slice(line);
            continue;
        }
        changed = true;
        let mut fields = fields;
        fields[2] = day.as_bytes();
        out.extend_from_slice(&fields.join(&b':'));
    }
    changed.then_some(out)
}

/// PEP 552 header: magic (4), flags (4), then for flags == 0 the source's mtime (4,
/// little-endian, seconds) and size (4). The layer clamps the .py's mtime to
/// SOURCE_DATE_EPOCH, so the recorded one is clamped the same way and the pair still
/// matches when the image runs. Hash-based files (flags bit 0) carry no time. None: no
/// change.
pub fn pyc_mtime(bytes: &[u8], epoch: i64) -> Option<Vec<u8>> {
    let header: &[u8; 16] = bytes.get(..16)?.try_into().ok()?;
    let flags = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if flags != 0 {
        return None;
    }
    let mtime = u32::from_le_bytes(header[8..12].try_into().ok()?);
    // The field is the low 32 bits of the mtime (importlib._bootstrap_external).
    let clamp = (epoch as u64 & 0xffff_ffff) as u32;
    if i64::from(mtime) <= epoch {
        return None;
    }
    let mut out = bytes.to_vec();
    out[8..12].copy_from_slice(&clamp.to_le_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn only_entries_the_step_added_or_changed_get_the_epoch_day() {
        let before = b"root:*:19000:0:99999:7:::\nbin:*:19000:0:99999:7:::\n";
        let after = b"root:*:19000:0:99999:7:::\nbin:*:20001:0:99999:7:::\nstatd:!:20001::::::\nnoage:!::::::::\n";
        let out = shadow_lastchg(Some(before), after, 3 * DAY + 5).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "root:*:19000:0:99999:7:::\nbin:*:3:0:99999:7:::\nstatd:!:3::::::\nnoage:!::::::::\n"
        );
        // Already at the epoch's day, or nothing new: no rewrite.
        assert_eq!(shadow_lastchg(Some(before), before, 0), None);
        assert_eq!(shadow_lastchg(None, b"u:!:0:::::\n", 0), None);
    }

    fn pyc(flags: u32, mtime: u32) -> Vec<u8> {
        let mut v = vec![0xa7, 0x0d, 0x0d, 0x0a];
        v.extend(flags.to_le_bytes());
        v.extend(mtime.to_le_bytes());
        v.extend(42u32.to_le_bytes());
        v.extend(b"code");
        v
    }

    #[test]
    fn timestamp_pycs_are_clamped_and_hash_pycs_left() {
        let out = pyc_mtime(&pyc(0, 1_700_000_000), 1_000).unwrap();
        assert_eq!(out, pyc(0, 1_000));
        assert_eq!(pyc_mtime(&pyc(0, 500), 1_000), None);
        assert_eq!(pyc_mtime(&pyc(3, 1_700_000_000), 0), None);
        assert_eq!(pyc_mtime(b"short", 0), None);
    }
}
