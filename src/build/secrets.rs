//! Build secrets: `--secret id=ID,src=FILE` and `--secret id=ID,env=VAR`, docker
//! buildx's syntax. They are read once, when the build starts, and kept in memory only;
//! a run step that mounts one (`type: secret`) sees it as a read-only file on a private
//! tmpfs (see build/mounts.rs), never on a disk. A secret's bytes appear in no layer,
//! step key, record, metadata file, progress line or error message: nothing here formats
//! them, and the `Debug` of a secret shows its length only.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The most a secret may hold: BuildKit's limit (secretsprovider.MaxSecretSize).
pub const MAX_SECRET_BYTES: usize = 500 * 1024;

/// One `--secret` flag: an id and where its value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretSource {
    pub id: String,
    pub from: SecretFrom,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretFrom {
    File(PathBuf),
    Env(String),
    /// A bare `id=ID`: the environment variable ID when it is set, else the file ID,
    /// decided when the secrets are read (BuildKit's secretsprovider.NewStore).
    EnvOrFile,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("--secret {text:?}: {reason}")]
    Flag { text: String, reason: String },
    #[error("secret {id:?} is given twice")]
    Duplicate { id: String },
    #[error("secret {id:?}: reading {}: {source}", path.display())]
    Read {
        id: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret {id:?}: the environment variable {var} is not set")]
    MissingEnv { id: String, var: String },
    #[error("secret {id:?} is larger than {} KiB, the most a secret may hold", MAX_SECRET_BYTES / 1024)]
    TooLarge { id: String },
    #[error("secret {id:?}: writing it for the step: {source}")]
    Write {
        id: String,
        #[source]
        source: std::io::Error,
    },
}

impl std::str::FromStr for SecretSource {
    type Err = SecretError;

    /// `id=ID[,type=file|env][,src|source=FILE][,env=VAR]`; with `type=env`, `src`
    /// names the variable (buildx's util/buildflags/secrets.go).
    fn from_str(text: &str) -> Result<SecretSource, SecretError> {
        let bad = |reason: String| SecretError::Flag {
            text: text.to_string(),
            reason,
        };
        let (mut id, mut kind, mut src, mut env) = (None, None, None, None);
        for field in super::mounts::csv_fields(text).map_err(&bad)? {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| bad(format!("{field:?} is not KEY=VALUE")))?;
            let value = value.to_string();
            match key.to_ascii_lowercase().as_str() {
                "id" => id = Some(value),
                "type" if value == "file" || value == "env" => kind = Some(value),
                "type" => return Err(bad(format!("unknown type {value:?}: file or env"))),
                "src" | "source" => src = Some(value),
                "env" => env = Some(value),
                other => return Err(bad(format!("unknown key {other:?}"))),
            }
        }
        let id = id
            .filter(|i| !i.is_empty())
            .ok_or_else(|| bad("no id= given".into()))?;
        let from = match (kind.as_deref(), src, env) {
            (_, Some(_), Some(_)) => return Err(bad("both a file (src) and env given".into())),
            (Some("env"), Some(var), None) | (_, None, Some(var)) => SecretFrom::Env(var),
            (Some("env"), None, None) => SecretFrom::Env(id.clone()),
            (_, Some(file), None) => SecretFrom::File(PathBuf::from(file)),
            (Some(_), None, None) => SecretFrom::File(PathBuf::from(&id)),
            (None, None, None) => SecretFrom::EnvOrFile,
        };
        Ok(SecretSource { id, from })
    }
}

/// A secret's bytes; zeroed when dropped. Its `Debug` shows the length only.
struct Value(Vec<u8>);

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        self.0.fill(0);
        // Keeps the zeroing from being optimised away as a dead store.
        std::hint::black_box(&self.0);
    }
}

/// The build's secrets, by id.
#[derive(Debug, Default)]
pub struct Secrets {
    values: BTreeMap<String, Value>,
}

impl Secrets {
    /// The ids given, sorted; never the values (what provenance records).
    pub fn ids(&self) -> Vec<String> {
        self.values.keys().cloned().collect()
    }

    /// Reads every secret (each at most [`MAX_SECRET_BYTES`]). Errors name the id and
    /// the file or variable, never the value.
    pub fn read(sources: &[SecretSource]) -> Result<Secrets, SecretError> {
        let mut values = BTreeMap::new();
        for source in sources {
            if values.contains_key(&source.id) {
                return Err(SecretError::Duplicate {
                    id: source.id.clone(),
                });
            }
            let id = &source.id;
            let bytes = match &source.from {
                SecretFrom::Env(var) => from_env(id, var)?,
                SecretFrom::File(path) => from_file(id, path)?,
                SecretFrom::EnvOrFile if std::env::var_os(id).is_some() => from_env(id, id)?,
                SecretFrom::EnvOrFile => from_file(id, Path::new(id))?,
            };
            values.insert(id.clone(), Value(bytes));
        }
        Ok(Secrets { values })
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.values.contains_key(id)
    }

    /// How many bytes the secret holds.
    pub(crate) fn len(&self, id: &str) -> Option<usize> {
        self.values.get(id).map(|v| v.0.len())
    }

    /// Writes the secret `id` to a new file `path` (on a private tmpfs) with `mode`,
    /// owned by `uid:gid`. False when there is no such secret.
    pub(crate) fn write_file(
        &self,
        id: &str,
        path: &Path,
        mode: u32,
        (uid, gid): (u32, u32),
    ) -> Result<bool, SecretError> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let Some(value) = self.values.get(id) else {
            return Ok(false);
        };
        let failed = |source| SecretError::Write {
            id: id.to_string(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(failed)?;
        file.write_all(&value.0).map_err(failed)?;
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(failed)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))
            .map_err(failed)?;
        Ok(true)
    }
}

fn from_env(id: &str, var: &str) -> Result<Vec<u8>, SecretError> {
    use std::os::unix::ffi::OsStringExt;
    let value = std::env::var_os(var).ok_or_else(|| SecretError::MissingEnv {
        id: id.to_string(),
        var: var.to_string(),
    })?;
    let bytes = value.into_vec();
    if bytes.len() > MAX_SECRET_BYTES {
        return Err(SecretError::TooLarge { id: id.to_string() });
    }
    Ok(bytes)
}

/// Reads at most one byte more than the limit, so /dev/zero or a huge file stops early.
fn from_file(id: &str, path: &Path) -> Result<Vec<u8>, SecretError> {
    let failed = |source| SecretError::Read {
        id: id.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(failed)?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(failed)?;
    if bytes.len() > MAX_SECRET_BYTES {
        bytes.fill(0);
        return Err(SecretError::TooLarge { id: id.to_string() });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SecretSource, String> {
        text.parse::<SecretSource>().map_err(|e| e.to_string())
    }

    fn source(id: &str, from: SecretFrom) -> SecretSource {
        SecretSource {
            id: id.into(),
            from,
        }
    }

    #[test]
    fn flags_follow_buildx() {
        assert_eq!(
            parse("id=npm,src=/home/me/.npmrc"),
            Ok(source("npm", SecretFrom::File("/home/me/.npmrc".into())))
        );
        assert_eq!(
            parse("id=npm,type=file,source=rc"),
            Ok(source("npm", SecretFrom::File("rc".into())))
        );
        assert_eq!(
            parse("id=tok,env=GITHUB_TOKEN"),
            Ok(source("tok", SecretFrom::Env("GITHUB_TOKEN".into())))
        );
        assert_eq!(
            parse("type=env,id=tok,src=GITHUB_TOKEN"),
            Ok(source("tok", SecretFrom::Env("GITHUB_TOKEN".into())))
        );
        assert_eq!(
            parse("id=TOKEN,type=env"),
            Ok(source("TOKEN", SecretFrom::Env("TOKEN".into())))
        );
        assert_eq!(parse("id=x"), Ok(source("x", SecretFrom::EnvOrFile)));
        assert_eq!(
            parse(r#"id=a,"src=/with,comma""#),
            Ok(source("a", SecretFrom::File("/with,comma".into())))
        );
        for (bad, why) in [
            ("src=/f", "no id"),
            ("id=a,type=ssh", "unknown type"),
            ("id=a,colour=red", "unknown key"),
            ("id=a,src=f,env=V", "both"),
            ("id=a,novalue", "not KEY=VALUE"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    const VALUE: &[u8] = b"hunter2-s3cr3t-value";

    #[test]
    fn values_come_from_files_and_the_environment() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("token");
        std::fs::write(&file, VALUE).unwrap();
        // PATH is set in every test environment; a bare id that is no variable's name
        // is a file's.
        let path_var = std::env::var("PATH").unwrap().into_bytes();
        let file_id = file.to_str().unwrap();
        let secrets = Secrets::read(&[
            source("file", SecretFrom::File(file.clone())),
            source("env", SecretFrom::Env("PATH".into())),
            source("PATH", SecretFrom::EnvOrFile),
            source(file_id, SecretFrom::EnvOrFile),
        ])
        .unwrap();
        let written = |id: &str| {
            let out = tmp.path().join(format!("out-{id}"));
            assert!(secrets.write_file(id, &out, 0o400, ids()).unwrap());
            std::fs::read(out).unwrap()
        };
        assert_eq!(written("file"), VALUE);
        assert_eq!(written("env"), path_var);
        assert_eq!(written("PATH"), path_var);
        assert_eq!(secrets.len(file_id), Some(VALUE.len()));
        assert!(
            !secrets
                .write_file("none", &tmp.path().join("n"), 0o400, ids())
                .unwrap()
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tmp.path().join("out-file"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o400);
    }

    fn ids() -> (u32, u32) {
        (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    }

    /// Every error and Debug output a secret can reach, checked for its bytes.
    #[test]
    fn no_error_or_debug_output_shows_a_value() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("token");
        std::fs::write(&file, VALUE).unwrap();
        let big = tmp.path().join("big");
        let mut huge = VALUE.repeat(MAX_SECRET_BYTES / VALUE.len() + 2);
        std::fs::write(&big, &huge).unwrap();
        let secrets = Secrets::read(&[source("t", SecretFrom::File(file.clone()))]).unwrap();
        let mut texts = vec![format!("{secrets:?}")];
        let errors = [
            Secrets::read(&[source("big", SecretFrom::File(big))]).unwrap_err(),
            Secrets::read(&[
                source("t", SecretFrom::File(file.clone())),
                source("t", SecretFrom::File(file.clone())),
            ])
            .unwrap_err(),
            Secrets::read(&[source("gone", SecretFrom::File(tmp.path().join("no")))]).unwrap_err(),
            Secrets::read(&[source("v", SecretFrom::Env("XBAKE_UNSET_TEST_VAR".into()))])
                .unwrap_err(),
            // Writing over an existing file fails: the error names the id only.
            secrets.write_file("t", &file, 0o400, ids()).unwrap_err(),
        ];
        for e in &errors {
            texts.push(e.to_string());
            texts.push(format!("{e:?}"));
        }
        let needle = String::from_utf8_lossy(VALUE).into_owned();
        for text in &texts {
            assert!(!text.contains(&needle), "a secret's value leaked: {text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
        assert!(texts[0].contains("<20 bytes>"), "{}", texts[0]);
        assert!(texts[1].contains("\"big\"") && texts[1].contains("500 KiB"));
        huge.fill(0);
    }
}
