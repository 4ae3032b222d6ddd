//! The one tar reader of xbake: unpacking a layer and checking a rootfs tarball both read
//! archives through it, so they can never see different trees.
//!
//! The `tar` crate still decodes the fields of a 512-byte header (octal and base-256
//! numbers, the ustar prefix, the GNU sparse descriptors); the framing — which block is a
//! header, how far an entry's data goes, what extension headers apply to — is done here,
//! for three reasons the crate cannot be configured around (tar 0.4.46, `archive.rs`):
//! - it splits PAX records on `\n`, so a valid `path` record holding a newline (POSIX
//!   pax: the length prefix makes any byte legal in a value; GNU tar and Python's tarfile
//!   list it) is "malformed pax extension", and a `size` record after such a record is
//!   silently ignored — a second tree hidden from xbake;
//! - it reads a PAX or GNU long-name header of any declared size into memory;
//! - it hands out a sparse entry's data with its holes filled in as zeros and never shows
//!   the map, so a 1 TiB sparse entry would be written as 1 TiB of zeros.
//!
//! Where readers disagree, the entry is refused rather than guessed at, so a scanner
//! using Go's archive/tar or Python's tarfile and xbake always agree on the tree (the
//! "one tar reading for everyone" of issue 8):
//! - a header-only type (symlink, hard link, directory, fifo, device) carrying data: Go
//!   and Python read that data as further headers (Go's `isHeaderOnlyType`, Python's
//!   `_proc_builtin` skips data only for regular files), the `tar` crate skipped it;
//! - a PAX global header that sets per-entry keys: Python applies it to every later
//!   entry, Go and the `tar` crate ignore it;
//! - two PAX (or two GNU long-name) headers for one entry: Go keeps the last one.

use super::error::LayerError;
use std::io::{self, Read};
use tar::{EntryType, GnuExtSparseHeader, Header};

/// The largest PAX extended header or GNU long name accepted, in bytes: Go's archive/tar
/// `maxSpecialFileSize` (reader.go); anything larger is an error there too.
pub const MAX_EXTENSION_SIZE: u64 = 1 << 20;

const BLOCK: u64 = 512;

/// PAX records (key, value), in archive order.
pub type PaxRecords = Vec<(Vec<u8>, Vec<u8>)>;

/// One archive member, its extension headers already applied.
#[derive(Debug, Clone)]
pub struct TarEntry {
    /// The raw header (name, mode, ids, times and device numbers not overridden by PAX).
    pub header: Header,
    /// The entry type; a pre-POSIX regular entry named `dir/` is a directory.
    pub kind: EntryType,
    /// The name: PAX `path`, else a GNU long name, else the header's (ustar prefix joined).
    pub path: Vec<u8>,
    /// The link target: PAX `linkpath`, else a GNU long link, else the header's.
    pub link: Option<Vec<u8>>,
    /// Bytes of data stored in the archive after the header (PAX `size` wins).
    pub size: u64,
    /// The local PAX records, in archive order.
    pub pax: PaxRecords,
    /// For a GNU sparse entry: its data chunks and logical size.
    pub sparse: Option<SparseMap>,
}

/// Where a sparse entry's stored data goes in the file; everything else is a hole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseMap {
    /// (offset, length) of each data chunk, in order, not overlapping; the chunks' bytes
    /// follow each other in the archive.
    pub chunks: Vec<(u64, u64)>,
    /// The file's size, holes included.
    pub real_size: u64,
}

impl TarEntry {
    /// The file's apparent size (`st_size` once unpacked), holes included.
    pub fn apparent_size(&self) -> u64 {
        match &self.sparse {
            Some(map) => map.real_size,
            None => self.size,
        }
    }

    /// The name, for messages.
    pub fn name(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }

    /// The value of the local PAX record `key`, if any (the last one wins, as in Go).
    pub fn pax_value(&self, key: &[u8]) -> Option<&[u8]> {
        self.pax
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    pub fn uid(&self) -> Result<u64, LayerError> {
        self.pax_number(b"uid", self.header.uid())
    }

    pub fn gid(&self) -> Result<u64, LayerError> {
        self.pax_number(b"gid", self.header.gid())
    }

    fn pax_number(&self, key: &[u8], header: io::Result<u64>) -> Result<u64, LayerError> {
        match self.pax_value(key) {
            Some(value) => parse_decimal(key, value),
            None => header.map_err(|source| LayerError::Tar {
                after: None,
                source,
            }),
        }
    }
}

/// A tar problem that is not an I/O error: each says what the archive does and, where a
/// figure is involved, the figure.
#[derive(Debug, thiserror::Error)]
pub enum TarProblem {
    #[error(
        "a {what} header of {size} bytes is larger than the limit of {limit} bytes \
         (Go's archive/tar has the same limit)"
    )]
    ExtensionTooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("malformed PAX record at byte {offset} of the extended header: {reason}")]
    BadPaxRecord { offset: usize, reason: &'static str },
    #[error("PAX record {key}={value:?} is not a decimal number")]
    BadPaxNumber { key: String, value: String },
    #[error("two {0} headers describe the same entry (tar readers disagree on which applies)")]
    DuplicateExtension(&'static str),
    #[error("the archive ends with extension headers that describe no entry")]
    DanglingExtension,
    #[error(
        "a PAX global header sets {key:?}: Python's tarfile applies it to every later \
         entry, Go's archive/tar ignores it, so readers would see different trees"
    )]
    GlobalOverride { key: String },
    #[error(
        "PAX GNU sparse entries ({key}) are not supported; repack the archive with GNU tar's old sparse format or without --sparse"
    )]
    PaxSparse { key: String },
    #[error("GNU sparse map: {0}")]
    BadSparseMap(&'static str),
}

/// Reads entries one by one; the data of the current entry is read with [`TarReader::data`]
/// before the next call to [`TarReader::next_entry`] (what is left unread is skipped).
pub struct TarReader<R> {
    inner: Counted<R>,
    /// Where the next header starts.
    next_header: u64,
    /// Where the current entry's data ends.
    data_end: u64,
    /// The last entry returned, for messages about what follows it.
    last: Option<String>,
    done: bool,
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R) -> Self {
        TarReader {
            inner: Counted { inner, pos: 0 },
            next_header: 0,
            data_end: 0,
            last: None,
            done: false,
        }
    }

    /// The current entry's data (its stored bytes; for a sparse entry, the chunks one after
    /// the other).
    pub fn data(&mut self) -> io::Take<&mut Counted<R>> {
        let left = self.data_end.saturating_sub(self.inner.pos);
        (&mut self.inner).take(left)
    }

    /// Gives back the underlying reader (positioned after the end-of-archive block or
    /// wherever reading stopped).
    pub fn into_inner(self) -> R {
        self.inner.inner
    }

    /// The next entry, or None at the end of the archive.
    pub fn next_entry(&mut self) -> Result<Option<TarEntry>, LayerError> {
        if self.done {
            return Ok(None);
        }
        let result = self.read_entry();
        match &result {
            Ok(Some(entry)) => self.last = Some(entry.name()),
            _ => self.done = true,
        }
        result
    }

    fn io_error(&self, source: io::Error) -> LayerError {
        LayerError::Tar {
            after: self.last.clone(),
            source,
        }
    }

    fn problem(&self, problem: TarProblem) -> LayerError {
        LayerError::TarHeader {
            after: self.last.clone(),
            problem,
        }
    }

    fn read_entry(&mut self) -> Result<Option<TarEntry>, LayerError> {
        let mut pax: Option<PaxRecords> = None;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        loop {
            let Some(header) = self.read_header()? else {
                if pax.is_some() || long_name.is_some() || long_link.is_some() {
                    return Err(self.problem(TarProblem::DanglingExtension));
                }
                return Ok(None);
            };
            let stored = header.entry_size().map_err(|e| self.io_error(e))?;
            let kind = header.entry_type();
            let special = match kind {
                EntryType::XHeader => Some("PAX extended"),
                EntryType::XGlobalHeader => Some("PAX global"),
                EntryType::GNULongName => Some("GNU long name"),
                EntryType::GNULongLink => Some("GNU long link"),
                _ => None,
            };
            if let Some(what) = special {
                let body = self.read_special(what, stored)?;
                match kind {
                    EntryType::XHeader => {
                        if pax.is_some() {
                            return Err(self.problem(TarProblem::DuplicateExtension(what)));
                        }
                        pax = Some(parse_pax(&body).map_err(|p| self.problem(p))?);
                    }
                    EntryType::XGlobalHeader => {
                        let records = parse_pax(&body).map_err(|p| self.problem(p))?;
                        if let Some((key, _)) = records.iter().find(|(k, _)| applies_to_entry(k)) {
                            let key = String::from_utf8_lossy(key).into_owned();
                            return Err(self.problem(TarProblem::GlobalOverride { key }));
                        }
                    }
                    EntryType::GNULongName | EntryType::GNULongLink => {
                        let slot = if kind == EntryType::GNULongName {
                            &mut long_name
                        } else {
                            &mut long_link
                        };
                        if slot.is_some() {
                            return Err(self.problem(TarProblem::DuplicateExtension(what)));
                        }
                        // GNU tar NUL-terminates the name inside the data.
                        let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
                        *slot = Some(body[..end].to_vec());
                    }
                    _ => {}
                }
                continue;
            }
            let pax = pax.unwrap_or_default();
            let mut entry = TarEntry {
                kind,
                path: long_name.unwrap_or_else(|| header.path_bytes().into_owned()),
                link: long_link.or_else(|| header.link_name_bytes().map(|l| l.into_owned())),
                size: stored,
                sparse: None,
                pax,
                header,
            };
            if let Some(path) = entry.pax_value(b"path") {
                entry.path = path.to_vec();
            }
            if let Some(link) = entry.pax_value(b"linkpath") {
                entry.link = Some(link.to_vec());
            }
            if let Some(size) = entry.pax_value(b"size") {
                entry.size = parse_decimal(b"size", size)?;
            }
            if let Some((key, _)) = entry
                .pax
                .iter()
                .find(|(k, _)| k.starts_with(b"GNU.sparse."))
            {
                let key = String::from_utf8_lossy(key).into_owned();
                return Err(self.problem(TarProblem::PaxSparse { key }));
            }
            // Pre-POSIX tars mark directories with a trailing slash on a regular entry;
            // Python and Go read them as directories too.
            if matches!(kind, EntryType::Regular) && entry.path.ends_with(b"/") {
                entry.kind = EntryType::Directory;
            }
            if kind == EntryType::GNUSparse {
                entry.sparse = Some(self.read_sparse_map(&entry)?);
            }
            self.data_end = self.inner.pos;
            self.next_header = self.data_end;
            self.advance(entry.size)?;
            if entry.size > 0
                && let Some(what) = header_only(entry.kind)
            {
                return Err(LayerError::Entry {
                    entry: entry.name(),
                    source: Box::new(LayerError::HiddenData {
                        kind: what,
                        size: entry.size,
                    }),
                });
            }
            return Ok(Some(entry));
        }
    }

    /// Skips what is left of the previous entry and reads the next header block; None at
    /// the end-of-archive marker (a zero block) or at the end of the stream.
    fn read_header(&mut self) -> Result<Option<Header>, LayerError> {
        let skip = self.next_header.saturating_sub(self.inner.pos);
        let skipped = io::copy(&mut (&mut self.inner).take(skip), &mut io::sink())
            .map_err(|e| self.io_error(e))?;
        if skipped < skip {
            return Err(self.io_error(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends inside an entry's data",
            )));
        }
        let mut header = Header::new_old();
        if !read_block(&mut self.inner, header.as_mut_bytes()).map_err(|e| self.io_error(e))? {
            return Ok(None);
        }
        if header.as_bytes().iter().all(|&b| b == 0) {
            return Ok(None);
        }
        let stored = header.cksum().map_err(|e| self.io_error(e))?;
        // The checksum field counts as spaces. POSIX sums unsigned bytes; some old tars
        // summed signed ones, which Go and Python accept as well.
        let bytes = header.as_bytes();
        let fields = bytes[..148].iter().chain(&bytes[156..]);
        let unsigned: u32 = fields.clone().map(|&b| u32::from(b)).sum::<u32>() + 8 * 32;
        let signed: i64 = fields.map(|&b| i64::from(b as i8)).sum::<i64>() + 8 * 32;
        if stored != unsigned && i64::from(stored) != signed {
            return Err(self.io_error(io::Error::new(
                io::ErrorKind::InvalidData,
                "archive header checksum mismatch",
            )));
        }
        self.next_header = self.inner.pos;
        Ok(Some(header))
    }

    /// Moves `next_header` past `size` bytes of data and their padding.
    fn advance(&mut self, size: u64) -> Result<(), LayerError> {
        let padded = size
            .checked_add(BLOCK - 1)
            .map(|s| s & !(BLOCK - 1))
            .and_then(|s| self.next_header.checked_add(s));
        match padded {
            Some(next) => {
                self.data_end = self.next_header + size;
                self.next_header = next;
                Ok(())
            }
            None => Err(self.io_error(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("entry size {size} overflows the archive offset"),
            ))),
        }
    }

    /// The body of an extension header, bounded by [`MAX_EXTENSION_SIZE`].
    fn read_special(&mut self, what: &'static str, size: u64) -> Result<Vec<u8>, LayerError> {
        if size > MAX_EXTENSION_SIZE {
            return Err(self.problem(TarProblem::ExtensionTooLarge {
                what,
                size,
                limit: MAX_EXTENSION_SIZE,
            }));
        }
        self.advance(size)?;
        let mut body = Vec::with_capacity(size as usize);
        self.data()
            .read_to_end(&mut body)
            .map_err(|e| self.io_error(e))?;
        if (body.len() as u64) < size {
            return Err(self.io_error(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the archive ends inside a {what} header"),
            )));
        }
        Ok(body)
    }

    /// The old GNU sparse format (type `S`): four descriptors in the header, then
    /// extension blocks of 21 while `isextended` is set (GNU tar manual, "Sparse Formats";
    /// the same checks as the `tar` crate's `parse_sparse_header`).
    fn read_sparse_map(&mut self, entry: &TarEntry) -> Result<SparseMap, LayerError> {
        let bad = |reason| TarProblem::BadSparseMap(reason);
        let Some(gnu) = entry.header.as_gnu() else {
            return Err(self.problem(bad("a sparse entry type in a header that is not GNU")));
        };
        let mut descriptors: Vec<(u64, u64)> = Vec::new();
        let mut push = |d: &tar::GnuSparseHeader| -> io::Result<()> {
            if !d.is_empty() {
                descriptors.push((d.offset()?, d.length()?));
            }
            Ok(())
        };
        for d in &gnu.sparse {
            push(d).map_err(|e| self.io_error(e))?;
        }
        let mut extended = gnu.is_extended();
        while extended {
            let mut ext = GnuExtSparseHeader::new();
            if !read_block(&mut self.inner, ext.as_mut_bytes()).map_err(|e| self.io_error(e))? {
                return Err(self.problem(bad("the archive ends inside the map")));
            }
            for d in ext.sparse() {
                push(d).map_err(|e| self.io_error(e))?;
            }
            extended = ext.is_extended();
        }
        let real_size = gnu.real_size().map_err(|e| self.io_error(e))?;
        let mut end = 0u64;
        let mut stored = 0u64;
        for &(offset, len) in &descriptors {
            if offset < end {
                return Err(self.problem(bad("chunks out of order or overlapping")));
            }
            end = offset
                .checked_add(len)
                .ok_or_else(|| self.problem(bad("a chunk ends beyond 2^64")))?;
            stored += len;
        }
        if end > real_size {
            return Err(self.problem(bad("a chunk ends beyond the file's size")));
        }
        if stored != entry.size {
            return Err(self.problem(bad("the chunks do not add up to the stored data")));
        }
        Ok(SparseMap {
            chunks: descriptors
                .into_iter()
                .filter(|&(_, len)| len > 0)
                .collect(),
            real_size,
        })
    }
}

/// The type's name if POSIX says it has no data (ustar: "the size field shall be
/// specified as zero"), as Go's `isHeaderOnlyType` lists them.
fn header_only(kind: EntryType) -> Option<&'static str> {
    Some(match kind {
        EntryType::Symlink => "symlink",
        EntryType::Link => "hard link",
        EntryType::Directory => "directory",
        EntryType::Fifo => "fifo",
        EntryType::Char => "character device",
        EntryType::Block => "block device",
        _ => return None,
    })
}

/// PAX keys that change an entry (POSIX pax "pax Extended Header Keywords", plus the
/// vendor keys xbake applies): a global header setting one is refused.
fn applies_to_entry(key: &[u8]) -> bool {
    matches!(
        key,
        b"path" | b"linkpath" | b"size" | b"uid" | b"gid" | b"mtime" | b"uname" | b"gname"
    ) || key.starts_with(b"SCHILY.xattr.")
        || key.starts_with(b"GNU.sparse.")
}

/// Parses PAX extended header records, `"%d %s=%s\n"` (POSIX.1-2008 pax, "pax Extended
/// Header"): the decimal length covers the whole record, its own digits and the newline
/// included, so keys and values are taken by length and a value may hold any byte,
/// newlines included. Trailing NUL padding is tolerated, as Python's tarfile does.
pub fn parse_pax(body: &[u8]) -> Result<PaxRecords, TarProblem> {
    let mut records = Vec::new();
    let mut at = 0;
    while at < body.len() {
        if body[at..].iter().all(|&b| b == 0) {
            break;
        }
        let bad = |reason| TarProblem::BadPaxRecord { offset: at, reason };
        let rest = &body[at..];
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| bad("no length"))?;
        let digits = &rest[..space];
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(bad("the length is not a decimal number"));
        }
        let len: usize = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| bad("the length is not a decimal number"))?;
        if len <= space + 1 || len > rest.len() {
            return Err(bad("the length runs past the header"));
        }
        let record = &rest[space + 1..len];
        let Some((b'\n', key_value)) = record.split_last() else {
            return Err(bad("the record does not end with a newline"));
        };
        let equals = key_value
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| bad("no '=' in the record"))?;
        if equals == 0 {
            return Err(bad("an empty key"));
        }
        records.push((
            key_value[..equals].to_vec(),
            key_value[equals + 1..].to_vec(),
        ));
        at += len;
    }
    Ok(records)
}

fn parse_decimal(key: &[u8], value: &[u8]) -> Result<u64, LayerError> {
    std::str::from_utf8(value)
        .ok()
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| LayerError::TarHeader {
            after: None,
            problem: TarProblem::BadPaxNumber {
                key: String::from_utf8_lossy(key).into_owned(),
                value: String::from_utf8_lossy(value).into_owned(),
            },
        })
}

/// Reads a whole block; false at a clean end of stream before its first byte.
fn read_block(r: &mut impl Read, block: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < block.len() {
        match r.read(&mut block[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the archive ends inside a header block",
                ));
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// A reader that knows how far it has read.
pub struct Counted<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}
