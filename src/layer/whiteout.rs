//! OCI whiteout names (image-spec layer.md, "Whiteouts"): `.wh.NAME` hides NAME of the
//! lower layers, `.wh..wh..opq` hides everything the lower layers put in its directory.
//! Shared by the unpacker (which obeys them) and the packer (which writes them).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Prefix of a whiteout file name.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Names starting with this are aufs bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`), not
/// whiteouts; the spec reserves them, Docker and containerd skip them.
const AUFS_META_PREFIX: &str = ".wh..wh.";

/// What a layer entry's final name means.
#[derive(Debug, PartialEq, Eq)]
pub enum EntryName<'a> {
    /// A plain name: create the entry.
    Plain,
    /// `.wh..wh..opq`: empty the directory of lower-layer content.
    Opaque,
    /// `.wh.NAME`: delete NAME from the lower layers.
    Delete(&'a OsStr),
    /// Reserved `.wh..wh.*` names other than the opaque marker: ignore.
    AufsMeta,
    /// `.wh.`, `.wh..` or `.wh...`: names nothing that can be deleted.
    Invalid,
}

pub fn classify(name: &OsStr) -> EntryName<'_> {
    let bytes = name.as_bytes();
    if bytes == OPAQUE_MARKER.as_bytes() {
        return EntryName::Opaque;
    }
    if bytes.starts_with(AUFS_META_PREFIX.as_bytes()) {
        return EntryName::AufsMeta;
    }
    match bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        None => EntryName::Plain,
        Some(b"" | b"." | b"..") => EntryName::Invalid,
        Some(hidden) => EntryName::Delete(OsStr::from_bytes(hidden)),
    }
}

/// True if `name` would be read back as a whiteout (or reserved name) of some kind.
pub fn is_reserved(name: &OsStr) -> bool {
    name.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes())
}

/// `.wh.NAME` for `name`.
pub fn whiteout_name(name: &OsStr) -> std::ffi::OsString {
    let mut whiteout = std::ffi::OsString::from(WHITEOUT_PREFIX);
    whiteout.push(name);
    whiteout
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_whiteouts_opaque_markers_and_reserved_names() {
        fn c(s: &str) -> EntryName<'_> {
            classify(OsStr::new(s))
        }
        assert_eq!(c("passwd"), EntryName::Plain);
        assert_eq!(c(".whatever"), EntryName::Plain);
        assert_eq!(c(".wh.passwd"), EntryName::Delete(OsStr::new("passwd")));
        assert_eq!(c(".wh..hidden"), EntryName::Delete(OsStr::new(".hidden")));
        assert_eq!(c(".wh..wh..opq"), EntryName::Opaque);
        assert_eq!(c(".wh..wh.plnk"), EntryName::AufsMeta);
        assert_eq!(c(".wh."), EntryName::Invalid);
        assert_eq!(c(".wh.."), EntryName::Invalid);
        assert!(is_reserved(OsStr::new(".wh.x")));
        assert!(!is_reserved(OsStr::new(".w")));
        assert_eq!(whiteout_name(OsStr::new("x")), ".wh.x");
    }
}
