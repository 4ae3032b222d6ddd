//! What `from:` names, once expanded: the kind of base and where it is. Lexical only;
//! `source/` opens it.

use crate::image::reference::LayoutRef;
use std::path::{Path, PathBuf};

use super::error::Problem;
use super::fields::relative_inside;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BaseRef {
    /// No base: the image starts empty.
    Scratch,
    /// Another stage of the recipe: the engine builds it first and starts from its
    /// result (never parsed from text by [`BaseRef::parse`]: a stage name is matched
    /// before, so a stage called like an image wins, as in a Dockerfile).
    Stage(String),
    /// A root filesystem tarball (`.tar`, `.tar.gz`/`.tgz`, `.tar.xz`, `.tar.zst`).
    Rootfs(PathBuf),
    /// An OCI image layout directory, optionally one tag in it.
    OciLayout { dir: PathBuf, tag: Option<String> },
    /// A tar of an OCI layout (`oci-archive:FILE[:tag]`, as skopeo writes it).
    OciArchive { file: PathBuf, tag: Option<String> },
    /// A `docker save` archive (`docker-archive:FILE`).
    DockerArchive(PathBuf),
    /// A registry reference, kept as written (`debian:bookworm`, `host:5000/x/y:tag`,
    /// `x@sha256:…`); the registry client parses it.
    Registry(String),
}

const ROOTFS_EXTENSIONS: &[&str] = &[".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.zst"];

/// Schemes reserved for bases xbake does not read, refused here so they are not taken
/// for a registry image.
const UNSUPPORTED_SCHEMES: &[&str] = &["dir:", "containers-storage:", "docker-daemon:"];

impl BaseRef {
    /// Parses an expanded `from:` text; relative paths are joined to `recipe_dir`.
    pub fn parse(text: &str, recipe_dir: &Path) -> Result<BaseRef, Problem> {
        if text.trim().is_empty() {
            return Err(Problem::EmptyFrom);
        }
        if text == "scratch" {
            return Ok(BaseRef::Scratch);
        }
        if let Some(path) = text.strip_prefix("rootfs:") {
            return parse_rootfs(path, recipe_dir).map(BaseRef::Rootfs);
        }
        if let Some(rest) = text.strip_prefix("oci:") {
            return parse_oci_layout(text, rest, recipe_dir);
        }
        if let Some(rest) = text.strip_prefix("oci-archive:") {
            let parsed = LayoutRef::parse_rest(rest).map_err(|_| Problem::BadOciLayout {
                text: text.to_string(),
            })?;
            return Ok(BaseRef::OciArchive {
                file: local_path(&parsed.dir, recipe_dir, "oci-archive base")?,
                tag: parsed.tag,
            });
        }
        if let Some(rest) = text.strip_prefix("docker-archive:") {
            if rest.is_empty() {
                return Err(Problem::BadOciLayout {
                    text: text.to_string(),
                });
            }
            return Ok(BaseRef::DockerArchive(local_path(
                Path::new(rest),
                recipe_dir,
                "docker-archive base",
            )?));
        }
        // skopeo's transport name for registries.
        let text = text.strip_prefix("docker://").unwrap_or(text);
        if UNSUPPORTED_SCHEMES.iter().any(|s| text.starts_with(s)) {
            return Err(Problem::UnsupportedBase {
                text: text.to_string(),
            });
        }
        if text.chars().any(char::is_whitespace) {
            return Err(Problem::BadImageRef {
                text: text.to_string(),
            });
        }
        Ok(BaseRef::Registry(text.to_string()))
    }
}

fn parse_rootfs(path: &str, recipe_dir: &Path) -> Result<PathBuf, Problem> {
    if !ROOTFS_EXTENSIONS.iter().any(|ext| path.ends_with(ext)) {
        return Err(Problem::BadRootfsExtension {
            path: path.to_string(),
        });
    }
    let path_ref = Path::new(path);
    if path_ref.is_absolute() {
        return Ok(path_ref.to_path_buf());
    }
    // A recipe folder is meant to be self-contained (copied, checked in, audited), so a
    // relative base may not reach outside it; an absolute path is an explicit choice.
    let inside = relative_inside(path_ref).ok_or_else(|| Problem::EscapesRecipeDir {
        what: "rootfs base",
        path: path.to_string(),
    })?;
    Ok(recipe_dir.join(inside))
}

/// An absolute path as is; a relative one joined to the recipe folder, never leaving it.
fn local_path(path: &Path, recipe_dir: &Path, what: &'static str) -> Result<PathBuf, Problem> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let inside = relative_inside(path).ok_or_else(|| Problem::EscapesRecipeDir {
        what,
        path: path.display().to_string(),
    })?;
    Ok(recipe_dir.join(inside))
}

/// `oci:DIR` or `oci:DIR:tag`, with DIR relative to the recipe's folder.
fn parse_oci_layout(text: &str, rest: &str, recipe_dir: &Path) -> Result<BaseRef, Problem> {
    let parsed = LayoutRef::parse_rest(rest).map_err(|_| Problem::BadOciLayout {
        text: text.to_string(),
    })?;
    if parsed.dir.is_absolute() {
        return Ok(BaseRef::OciLayout {
            dir: parsed.dir,
            tag: parsed.tag,
        });
    }
    // As for rootfs: a relative base stays inside the recipe folder.
    let inside = relative_inside(&parsed.dir).ok_or_else(|| Problem::EscapesRecipeDir {
        what: "oci base",
        path: parsed.dir.display().to_string(),
    })?;
    Ok(BaseRef::OciLayout {
        dir: recipe_dir.join(inside),
        tag: parsed.tag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BaseRef, Problem> {
        BaseRef::parse(text, Path::new("/recipes/hello"))
    }

    #[test]
    fn every_form() {
        assert_eq!(parse("scratch").unwrap(), BaseRef::Scratch);
        assert_eq!(
            parse("rootfs:bases/busybox-arm64.tar.gz").unwrap(),
            BaseRef::Rootfs(PathBuf::from("/recipes/hello/bases/busybox-arm64.tar.gz"))
        );
        assert_eq!(
            parse("rootfs:./bases/../b.tar").unwrap(),
            BaseRef::Rootfs(PathBuf::from("/recipes/hello/b.tar"))
        );
        assert_eq!(
            parse("rootfs:/srv/b.tar.zst").unwrap(),
            BaseRef::Rootfs(PathBuf::from("/srv/b.tar.zst"))
        );
        for ext in ["tar", "tar.gz", "tgz", "tar.xz", "tar.zst"] {
            assert!(parse(&format!("rootfs:b.{ext}")).is_ok(), "{ext}");
        }
        assert_eq!(
            parse("oci:some/dir:v1").unwrap(),
            BaseRef::OciLayout {
                dir: PathBuf::from("/recipes/hello/some/dir"),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            parse("oci:/abs/dir").unwrap(),
            BaseRef::OciLayout {
                dir: PathBuf::from("/abs/dir"),
                tag: None
            }
        );
        assert_eq!(
            parse("oci:out").unwrap(),
            BaseRef::OciLayout {
                dir: PathBuf::from("/recipes/hello/out"),
                tag: None
            }
        );
        assert_eq!(
            parse("oci:/a:b/c").unwrap(),
            BaseRef::OciLayout {
                dir: PathBuf::from("/a:b/c"),
                tag: None
            }
        );
        assert_eq!(
            parse("oci-archive:saved.tar:v2").unwrap(),
            BaseRef::OciArchive {
                file: PathBuf::from("/recipes/hello/saved.tar"),
                tag: Some("v2".into())
            }
        );
        assert_eq!(
            parse("docker-archive:/tmp/saved.tar").unwrap(),
            BaseRef::DockerArchive(PathBuf::from("/tmp/saved.tar"))
        );
        assert_eq!(
            parse("docker://debian:bookworm").unwrap(),
            BaseRef::Registry("debian:bookworm".into())
        );
        assert!(matches!(
            parse("docker-archive:../x.tar"),
            Err(Problem::EscapesRecipeDir { .. })
        ));
        for reference in [
            "debian:bookworm",
            "host:5000/x/y:tag",
            "busybox",
            "x@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert_eq!(
                parse(reference).unwrap(),
                BaseRef::Registry(reference.into())
            );
        }
    }

    #[test]
    fn rejections() {
        assert!(matches!(
            parse("rootfs:base.zip"),
            Err(Problem::BadRootfsExtension { path }) if path == "base.zip"
        ));
        assert!(matches!(
            parse("rootfs:b.tar.bz2"),
            Err(Problem::BadRootfsExtension { .. })
        ));
        assert!(matches!(
            parse("rootfs:../outside.tar"),
            Err(Problem::EscapesRecipeDir { .. })
        ));
        assert!(matches!(parse(""), Err(Problem::EmptyFrom)));
        assert!(matches!(parse("oci:"), Err(Problem::BadOciLayout { .. })));
        assert!(matches!(
            parse("oci:dir:"),
            Err(Problem::BadOciLayout { .. })
        ));
        assert!(matches!(
            parse("oci::v1"),
            Err(Problem::BadOciLayout { .. })
        ));
        assert!(matches!(
            parse("dir:x"),
            Err(Problem::UnsupportedBase { .. })
        ));
        assert!(matches!(
            parse("debian bookworm"),
            Err(Problem::BadImageRef { .. })
        ));
    }
}
