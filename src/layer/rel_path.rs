//! Turning hostile path strings (tar entry names, link targets, recipe paths) into clean
//! relative paths inside a root, before anything touches the filesystem.
//!
//! The rule, after umoci's `CleanPath` + `securejoin` (oci/layer/tar_extract.go): a leading
//! `/` or `./` only says "inside the root" and is dropped; `.` components vanish; a `..`
//! component is refused outright rather than clamped, because a layer that needs one is
//! either broken or an attack, and silently landing the entry elsewhere hides both.

use super::error::LayerError;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Returns `path` as a relative path made of plain names only. The empty path means the
/// root itself.
pub fn clean(path: &Path) -> Result<PathBuf, LayerError> {
    if path.as_os_str().as_bytes().contains(&0) {
        return Err(unsafe_path(path, "contains a NUL byte"));
    }
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => clean.push(name),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return Err(unsafe_path(path, "has a \"..\" component")),
            Component::Prefix(_) => return Err(unsafe_path(path, "has a Windows prefix")),
        }
    }
    Ok(clean)
}

/// Like [`clean`], for raw bytes from a tar header.
pub fn clean_bytes(bytes: &[u8]) -> Result<PathBuf, LayerError> {
    clean(Path::new(OsStr::from_bytes(bytes)))
}

/// Splits a cleaned, non-empty relative path into its parent (possibly empty: the root)
/// and its final name. `None` for the root itself.
pub fn split(rel: &Path) -> Option<(&Path, &OsStr)> {
    let name = rel.file_name()?;
    Some((rel.parent().unwrap_or(Path::new("")), name))
}

fn unsafe_path(path: &Path, reason: &'static str) -> LayerError {
    LayerError::UnsafePath {
        path: path.to_path_buf(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_slash_and_dot_mean_inside_the_root() {
        for (input, expected) in [
            ("/etc/passwd", "etc/passwd"),
            ("./etc/passwd", "etc/passwd"),
            ("etc//./passwd/", "etc/passwd"),
            ("./", ""),
            ("/", ""),
            ("", ""),
        ] {
            assert_eq!(
                clean(Path::new(input)).unwrap(),
                Path::new(expected),
                "{input}"
            );
        }
    }

    #[test]
    fn parent_components_are_refused_with_the_path_named() {
        for bad in ["../escape", "a/../../b", "a/..", "/.."] {
            let err = clean(Path::new(bad)).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
        assert!(clean_bytes(b"a\0b").is_err());
    }

    #[test]
    fn split_separates_parent_and_name() {
        assert_eq!(
            split(Path::new("a/b/c")),
            Some((Path::new("a/b"), OsStr::new("c")))
        );
        assert_eq!(
            split(Path::new("c")),
            Some((Path::new(""), OsStr::new("c")))
        );
        assert_eq!(split(Path::new("")), None);
    }
}
