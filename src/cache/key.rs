//! Step cache keys: everything that can change what a step produces, hashed as
//! canonical JSON. Anything left out here would let a stale layer be reused.

use crate::context::{BuildContext, ContextError};
use crate::digest::{Digest, HashingReader};
use serde::Serialize;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// Bumped whenever the meaning of a key or the layer format changes; the xbake version
/// is in the key too, so a new release never trusts an old release's layers.
/// 2: block-parallel gzip (other bytes for the same tar) and the compression in the key.
const KEY_VERSION: u32 = 2;

/// The OCI chain id of a layer stack (image-spec config.md, "Layer ChainID"):
/// chain(L0) = diff_id(L0); chain(Ln) = sha256(chain(Ln-1) + " " + diff_id(Ln)).
pub fn chain_id(diff_ids: &[Digest]) -> Option<Digest> {
    chain_ids(diff_ids).pop()
}

/// The chain id of every prefix of the stack, bottom first (what layer snapshots are
/// keyed by, cache/snapshots.rs).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut chains: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match chains.last() {
            None => d.clone(),
            Some(parent) => Digest::of(format!("{parent} {d}").as_bytes()),
        };
        chains.push(next);
    }
    chains
}

#[derive(Serialize)]
pub struct StepKey<'a> {
    pub platform: String,
    /// Chain id of the layers below the step (None: an empty rootfs).
    pub parent: Option<Digest>,
    /// What the step does, in full (docker-style description plus its options).
    pub step: String,
    /// The environment the step runs with, as the sandbox passes it.
    pub env: &'a [(String, String)],
    pub workdir: &'a str,
    pub user: Option<&'a str>,
    pub network: &'a str,
    /// SOURCE_DATE_EPOCH: it clamps the layer's mtimes.
    pub epoch: i64,
    /// Digest of a copy step's inputs ([`tree_digest`]).
    pub inputs: Option<Digest>,
    /// The normalisation rules applied after a run step (`rules v1 sha256:…`; see
    /// src/normalize/): a changed rule changes what the layer holds. Left out when no
    /// rules apply, so copy steps and `normalize: false` keep their keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normalize: Option<String>,
    /// How the step's layer is compressed, with the byte format's version
    /// (`LayerCompression::key`). A step record holds one blob, the compressed one, and
    /// its digest is what the manifest names; so a gzip build and a zstd build of the
    /// same step are two records. The alternative, caching by diff_id and compressing on
    /// output, would read and compress every layer again on every build, cached or not,
    /// which is the cost this cache exists to avoid. The step runs again under a new
    /// setting; its tar (diff_id) comes out the same.
    pub compression: String,
}

impl StepKey<'_> {
    pub fn digest(&self) -> Digest {
        #[derive(Serialize)]
        struct Versioned<'b, 'a> {
            version: u32,
            xbake: &'static str,
            key: &'b StepKey<'a>,
        }
        let value = Versioned {
            version: KEY_VERSION,
            xbake: env!("CARGO_PKG_VERSION"),
            key: self,
        };
        // serde_json writes struct fields in declaration order: stable. Plain strings and
        // numbers cannot fail to serialize; if they ever did, every key would be the
        // same, so this must not fall back to a default.
        #[allow(clippy::expect_used)]
        let bytes = serde_json::to_vec(&value).expect("a step key is plain data");
        Digest::of(&bytes)
    }
}

/// One input file of a copy step, for the key and for audit metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InputFile {
    /// Relative to the build context.
    pub path: String,
    /// Where it was read (not part of the key: the same content elsewhere is the same).
    #[serde(skip)]
    pub source: PathBuf,
    pub mode: u32,
    /// sha256 of the content; for a symlink, of its target.
    pub sha256: Digest,
    pub symlink: bool,
}

/// Every file under `sources` (canonical paths inside the context) that the context's
/// ignore file lets through, sorted, with the properties a copy takes from it: path,
/// permission bits, content (or link target). Owners and mtimes are not taken by a
/// copy, so they are not here either; ignored files are not copied, so changing one
/// leaves the key as it was.
pub fn input_files(
    context: &BuildContext,
    sources: &[PathBuf],
) -> Result<Vec<InputFile>, ContextError> {
    let mut out = Vec::new();
    for source in sources {
        for entry in context.entries(source)? {
            let path = &entry.path;
            let read = |source| ContextError::Read {
                path: path.clone(),
                source,
            };
            let rel = path
                .strip_prefix(context.dir())
                .unwrap_or(path)
                .to_string_lossy()
                .into_owned();
            let mode = entry.meta.permissions().mode() & 0o7777;
            let kind = entry.meta.file_type();
            if kind.is_symlink() {
                let target = std::fs::read_link(path).map_err(read)?;
                out.push(InputFile {
                    path: rel,
                    source: path.to_path_buf(),
                    mode: 0o777,
                    sha256: Digest::of(target.as_os_str().as_encoded_bytes()),
                    symlink: true,
                });
            } else if kind.is_file() {
                let file = std::fs::File::open(path).map_err(read)?;
                let (sha256, _) = HashingReader::new(file).drain_and_finish().map_err(read)?;
                out.push(InputFile {
                    path: rel,
                    source: path.to_path_buf(),
                    mode,
                    sha256,
                    symlink: false,
                });
            } else if kind.is_dir() {
                out.push(InputFile {
                    path: format!("{rel}/"),
                    source: path.to_path_buf(),
                    mode,
                    sha256: Digest::of(b""),
                    symlink: false,
                });
            }
        }
    }
    Ok(out)
}

/// One digest over [`input_files`].
pub fn tree_digest(files: &[InputFile]) -> Digest {
    #[allow(clippy::expect_used)]
    let bytes = serde_json::to_vec(files).expect("input records are plain data");
    Digest::of(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::LayerCompression;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        assert_eq!(chain_id(&[]), None);
        assert_eq!(chain_id(std::slice::from_ref(&a)), Some(a.clone()));
        assert_eq!(
            chain_id(&[a.clone(), b.clone()]),
            Some(Digest::of(format!("{a} {b}").as_bytes()))
        );
    }

    fn key(env: &[(String, String)], inputs: Option<Digest>) -> Digest {
        key_with_rules(env, inputs, None)
    }

    fn key_with_rules(
        env: &[(String, String)],
        inputs: Option<Digest>,
        normalize: Option<&str>,
    ) -> Digest {
        key_compressed(env, inputs, normalize, LayerCompression::default())
    }

    fn key_compressed(
        env: &[(String, String)],
        inputs: Option<Digest>,
        normalize: Option<&str>,
        compression: LayerCompression,
    ) -> Digest {
        StepKey {
            platform: "linux/arm64".into(),
            parent: Some(Digest::of(b"p")),
            step: "RUN true".into(),
            env,
            workdir: "/",
            user: None,
            network: "host",
            epoch: 0,
            inputs,
            normalize: normalize.map(String::from),
            compression: compression.key(),
        }
        .digest()
    }

    #[test]
    fn keys_change_with_what_the_step_sees() {
        let env = vec![("A".to_string(), "1".to_string())];
        let other = vec![("A".to_string(), "2".to_string())];
        assert_eq!(key(&env, None), key(&env, None));
        assert_ne!(key(&env, None), key(&other, None));
        assert_ne!(key(&env, None), key(&env, Some(Digest::of(b"x"))));
        let v1 = key_with_rules(&env, None, Some("rules v1 sha256:1"));
        assert_ne!(v1, key(&env, None));
        assert_ne!(v1, key_with_rules(&env, None, Some("rules v2 sha256:2")));
        // Another compression is another blob: never the cached one.
        let with = |c| key_compressed(&env, None, None, c);
        let gzip = with(LayerCompression::Gzip(6));
        assert_eq!(gzip, key(&env, None));
        assert_ne!(gzip, with(LayerCompression::Gzip(9)));
        assert_ne!(gzip, with(LayerCompression::Zstd(3)));
        assert_ne!(
            with(LayerCompression::Zstd(3)),
            with(LayerCompression::Zstd(4))
        );
        assert_ne!(gzip, with(LayerCompression::None));
    }

    #[test]
    fn input_digests_see_content_and_mode_but_not_mtime_or_owner() {
        let dir = tempfile::tempdir().unwrap();
        let files = dir.path().join("files");
        std::fs::create_dir_all(&files).unwrap();
        std::fs::write(files.join("a"), "A").unwrap();
        let src = [files.canonicalize().unwrap()];
        let digest = || tree_digest(&listing(dir.path(), &src));
        let d1 = digest();
        let f = std::fs::File::options()
            .append(true)
            .open(files.join("a"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(digest(), d1);
        std::fs::set_permissions(files.join("a"), std::fs::Permissions::from_mode(0o700)).unwrap();
        let d2 = digest();
        assert_ne!(d2, d1);
        std::fs::write(files.join("a"), "B").unwrap();
        assert_ne!(digest(), d2);
        let listed = listing(dir.path(), &src);
        assert_eq!(listed[0].path, "files/");
        assert_eq!(listed[1].path, "files/a");
    }

    fn listing(dir: &std::path::Path, sources: &[PathBuf]) -> Vec<InputFile> {
        input_files(&BuildContext::open(dir).unwrap(), sources).unwrap()
    }

    #[test]
    fn ignored_files_are_not_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        std::fs::create_dir_all(&app).unwrap();
        std::fs::write(app.join("main.c"), "int main;").unwrap();
        std::fs::write(app.join(".env"), "TOKEN=1").unwrap();
        std::fs::write(app.join("x.log"), "log").unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "app/.env\napp/*.log\n").unwrap();
        let src = [app.canonicalize().unwrap()];
        let paths =
            |files: &[InputFile]| -> Vec<String> { files.iter().map(|f| f.path.clone()).collect() };
        let before = listing(dir.path(), &src);
        assert_eq!(paths(&before), ["app/", "app/main.c"]);
        std::fs::write(app.join(".env"), "TOKEN=2").unwrap();
        std::fs::write(app.join("x.log"), "more log").unwrap();
        assert_eq!(
            tree_digest(&listing(dir.path(), &src)),
            tree_digest(&before)
        );
        std::fs::write(app.join("main.c"), "int main();").unwrap();
        assert_ne!(
            tree_digest(&listing(dir.path(), &src)),
            tree_digest(&before)
        );
    }
}
