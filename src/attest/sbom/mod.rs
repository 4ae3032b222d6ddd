//! A software bill of materials of an image: the packages its final root filesystem
//! holds, found the way syft and trivy find them (the dpkg and apk databases, the build
//! info Go links into every binary), written as an SPDX 2.3 JSON document.
//!
//! - [`view`]: the layers read bottom to top, whiteouts applied, keeping only the few
//!   files a package scan needs (the rest is hashed and skipped, never unpacked).
//! - [`dpkg`], [`apk`], [`os_release`], [`gobuildinfo`]: one parser per file format.
//! - [`purl`]: package URLs (purl-spec), [`spdx`]: the document.
//!
//! Pure apart from reading blobs: the same layers give the same packages, in the same
//! order, and the same document bytes.

mod apk;
mod dpkg;
mod gobuildinfo;
mod os_release;
mod purl;
mod spdx;
mod view;

#[cfg(test)]
mod tests;

use crate::digest::Digest;
use crate::image::{BlobStore, ImageError};
use crate::layer::LayerError;
use oci_spec::image::Descriptor;
use os_release::OsRelease;
use serde::Serialize;
use view::{FinalView, Limits, Node};

pub use spdx::spdx_document;

/// Where dpkg keeps what is installed (Debian, Ubuntu).
const DPKG_STATUS: &str = "/var/lib/dpkg/status";
/// One file per package, no `Status:` field: distroless images, which have no dpkg.
const DPKG_STATUS_DIR: &str = "/var/lib/dpkg/status.d";
/// apk's installed database (Alpine, Wolfi).
const APK_INSTALLED: &str = "/lib/apk/db/installed";
/// os-release(5): the first one found wins.
const OS_RELEASE: [&str; 2] = ["/etc/os-release", "/usr/lib/os-release"];

/// What kind of package, in the order the document lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PackageKind {
    /// From the dpkg status database or a distroless `status.d` file.
    Deb,
    /// From apk's installed database.
    Apk,
    /// A Go module linked into a binary (its main module or a dependency).
    GoModule,
    /// The Go standard library a binary was built with (syft's `stdlib` package).
    GoStdlib,
}

/// One package found in the image. The field order is the sort order (kind, name,
/// version, arch, where found), so `Ord` is the document's order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Package {
    pub kind: PackageKind,
    pub name: String,
    /// As the package manager writes it (a Debian epoch, `(devel)` for an unversioned
    /// Go main module, `go1.19.8` for the standard library).
    pub version: String,
    pub arch: Option<String>,
    /// The absolute path inside the image it was found at: the database, or the binary.
    pub found_at: String,
    /// The source package (deb `Source:`) or origin (apk `o:`), when it has one.
    pub source: Option<String>,
    /// The source package's version, when it differs from `version` (deb only).
    pub source_version: Option<String>,
    /// The maintainer as written (`Name <email>`).
    pub supplier: Option<String>,
    /// The package URL (purl-spec), percent-encoded.
    pub purl: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    #[error("layer {index}: its descriptor")]
    Descriptor {
        index: usize,
        #[source]
        source: ImageError,
    },
    #[error("layer {index} ({digest}): opening the blob")]
    Blob {
        index: usize,
        digest: Digest,
        #[source]
        source: ImageError,
    },
    #[error("layer {index} ({digest})")]
    Layer {
        index: usize,
        digest: Digest,
        #[source]
        source: LayerError,
    },
    /// A package database is read whole; one this large is not a real one.
    #[error(
        "layer {index} ({digest}): {path} has {size} bytes; more than {limit} is not read \
         as a package database or os-release"
    )]
    FileTooLarge {
        index: usize,
        digest: Digest,
        path: String,
        size: u64,
        limit: u64,
    },
}

/// The packages in the image whose layers (bottom first) are `layers`, blobs of
/// `store`, sorted. Each layer's digest is checked once it was read; what the layers
/// unpack to must fit in `unpack_limit` (counted as unpacking counts it). A malformed
/// stanza of a package database is skipped, not an error; a Go binary in the old
/// (before Go 1.18) build-info format is skipped.
pub fn packages_in_image(
    store: &BlobStore,
    layers: &[Descriptor],
    unpack_limit: u64,
) -> Result<Vec<Package>, SbomError> {
    let view = view::final_view(
        store,
        layers,
        unpack_limit,
        &Limits::DEFAULT,
        &is_package_file,
    )?;
    Ok(packages_in_view(&view))
}

/// The files the scan keeps the content (or symlink target) of.
fn is_package_file(path: &str) -> bool {
    path == DPKG_STATUS
        || path == APK_INSTALLED
        || OS_RELEASE.contains(&path)
        || status_d_name(path).is_some()
}

/// The package's file name if `path` is a file directly in `status.d`. Distroless
/// puts `NAME.md5sums` beside each `NAME`; those list files, not packages.
fn status_d_name(path: &str) -> Option<&str> {
    let name = path
        .strip_prefix(DPKG_STATUS_DIR)?
        .strip_prefix('/')
        .filter(|n| !n.is_empty() && !n.contains('/'))?;
    (!name.ends_with(".md5sums") && !name.starts_with('.')).then_some(name)
}

fn packages_in_view(view: &FinalView) -> Vec<Package> {
    let os = OS_RELEASE
        .iter()
        .find_map(|path| view.text(path))
        .map(os_release::parse)
        .unwrap_or_default();
    let mut out = Vec::new();
    if let Some(text) = view.text(DPKG_STATUS) {
        out.extend(debs(text, DPKG_STATUS, dpkg::StatusRule::Required, &os));
    }
    if let Some(text) = view.text(APK_INSTALLED) {
        out.extend(apks(text, &os));
    }
    for (path, node) in view.nodes() {
        match node {
            Node::Text(text) if status_d_name(path).is_some() => {
                out.extend(debs(text, path, dpkg::StatusRule::IfPresent, &os));
            }
            Node::GoBinary(info) => go_packages(&mut out, info, path),
            _ => {}
        }
    }
    out.sort();
    out
}

fn debs(text: &[u8], path: &str, rule: dpkg::StatusRule, os: &OsRelease) -> Vec<Package> {
    let namespace = os.namespace("debian");
    dpkg::parse_status(text, rule)
        .into_iter()
        .map(|p| {
            let upstream = upstream(&p.source, p.source_version.as_deref(), &p.name);
            Package {
                purl: purl::os_package(
                    "deb", &namespace, &p.name, &p.version, &p.arch, os, upstream,
                ),
                kind: PackageKind::Deb,
                name: p.name,
                version: p.version,
                arch: p.arch,
                found_at: path.to_string(),
                source: p.source,
                source_version: p.source_version,
                supplier: p.maintainer,
            }
        })
        .collect()
}

fn apks(text: &[u8], os: &OsRelease) -> Vec<Package> {
    let namespace = os.namespace("alpine");
    apk::parse_installed(text)
        .into_iter()
        .map(|p| {
            let upstream = upstream(&p.origin, None, &p.name);
            Package {
                purl: purl::os_package(
                    "apk", &namespace, &p.name, &p.version, &p.arch, os, upstream,
                ),
                kind: PackageKind::Apk,
                name: p.name,
                version: p.version,
                arch: p.arch,
                found_at: APK_INSTALLED.to_string(),
                source: p.origin,
                source_version: None,
                supplier: p.maintainer,
            }
        })
        .collect()
}

/// The purl `upstream` qualifier syft writes: the source package (with its version when
/// that differs), only when it is not the binary package itself.
fn upstream(source: &Option<String>, version: Option<&str>, name: &str) -> Option<String> {
    let source = source.as_deref().filter(|s| !s.is_empty())?;
    match version {
        Some(v) => Some(format!("{source}@{v}")),
        None if source != name => Some(source.to_string()),
        None => None,
    }
}

fn go_packages(out: &mut Vec<Package>, info: &gobuildinfo::BuildInfo, path: &str) {
    let package = |kind, name: &str, version: &str, purl| Package {
        kind,
        name: name.to_string(),
        version: version.to_string(),
        arch: None,
        found_at: path.to_string(),
        source: None,
        source_version: None,
        supplier: None,
        purl,
    };
    for m in info.main.iter().chain(&info.deps) {
        let purl = purl::golang(&m.path, &m.version);
        out.push(package(PackageKind::GoModule, &m.path, &m.version, purl));
    }
    // As syft does: the package is `stdlib` at the toolchain's version (`go1.19.8`),
    // its purl without the `go` (pkg:golang/stdlib@1.19.8), which is how vulnerability
    // databases name the standard library's releases.
    let version = info.toolchain();
    let purl = purl::golang("stdlib", version.strip_prefix("go").unwrap_or(version));
    out.push(package(PackageKind::GoStdlib, "stdlib", version, purl));
}
