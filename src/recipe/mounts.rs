//! A run step's `mounts:` entries, checked at load time: which keys each type takes
//! (BuildKit's `--mount` options, spelled as YAML keys), their values, and defaults.
//! Paths are templates, expanded and judged per platform by the planner.

use serde_saphyr::Spanned;

use super::error::{Flaw, Problem};
use super::fields::parse_mode;
use super::model::{MountKindTemplate, MountTemplate};
use super::plan::CacheSharing;
use super::schema::RawMount;
use super::validate::{pos, template};

/// The keys each mount type takes besides `type`, as the error lists them.
const CACHE_KEYS: &str = "target, id, sharing, mode, uid, gid";
const SECRET_KEYS: &str = "id, target, required, mode, uid, gid";
const BIND_KEYS: &str = "from, source, target, readwrite";
const TMPFS_KEYS: &str = "target, size";

pub(super) fn mount(raw: Spanned<RawMount>) -> Result<MountTemplate, Flaw> {
    let at = pos(&raw);
    let m = raw.value;
    let (kind, allowed) = match m.kind.value.as_str() {
        "cache" => ("cache", CACHE_KEYS),
        "secret" => ("secret", SECRET_KEYS),
        "bind" => ("bind", BIND_KEYS),
        "tmpfs" => ("tmpfs", TMPFS_KEYS),
        other => {
            return Err(Problem::BadMountType {
                value: other.to_string(),
            }
            .at(pos(&m.kind)));
        }
    };
    for (key, present) in present_keys(&m) {
        if let Some(at) = present
            && !allowed.split(", ").any(|k| k == key)
        {
            return Err(Problem::MountKeyNotAllowed { kind, key, allowed }.at(at));
        }
    }
    let missing = |key| Problem::MountKeyMissing { kind, key }.at(at);
    let mode = |default| -> Result<u32, Flaw> {
        match &m.mode {
            None => Ok(default),
            Some(mode) => parse_mode(&mode.value).ok_or_else(|| {
                Problem::BadMode {
                    value: mode.value.clone(),
                }
                .at(pos(mode))
            }),
        }
    };
    let uid = m.uid.as_ref().map_or(0, |v| v.value);
    let gid = m.gid.as_ref().map_or(0, |v| v.value);
    let kind = match kind {
        "cache" => MountKindTemplate::Cache {
            id: m.id.clone().map(template).transpose()?,
            sharing: m
                .sharing
                .as_ref()
                .map(sharing)
                .transpose()?
                .unwrap_or_default(),
            mode: mode(0o755)?,
            uid,
            gid,
        },
        "secret" => {
            let id = m.id.as_ref().ok_or_else(|| missing("id"))?;
            if !is_secret_id(&id.value) {
                return Err(Problem::BadSecretId {
                    value: id.value.clone(),
                }
                .at(pos(id)));
            }
            MountKindTemplate::Secret {
                id: id.value.clone(),
                required: m.required.as_ref().is_some_and(|r| r.value),
                mode: mode(0o400)?,
                uid,
                gid,
            }
        }
        "bind" => MountKindTemplate::Bind {
            from: m.from.clone().map(template).transpose()?,
            source: m.source.clone().map(template).transpose()?,
            readwrite: m.readwrite.as_ref().is_some_and(|r| r.value),
        },
        _ => MountKindTemplate::Tmpfs {
            size: m
                .size
                .as_ref()
                .map(|size| {
                    parse_size(&size.value).ok_or_else(|| {
                        Problem::BadSize {
                            value: size.value.clone(),
                        }
                        .at(pos(size))
                    })
                })
                .transpose()?,
        },
    };
    let target = match m.target {
        Some(target) => Some(template(target)?),
        // A secret's default target is /run/secrets/ID, settled by the planner.
        None if matches!(kind, MountKindTemplate::Secret { .. }) => None,
        None => return Err(missing("target")),
    };
    Ok(MountTemplate { at, target, kind })
}

/// Every optional key with where it was written, for the "not allowed here" check.
fn present_keys(m: &RawMount) -> [(&'static str, Option<super::error::Pos>); 11] {
    fn at<T>(v: &Option<Spanned<T>>) -> Option<super::error::Pos> {
        v.as_ref().map(pos)
    }
    [
        ("target", at(&m.target)),
        ("id", at(&m.id)),
        ("sharing", at(&m.sharing)),
        ("mode", at(&m.mode)),
        ("uid", at(&m.uid)),
        ("gid", at(&m.gid)),
        ("required", at(&m.required)),
        ("from", at(&m.from)),
        ("source", at(&m.source)),
        ("readwrite", at(&m.readwrite)),
        ("size", at(&m.size)),
    ]
}

fn sharing(value: &Spanned<String>) -> Result<CacheSharing, Flaw> {
    match value.value.as_str() {
        "shared" => Ok(CacheSharing::Shared),
        "private" => Ok(CacheSharing::Private),
        "locked" => Ok(CacheSharing::Locked),
        other => Err(Problem::BadSharing {
            value: other.to_string(),
        }
        .at(pos(value))),
    }
}

/// Ids name a file under /run/secrets and a `--secret id=`: no `/`, no spaces.
pub(super) fn is_secret_id(id: &str) -> bool {
    !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// `1048576`, `64k`, `64m`, `1g` (binary multiples, any case, optional `b`/`ib`).
pub(super) fn parse_size(text: &str) -> Option<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let number: u64 = number.parse().ok()?;
    let shift = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        _ => return None,
    };
    number.checked_mul(1u64 << shift).filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        for (text, want) in [
            ("1024", Some(1024)),
            ("64k", Some(64 << 10)),
            ("64M", Some(64 << 20)),
            ("64mb", Some(64 << 20)),
            ("1GiB", Some(1 << 30)),
            ("0", None),
            ("", None),
            ("12x", None),
            ("m", None),
            ("99999999999999g", None),
        ] {
            assert_eq!(parse_size(text), want, "{text:?}");
        }
    }

    #[test]
    fn secret_ids() {
        assert!(is_secret_id("npm_token"));
        assert!(is_secret_id("aws.creds-1"));
        for bad in ["", ".", "..", "a/b", "a b", "tök"] {
            assert!(!is_secret_id(bad), "{bad:?}");
        }
    }
}
