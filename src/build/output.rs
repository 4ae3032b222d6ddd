//! Where a finished build goes: an OCI layout, an OCI archive, or (one platform) a
//! `docker save` archive. Each is written atomically.

use crate::digest::Digest;
use crate::image::archive::{write_docker_archive, write_oci_archive};
use crate::image::{BlobStore, ImageError, layout};
use oci_spec::image::Descriptor;
use std::fmt;
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// An OCI image layout folder, under a tag.
    OciLayout { dir: PathBuf, tag: String },
    /// A tar of an OCI layout, under a tag (skopeo's `oci-archive:`).
    OciArchive { file: PathBuf, tag: String },
    /// A `docker save` archive of one platform, with `RepoTags: [repo_tag]`.
    DockerArchive { file: PathBuf, repo_tag: String },
}

impl Output {
    /// The folder or file written.
    pub fn path(&self) -> &std::path::Path {
        match self {
            Output::OciLayout { dir, .. } => dir,
            Output::OciArchive { file, .. } | Output::DockerArchive { file, .. } => file,
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::OciLayout { dir, tag } => write!(f, "oci:{}:{tag}", dir.display()),
            Output::OciArchive { file, tag } => write!(f, "oci-archive:{}:{tag}", file.display()),
            Output::DockerArchive { file, repo_tag } => {
                write!(f, "docker-archive:{}:{repo_tag}", file.display())
            }
        }
    }
}

/// The finished image: its top descriptor (the index), every blob, and the platform
/// manifests (for formats that hold one platform).
pub struct Finished<'a> {
    pub store: &'a BlobStore,
    pub top: &'a Descriptor,
    pub blobs: &'a [Digest],
    pub manifests: &'a [Digest],
    /// Entries beside the tag in a layout's index.json: OCI 1.1 referrers (untagged)
    /// and signatures (under cosign's `sha256-HEX.sig`); a docker-archive has no room.
    pub extra: &'a [Descriptor],
}

/// Bytes of the blobs writing `image` adds to `output`: for a layout, those it does not
/// hold yet; an archive is written whole. For progress only: read before the write,
/// without the layout's lock.
pub fn new_blob_bytes(output: &Output, image: &Finished) -> u64 {
    let size = |d: &Digest| std::fs::symlink_metadata(image.store.path(d)).map_or(0, |m| m.len());
    image
        .blobs
        .iter()
        .filter(|d| match output {
            Output::OciLayout { dir, .. } => !dir.join(d.blob_path()).exists(),
            Output::OciArchive { .. } | Output::DockerArchive { .. } => true,
        })
        .map(size)
        .sum()
}

pub fn write(output: &Output, image: &Finished) -> Result<(), ImageError> {
    match output {
        Output::OciLayout { dir, tag } => {
            layout::write_entries(dir, image.store, image.blobs, tag, image.top, image.extra)
        }
        Output::OciArchive { file, tag } => {
            write_oci_archive(file, image.store, image.blobs, tag, image.top, image.extra)
        }
        Output::DockerArchive { file, repo_tag } => match image.manifests {
            [one] => write_docker_archive(file, image.store, one, std::slice::from_ref(repo_tag)),
            many => Err(ImageError::Invalid {
                what: output.to_string(),
                message: format!(
                    "a docker-archive holds one platform, this build made {}; pick one with --arch",
                    many.len()
                ),
            }),
        },
    }
}
