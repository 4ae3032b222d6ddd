//! A RUN step's own mounts: from what a front end asks for ([`MountRequest`]: a
//! recipe's `mounts:`, `xbake run --mount`, a Dockerfile's `RUN --mount` later) to what
//! the sandbox mounts (`StepMount`) and what must live while the step runs (cache
//! leases, the secrets' tmpfs, throwaway folders): [`prepare`] gives both as one
//! [`PreparedMounts`], dropped after the step. BuildKit's semantics and defaults
//! (frontend/dockerfile/instructions/commands_runmount.go, dockerfile2llb):
//!
//! - `cache`: a persistent folder per id and platform (cache/mounts.rs); the id defaults
//!   to the target; mode 0755, uid and gid 0 when first made; sharing `shared`.
//! - `secret`: the `--secret` of that id as a read-only file at the target (default
//!   `/run/secrets/ID`), mode 0400, owner 0:0; optional unless `required`, and a missing
//!   optional secret mounts nothing.
//! - `bind`: `source` inside a tree (another stage's rootfs, an image's, the build
//!   context), read-only unless `rw`, and then writes are thrown away.
//! - `tmpfs`: a fresh tmpfs, `size` bytes at most.
//!
//! A relative target is relative to the step's working directory.

use super::secrets::{SecretError, Secrets};
use crate::cache::CacheError;
use crate::cache::mounts::{CacheLease, CacheMountSpec, CacheMounts, Sharing};
use crate::sandbox::tmpfs::PrivateTmpfs;
use crate::sandbox::{MountKind, MountSource, SandboxError, StepMount};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// One mount as a front end describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountRequest {
    Cache {
        target: String,
        /// Default: the target (made absolute).
        id: Option<String>,
        sharing: Sharing,
        /// When the folder is first made. Defaults: 0755, 0, 0.
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        read_only: bool,
    },
    Secret {
        id: String,
        /// Default: `/run/secrets/` + the id's last component.
        target: Option<String>,
        /// Fail when the build has no such secret (otherwise the mount is skipped).
        required: bool,
        /// Defaults: 0400, 0, 0.
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
    },
    Bind {
        target: String,
        /// The tree `source` is in, resolved by the front end: a stage's or image's
        /// root filesystem, or the build context.
        from: PathBuf,
        /// Inside `from`, as if it were `/` (default: all of it).
        source: String,
        /// Writable, the writes thrown away after the step (BuildKit's `rw`).
        read_write: bool,
    },
    Tmpfs {
        target: String,
        /// Bytes; None or 0: the kernel's default (half of the RAM).
        size: Option<u64>,
    },
    /// `xbake run -v HOST:CONTAINER[:ro]`: a host folder or file bound as docker's `-v`
    /// does, the command's writes going to the host (never offered to build steps,
    /// whose writes outside the rootfs are always thrown away).
    Volume {
        target: String,
        source: PathBuf,
        read_only: bool,
    },
}

impl MountRequest {
    /// What the step key should say about this mount: everything that can change what
    /// the step produces, and nothing else. A cache mount's contents and a secret's
    /// value are never in it; a bind's tree is named by the caller (its digest), as its
    /// path here is a scratch folder.
    pub fn describe(&self) -> String {
        let opt = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_default();
        let octal = |v: Option<u32>| v.map(|v| format!("{v:o}")).unwrap_or_default();
        match self {
            MountRequest::Cache {
                target,
                id,
                sharing,
                mode,
                uid,
                gid,
                read_only,
            } => format!(
                "type=cache,target={target},id={},sharing={},mode={},uid={},gid={},ro={read_only}",
                id.as_deref().unwrap_or(target),
                sharing.as_str(),
                octal(*mode),
                opt(*uid),
                opt(*gid)
            ),
            MountRequest::Secret {
                id,
                target,
                required,
                mode,
                uid,
                gid,
            } => format!(
                "type=secret,id={id},target={},required={required},mode={},uid={},gid={}",
                target.as_deref().unwrap_or(""),
                octal(*mode),
                opt(*uid),
                opt(*gid)
            ),
            MountRequest::Bind {
                target,
                source,
                read_write,
                ..
            } => format!("type=bind,target={target},source={source},rw={read_write}"),
            MountRequest::Tmpfs { target, size } => {
                format!("type=tmpfs,target={target},size={}", size.unwrap_or(0))
            }
            MountRequest::Volume {
                target,
                source,
                read_only,
            } => format!(
                "volume,target={target},source={},ro={read_only}",
                source.display()
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("{0}")]
    Target(String),
    #[error(
        "secret {id:?} is required by the step but was not given (add --secret id={id},src=FILE \
         or --secret id={id},env=VARIABLE)"
    )]
    MissingSecret { id: String },
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("cache mount {id:?}: {source}")]
    Cache {
        id: String,
        #[source]
        source: CacheError,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

/// What [`prepare`] needs besides the requests.
pub struct MountEnv<'a> {
    /// The cache mounts of the build's cache (held open by the build).
    pub cache: &'a CacheMounts,
    pub secrets: &'a Secrets,
    /// The step's platform (`linux/arm64`): cache mounts are per platform.
    pub platform: &'a str,
    /// A private folder of the build's workspace, for throwaway folders.
    pub scratch: &'a Path,
    /// The step's working directory, for relative targets.
    pub workdir: &'a str,
}

/// The sandbox's mounts for one step, and what they need while it runs. Put
/// [`PreparedMounts::mounts`] into the step's spec; drop this after the step (releases
/// the cache leases, unmounts the secrets' tmpfs, removes the throwaway folders).
#[derive(Debug)]
pub struct PreparedMounts {
    pub mounts: Vec<StepMount>,
    _leases: Vec<CacheLease>,
    _secrets: Option<SecretFolder>,
    _scratch: Vec<tempfile::TempDir>,
}

/// Prepares the mounts of one step, in order. Nothing is mounted yet: the sandbox
/// mounts them in the step's namespaces. The targets must exist in the rootfs before
/// the step: `crate::sandbox::MountStubs`.
pub fn prepare(requests: &[MountRequest], env: &MountEnv) -> Result<PreparedMounts, MountError> {
    let mut prepared = PreparedMounts {
        mounts: Vec::new(),
        _leases: Vec::new(),
        _secrets: None,
        _scratch: Vec::new(),
    };
    let secret_bytes: usize = requests
        .iter()
        .filter_map(|r| match r {
            MountRequest::Secret { id, .. } => env.secrets.len(id),
            _ => None,
        })
        .map(|n| n.div_ceil(4096).max(1) * 4096)
        .sum();
    for request in requests {
        let written = match request {
            MountRequest::Cache { target, .. }
            | MountRequest::Bind { target, .. }
            | MountRequest::Volume { target, .. }
            | MountRequest::Tmpfs { target, .. } => target.clone(),
            MountRequest::Secret { id, target, .. } => target
                .clone()
                .unwrap_or_else(|| format!("/run/secrets/{}", last_component(id))),
        };
        // Checked before anything is made for it.
        let target = absolute_target(&written, env.workdir)?;
        let kind = match request {
            MountRequest::Cache {
                id,
                sharing,
                mode,
                uid,
                gid,
                read_only,
                ..
            } => {
                let id = id.as_deref().unwrap_or(&target);
                let spec = CacheMountSpec {
                    id,
                    platform: env.platform,
                    sharing: *sharing,
                    mode: mode.unwrap_or(0o755),
                    uid: uid.unwrap_or(0),
                    gid: gid.unwrap_or(0),
                };
                let lease =
                    env.cache
                        .lease(&spec, env.scratch)
                        .map_err(|source| MountError::Cache {
                            id: id.to_string(),
                            source,
                        })?;
                let kind = MountKind::Bind {
                    source: MountSource::Host(lease.path().to_path_buf()),
                    read_only: *read_only,
                };
                prepared._leases.push(lease);
                kind
            }
            MountRequest::Secret {
                id,
                required,
                mode,
                uid,
                gid,
                ..
            } => {
                if !env.secrets.contains(id) {
                    if *required {
                        return Err(MountError::MissingSecret { id: id.clone() });
                    }
                    continue;
                }
                let folder = match &mut prepared._secrets {
                    Some(folder) => folder,
                    slot => slot.insert(SecretFolder::new(env.scratch, secret_bytes)?),
                };
                let file = folder.next_file();
                env.secrets.write_file(
                    id,
                    &file,
                    mode.unwrap_or(0o400),
                    (uid.unwrap_or(0), gid.unwrap_or(0)),
                )?;
                MountKind::Bind {
                    source: MountSource::Host(file),
                    read_only: true,
                }
            }
            MountRequest::Bind {
                from,
                source,
                read_write,
                ..
            } => {
                let source = MountSource::InRoot {
                    root: from.clone(),
                    path: source.clone(),
                };
                if *read_write {
                    let scratch = tempfile::Builder::new()
                        .prefix("bind-")
                        .tempdir_in(env.scratch)
                        .map_err(|source| MountError::Io {
                            what: format!("making a scratch folder in {}", env.scratch.display()),
                            source,
                        })?;
                    let kind = MountKind::Scratch {
                        source,
                        scratch: scratch.path().to_path_buf(),
                    };
                    prepared._scratch.push(scratch);
                    kind
                } else {
                    MountKind::Bind {
                        source,
                        read_only: true,
                    }
                }
            }
            MountRequest::Tmpfs { size, .. } => MountKind::Tmpfs { size: *size },
            MountRequest::Volume {
                source, read_only, ..
            } => MountKind::Bind {
                source: MountSource::Host(source.clone()),
                read_only: *read_only,
            },
        };
        prepared.mounts.push(StepMount { target, kind });
    }
    Ok(prepared)
}

/// A relative target joined to the working directory; checked as the sandbox will.
fn absolute_target(target: &str, workdir: &str) -> Result<String, MountError> {
    let joined = if target.starts_with('/') {
        target.to_string()
    } else {
        format!("{}/{target}", workdir.trim_end_matches('/'))
    };
    let rel = crate::sandbox::spec::target_path(&joined).map_err(MountError::Target)?;
    Ok(format!("/{}", rel.display()))
}

fn last_component(id: &str) -> &str {
    id.rsplit('/').find(|p| !p.is_empty()).unwrap_or(id)
}

/// Where a step's secrets are written: a private tmpfs of the build's namespace, so
/// their bytes never reach a disk. (Unit tests, outside any namespace, use a private
/// folder instead.)
#[derive(Debug)]
struct SecretFolder {
    path: PathBuf,
    files: usize,
    _tmpfs: Option<PrivateTmpfs>,
}

impl SecretFolder {
    fn new(scratch: &Path, bytes: usize) -> Result<SecretFolder, MountError> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = scratch.join(format!(
            "secrets-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        #[cfg(test)]
        if !crate::sandbox::userns::inside_build_namespace() {
            crate::cache::private_dir::create_new_private_dir(&path).map_err(|source| {
                MountError::Io {
                    what: path.display().to_string(),
                    source,
                }
            })?;
            return Ok(SecretFolder {
                path,
                files: 0,
                _tmpfs: None,
            });
        }
        let tmpfs = PrivateTmpfs::mount(&path, bytes as u64 + 4096)?;
        Ok(SecretFolder {
            path,
            files: 0,
            _tmpfs: Some(tmpfs),
        })
    }

    /// A fresh name for the next secret (names say nothing about the secret).
    fn next_file(&mut self) -> PathBuf {
        self.files += 1;
        self.path.join(self.files.to_string())
    }
}

#[cfg(test)]
impl Drop for SecretFolder {
    fn drop(&mut self) {
        if self._tmpfs.is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The fields of a CSV record (`a=1,"b=x,y"`), as BuildKit's `--mount` and buildx's
/// `--secret` read theirs: double quotes keep commas, `""` inside them is one quote.
pub(crate) fn csv_fields(text: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    if quoted {
        return Err("a quote is not closed".into());
    }
    fields.push(field);
    Ok(fields.into_iter().filter(|f| !f.is_empty()).collect())
}

/// Parses a Dockerfile `RUN --mount` value (BuildKit's syntax): `type=cache|secret|bind|tmpfs`
/// (default bind), `target`/`dst`/`destination`, `source`/`src`, `id`, `sharing`, `mode`
/// (octal), `uid`, `gid`, `size` (tmpfs: bytes, or with k, M, G), `required`, and
/// `ro`/`readonly`, `rw`/`readwrite` (bare or `=true|false`). A bind's `source` is
/// inside `bind_root` (for `xbake run`: an absolute source is a host path, a relative
/// one is inside the current folder). `from` (a stage or image) is the recipe's to resolve.
pub fn parse_mount_flag(text: &str, bind_root: &Path) -> Result<MountRequest, String> {
    let fields = csv_fields(text)?;
    let mut kind = "bind".to_string();
    let mut values: Vec<(String, Option<String>)> = Vec::new();
    for field in fields {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_string())),
            None => (field.to_ascii_lowercase(), None),
        };
        if key == "type" {
            kind = value.unwrap_or_default().to_ascii_lowercase();
        } else {
            values.push((key, value));
        }
    }
    let mut target = None;
    let mut source = None;
    let mut id = None;
    let mut sharing = None;
    let (mut mode, mut uid, mut gid, mut size) = (None, None, None, None);
    let mut read_only = None;
    let mut required = false;
    let flag = |key: &str, value: &Option<String>| -> Result<bool, String> {
        match value.as_deref() {
            None | Some("true") | Some("1") => Ok(true),
            Some("false") | Some("0") => Ok(false),
            Some(v) => Err(format!("{key}={v}: expected true or false")),
        }
    };
    let number = |key: &str, value: &Option<String>, radix: u32| -> Result<u32, String> {
        let v = value.as_deref().unwrap_or_default();
        u32::from_str_radix(v, radix).map_err(|_| format!("{key}={v}: not a number"))
    };
    for (key, value) in &values {
        let needs = || {
            value
                .clone()
                .ok_or_else(|| format!("{key} needs a value ({key}=…)"))
        };
        match key.as_str() {
            "target" | "dst" | "destination" => target = Some(needs()?),
            "source" | "src" => source = Some(needs()?),
            "id" => id = Some(needs()?),
            "sharing" => sharing = Some(needs()?.parse::<Sharing>()?),
            "mode" => mode = Some(number(key, value, 8)?),
            "uid" => uid = Some(number(key, value, 10)?),
            "gid" => gid = Some(number(key, value, 10)?),
            "size" => {
                let v = needs()?;
                size = Some(crate::cache::prune::parse_size(&v).ok_or_else(|| {
                    format!("size={v}: expected bytes, or a number with k, M or G")
                })?);
            }
            "ro" | "readonly" => read_only = Some(flag(key, value)?),
            "rw" | "readwrite" => read_only = Some(!flag(key, value)?),
            "required" => required = flag(key, value)?,
            "from" => {
                return Err(
                    "from= (a stage or an image) is for recipes; name a host path \
                            with source= instead"
                        .into(),
                );
            }
            other => return Err(format!("unknown key {other:?}")),
        }
    }
    let allowed: &[&str] = match kind.as_str() {
        "cache" => &["target", "id", "sharing", "mode", "uid", "gid", "ro"],
        "secret" => &["target", "id", "source", "mode", "uid", "gid", "required"],
        "bind" => &["target", "source", "ro"],
        "tmpfs" => &["target", "size"],
        other => {
            return Err(format!(
                "unknown mount type {other:?}: bind, cache, secret or tmpfs"
            ));
        }
    };
    for (key, _) in &values {
        let canonical = match key.as_str() {
            "dst" | "destination" => "target",
            "src" => "source",
            "readonly" | "rw" | "readwrite" => "ro",
            k => k,
        };
        if !allowed.contains(&canonical) {
            return Err(format!("{key} is not an option of type={kind} mounts"));
        }
    }
    let need_target = || {
        target
            .clone()
            .ok_or_else(|| format!("a {kind} mount needs target="))
    };
    Ok(match kind.as_str() {
        "cache" => MountRequest::Cache {
            target: need_target()?,
            id,
            sharing: sharing.unwrap_or_default(),
            mode,
            uid,
            gid,
            read_only: read_only.unwrap_or(false),
        },
        "secret" => {
            // BuildKit: source= is the id too; without either, the target's last name.
            let id = match (id, source, &target) {
                (Some(_), Some(_), _) => {
                    return Err("give the secret's id= or source=, not both".into());
                }
                (Some(id), None, _) | (None, Some(id), _) => id,
                (None, None, Some(t)) => last_component(t).to_string(),
                (None, None, None) => return Err("a secret mount needs id= or target=".into()),
            };
            MountRequest::Secret {
                id,
                target,
                required,
                mode,
                uid,
                gid,
            }
        }
        "bind" => {
            let source = source.unwrap_or_default();
            let (from, inside) = if source.starts_with('/') {
                (PathBuf::from("/"), source)
            } else {
                (bind_root.to_path_buf(), source)
            };
            MountRequest::Bind {
                target: need_target()?,
                from,
                source: inside,
                read_write: read_only == Some(false),
            }
        }
        _ => MountRequest::Tmpfs {
            target: need_target()?,
            size,
        },
    })
}

/// `xbake run -v HOST:CONTAINER[:ro|:rw]`, docker's syntax: HOST relative to `cwd`, and
/// it must exist (docker would make a folder; a typo should not become an empty one).
pub fn parse_volume_flag(text: &str, cwd: &Path) -> Result<MountRequest, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (host, target, read_only) = match parts[..] {
        [host, target] => (host, target, false),
        [host, target, "ro"] => (host, target, true),
        [host, target, "rw"] => (host, target, false),
        [_, _, other] => return Err(format!("unknown option {other:?} (ro or rw)")),
        _ => return Err("expected HOST:CONTAINER[:ro]".into()),
    };
    if host.is_empty() || !target.starts_with('/') {
        return Err("expected HOST:CONTAINER[:ro], CONTAINER an absolute path".into());
    }
    let source = cwd.join(host);
    if !source.exists() {
        return Err(format!("{} does not exist", source.display()));
    }
    Ok(MountRequest::Volume {
        target: target.to_string(),
        source,
        read_only,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::secrets::{SecretFrom, SecretSource};

    #[test]
    fn mount_flags_follow_buildkit() {
        let here = Path::new("/work/ctx");
        let parse = |t: &str| parse_mount_flag(t, here);
        assert_eq!(
            parse("type=cache,target=/root/.cache/go-build"),
            Ok(MountRequest::Cache {
                target: "/root/.cache/go-build".into(),
                id: None,
                sharing: Sharing::Shared,
                mode: None,
                uid: None,
                gid: None,
                read_only: false,
            })
        );
        assert_eq!(
            parse("type=cache,dst=/var/cache/apt,id=apt,sharing=locked,mode=0700,uid=1,gid=2"),
            Ok(MountRequest::Cache {
                target: "/var/cache/apt".into(),
                id: Some("apt".into()),
                sharing: Sharing::Locked,
                mode: Some(0o700),
                uid: Some(1),
                gid: Some(2),
                read_only: false,
            })
        );
        assert_eq!(
            parse("type=secret,id=npmrc,required"),
            Ok(MountRequest::Secret {
                id: "npmrc".into(),
                target: None,
                required: true,
                mode: None,
                uid: None,
                gid: None,
            })
        );
        assert_eq!(
            parse("type=secret,target=/root/.aws/credentials").map(|m| match m {
                MountRequest::Secret { id, .. } => id,
                other => panic!("{other:?}"),
            }),
            Ok("credentials".into())
        );
        assert_eq!(
            parse("target=/src,source=sub,rw"),
            Ok(MountRequest::Bind {
                target: "/src".into(),
                from: here.into(),
                source: "sub".into(),
                read_write: true,
            })
        );
        assert_eq!(
            parse("type=bind,target=/h,src=/etc,readonly=true"),
            Ok(MountRequest::Bind {
                target: "/h".into(),
                from: "/".into(),
                source: "/etc".into(),
                read_write: false,
            })
        );
        assert_eq!(
            parse("type=tmpfs,target=/tmp,size=1m"),
            Ok(MountRequest::Tmpfs {
                target: "/tmp".into(),
                size: Some(1 << 20),
            })
        );
        for (bad, why) in [
            ("type=volume,target=/x", "unknown mount type"),
            ("type=tmpfs,target=/x,mode=0755", "not an option"),
            ("type=bind,target=/x,from=build", "for recipes"),
            ("type=cache", "needs target"),
            ("type=cache,target=/x,sharing=exclusive", "unknown sharing"),
            ("type=cache,target=/x,mode=9", "not a number"),
            ("type=secret", "needs id"),
            ("type=tmpfs,target=/x,size=big", "size=big"),
            ("type=bind,target=/x,ro=maybe", "true or false"),
            ("type=bind,\"target=/x", "quote"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn descriptions_for_step_keys_name_no_secret_and_no_scratch_path() {
        let secret = MountRequest::Secret {
            id: "tok".into(),
            target: None,
            required: true,
            mode: Some(0o440),
            uid: None,
            gid: Some(5),
        };
        assert_eq!(
            secret.describe(),
            "type=secret,id=tok,target=,required=true,mode=440,uid=,gid=5"
        );
        let bind = MountRequest::Bind {
            target: "/src".into(),
            from: "/cache/work/build-1/stage-rootfs".into(),
            source: "/out".into(),
            read_write: false,
        };
        assert_eq!(
            bind.describe(),
            "type=bind,target=/src,source=/out,rw=false"
        );
        assert_eq!(
            parse_mount_flag("type=cache,target=/c", Path::new("/"))
                .unwrap()
                .describe(),
            "type=cache,target=/c,id=/c,sharing=shared,mode=,uid=,gid=,ro=false"
        );
    }

    struct Env {
        _cache_dir: tempfile::TempDir,
        cache: crate::cache::Cache,
        scratch: tempfile::TempDir,
        secrets: Secrets,
    }

    fn env_with_secret(value: &[u8]) -> Env {
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = crate::cache::Cache::open(cache_dir.path()).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let file = scratch.path().join("given");
        std::fs::write(&file, value).unwrap();
        let secrets = Secrets::read(&[SecretSource {
            id: "tok".into(),
            from: SecretFrom::File(file),
        }])
        .unwrap();
        Env {
            _cache_dir: cache_dir,
            cache,
            scratch,
            secrets,
        }
    }

    fn ids() -> (Option<u32>, Option<u32>) {
        (
            Some(nix::unistd::getuid().as_raw()),
            Some(nix::unistd::getgid().as_raw()),
        )
    }

    #[test]
    fn prepared_mounts_in_order_with_defaults_and_cleanup() {
        let env = env_with_secret(b"s3cr3t");
        let mounts = CacheMounts::of(&env.cache);
        let (uid, gid) = ids();
        let requests = [
            MountRequest::Cache {
                target: "cache".into(),
                id: None,
                sharing: Sharing::Shared,
                mode: None,
                uid,
                gid,
                read_only: false,
            },
            MountRequest::Secret {
                id: "tok".into(),
                target: None,
                required: true,
                mode: None,
                uid,
                gid,
            },
            MountRequest::Secret {
                id: "absent".into(),
                target: None,
                required: false,
                mode: None,
                uid: None,
                gid: None,
            },
            MountRequest::Bind {
                target: "/src".into(),
                from: "/ctx".into(),
                source: "app".into(),
                read_write: true,
            },
            MountRequest::Tmpfs {
                target: "/tmp".into(),
                size: Some(4096),
            },
        ];
        let prepared = prepare(
            &requests,
            &MountEnv {
                cache: &mounts,
                secrets: &env.secrets,
                platform: "linux/amd64",
                scratch: env.scratch.path(),
                workdir: "/app/",
            },
        )
        .unwrap();
        let targets: Vec<&str> = prepared.mounts.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(
            targets,
            ["/app/cache", "/run/secrets/tok", "/src", "/tmp"],
            "relative targets join the workdir; an absent optional secret mounts nothing"
        );
        let MountKind::Bind {
            source: MountSource::Host(cache_dir),
            read_only: false,
        } = &prepared.mounts[0].kind
        else {
            panic!("{:?}", prepared.mounts[0]);
        };
        assert_eq!(
            cache_dir,
            &mounts.folder("/app/cache", "linux/amd64").join("data"),
            "the id defaults to the target"
        );
        let MountKind::Bind {
            source: MountSource::Host(secret_file),
            read_only: true,
        } = &prepared.mounts[1].kind
        else {
            panic!("{:?}", prepared.mounts[1]);
        };
        assert_eq!(std::fs::read(secret_file).unwrap(), b"s3cr3t");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(secret_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o400);
        let MountKind::Scratch { scratch, .. } = &prepared.mounts[2].kind else {
            panic!("{:?}", prepared.mounts[2]);
        };
        assert!(scratch.is_dir());
        let (secret_file, scratch) = (secret_file.clone(), scratch.clone());
        drop(prepared);
        assert!(!secret_file.exists(), "the secret is gone after the step");
        assert!(!scratch.exists(), "throwaway folders are removed");
    }

    #[test]
    fn a_required_secret_that_is_missing_fails_by_name() {
        let env = env_with_secret(b"x");
        let mounts = CacheMounts::of(&env.cache);
        let err = prepare(
            &[MountRequest::Secret {
                id: "npmrc".into(),
                target: None,
                required: true,
                mode: None,
                uid: None,
                gid: None,
            }],
            &MountEnv {
                cache: &mounts,
                secrets: &env.secrets,
                platform: "linux/amd64",
                scratch: env.scratch.path(),
                workdir: "/",
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("\"npmrc\"") && err.contains("--secret id=npmrc"),
            "{err}"
        );
        for bad in ["/proc/x", "/", "/dev", "../../etc"] {
            let err = prepare(
                &[MountRequest::Tmpfs {
                    target: bad.into(),
                    size: None,
                }],
                &MountEnv {
                    cache: &mounts,
                    secrets: &env.secrets,
                    platform: "linux/amd64",
                    scratch: env.scratch.path(),
                    workdir: "/",
                },
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("not allowed") || err.contains(".."),
                "{bad}: {err}"
            );
        }
    }
}
