//! `oci:DIR[:TAG]`, the one way to name an image in a local OCI layout, shared by the
//! recipe's `from:`, `--output`, `xbake run`, `diff` and `verify`.

use std::fmt;
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutRef {
    pub dir: PathBuf,
    pub tag: Option<String>,
}

impl LayoutRef {
    /// Parses what follows `oci:`. A colon starts the tag only if what follows it has no
    /// `/`, so `some/dir:v1` is (some/dir, v1) and `/a:b/c` is the folder `/a:b/c`.
    pub fn parse_rest(rest: &str) -> Result<LayoutRef, String> {
        let (dir, tag) = match rest.rsplit_once(':') {
            Some((dir, tag)) if !tag.contains('/') => (dir, Some(tag)),
            _ => (rest, None),
        };
        if dir.is_empty() {
            return Err(format!("oci:{rest} names no folder"));
        }
        if let Some(tag) = tag.filter(|t| t.is_empty() || t.chars().any(char::is_whitespace)) {
            return Err(format!("oci:{rest} has an invalid tag {tag:?}"));
        }
        Ok(LayoutRef {
            dir: PathBuf::from(dir),
            tag: tag.map(str::to_string),
        })
    }

    /// Parses `oci:DIR[:TAG]`; None when `text` is not an `oci:` reference at all.
    pub fn parse(text: &str) -> Option<Result<LayoutRef, String>> {
        text.strip_prefix("oci:").map(LayoutRef::parse_rest)
    }
}

impl fmt::Display for LayoutRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oci:{}", self.dir.display())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        Ok(())
    }
}

/// Any image a command can read: a layout, an OCI archive, or a registry reference
/// (bare, or with skopeo's `docker://`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageRef {
    Layout(LayoutRef),
    /// `oci-archive:FILE[:TAG]` (the file in `dir`).
    OciArchive(LayoutRef),
    /// `docker-archive:FILE`: a `docker save` archive (its first image).
    DockerArchive(std::path::PathBuf),
    Registry(String),
}

impl ImageRef {
    pub fn parse(text: &str) -> Result<ImageRef, String> {
        if let Some(r) = LayoutRef::parse(text) {
            return r.map(ImageRef::Layout);
        }
        if let Some(rest) = text.strip_prefix("oci-archive:") {
            return LayoutRef::parse_rest(rest)
                .map(ImageRef::OciArchive)
                .map_err(|e| e.replacen("oci:", "oci-archive:", 1));
        }
        if let Some(file) = text.strip_prefix("docker-archive:") {
            if file.is_empty() {
                return Err(format!("{text:?}: docker-archive: needs a file"));
            }
            return Ok(ImageRef::DockerArchive(file.into()));
        }
        let name = text.strip_prefix("docker://").unwrap_or(text);
        if name.is_empty() || name.chars().any(char::is_whitespace) || name.contains("://") {
            return Err(format!(
                "{text:?} is not an image reference (oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE or a registry name)"
            ));
        }
        Ok(ImageRef::Registry(name.to_string()))
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Layout(l) => write!(f, "{l}"),
            ImageRef::OciArchive(l) => write!(
                f,
                "oci-archive:{}",
                l.to_string().trim_start_matches("oci:")
            ),
            ImageRef::DockerArchive(file) => write!(f, "docker-archive:{}", file.display()),
            ImageRef::Registry(r) => write!(f, "{r}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(text: &str) -> Result<LayoutRef, String> {
        LayoutRef::parse(text).expect("an oci: reference")
    }

    #[test]
    fn forms() {
        assert_eq!(
            r("oci:some/dir:v1").unwrap(),
            LayoutRef {
                dir: "some/dir".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            r("oci:/abs/dir").unwrap(),
            LayoutRef {
                dir: "/abs/dir".into(),
                tag: None
            }
        );
        assert_eq!(r("oci:/a:b/c").unwrap().dir, PathBuf::from("/a:b/c"));
        assert_eq!(r("oci:out:1.0").unwrap().to_string(), "oci:out:1.0");
        assert!(r("oci:").is_err());
        assert!(r("oci::v1").is_err());
        assert!(r("oci:dir:").is_err());
        assert!(r("oci:dir:a b").is_err());
        assert!(LayoutRef::parse("docker://x").is_none());
    }

    #[test]
    fn image_refs() {
        assert_eq!(ImageRef::parse("oci:a:1").unwrap().to_string(), "oci:a:1");
        assert_eq!(
            ImageRef::parse("docker-archive:saved.tar").unwrap(),
            ImageRef::DockerArchive("saved.tar".into())
        );
        assert_eq!(
            ImageRef::parse("docker-archive:d/saved.tar")
                .unwrap()
                .to_string(),
            "docker-archive:d/saved.tar"
        );
        assert!(ImageRef::parse("docker-archive:").is_err());
        assert_eq!(
            ImageRef::parse("oci-archive:x.tar:2").unwrap().to_string(),
            "oci-archive:x.tar:2"
        );
        assert_eq!(
            ImageRef::parse("docker://debian:12").unwrap(),
            ImageRef::Registry("debian:12".into())
        );
        assert_eq!(
            ImageRef::parse("127.0.0.1:5000/a:b").unwrap(),
            ImageRef::Registry("127.0.0.1:5000/a:b".into())
        );
        assert!(ImageRef::parse("http://x").is_err());
        assert!(ImageRef::parse("").is_err());
    }
}
