//! Layers: applying OCI layer tars onto a rootfs (whiteouts, hostile paths confined to the
//! root), finding what a build step changed, and writing those changes as a deterministic
//! layer (DESIGN decisions 1, 4 and 5).
//!
//! - [`root`]: `RootDir`, every filesystem operation confined to one directory.
//! - [`unpack`]: apply one layer (tar or compressed blob, digests verified) onto a `RootDir`.
//! - [`compress`]: detect gzip/zstd/xz; deterministic gzip (block-parallel, `pgzip`),
//!   zstd or plain tar for the layers xbake writes (`--compression`).
//! - [`snapshot`]: the `Snapshotter` seam and the portable walk-based implementation.
//! - [`overlay_snapshot`]: the one that reads an overlay mount's upper folder.
//! - [`tar_reader`]: the one tar reader (bounded extension headers, PAX by length, sparse
//!   maps, refusals where readers disagree).
//! - [`pack`]: a `ChangeSet` → tar → compressed, hashed in one pass.

pub mod compress;
pub mod error;
mod metadata;
pub mod overlay_snapshot;
pub mod pack;
mod pgzip;
pub(crate) mod rel_path;
pub mod root;
pub mod snapshot;
pub mod tar_reader;
mod tar_writer;
pub mod unpack;
pub mod whiteout;

#[cfg(test)]
pub(crate) mod tests;

pub use compress::{Compression, LayerCompression};
pub use error::{LayerError, Warnings};
pub use pack::{MEDIA_TYPE_GZIP_LAYER, PackOptions, PackedLayer, pack_changes, write_tar};
pub use root::{EntryMeta, RootDir, SpecialFile};
pub use snapshot::{Change, ChangeKind, ChangeSet, Snapshotter, WalkSnapshotter};
pub use unpack::{UnpackReport, apply_blob, apply_layer};
