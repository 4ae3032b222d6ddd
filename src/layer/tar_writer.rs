//! A small tar writer whose output is a pure function of what it is given: every header
//! field is set explicitly (the `tar` crate's `Builder` fills some from the file system
//! and its `HeaderMode::Deterministic` drops ownership, see STYLE.md habit 3).
//!
//! Format: POSIX ustar headers. What ustar cannot hold goes in a PAX extended header
//! (POSIX.1-2001 `pax`) right before the entry: `path` for names over 100 bytes,
//! `linkpath` for link targets over 100 bytes, and `SCHILY.xattr.NAME` records for xattrs
//! (the convention GNU tar, Go's archive/tar and the OCI tooling share). Numbers too big for
//! their octal field (uid/gid over 2^21-1, sizes over 8 GiB) use the base-256 encoding that
//! GNU tar, Go and the `tar` crate read. The archive ends with the two zero blocks of
//! POSIX and no further padding to a 10 KiB record.

use std::io::{self, Read, Write};
use tar::{EntryType, Header};

const BLOCK: usize = 512;
/// ustar `name` and `linkname` field width.
const NAME_FIELD: usize = 100;
/// Buffer for copying file contents into the archive.
const COPY_BUFFER: usize = 128 * 1024;

/// One tar entry's header, exactly as it will be written.
pub(crate) struct TarHeader<'a> {
    /// Relative path; directories end with `/`.
    pub path: &'a [u8],
    pub entry_type: EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub size: u64,
    pub link_target: Option<&'a [u8]>,
    pub device: Option<(u32, u32)>,
    /// Written in this order: the caller sorts them.
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

/// Why appending an entry failed.
#[derive(Debug)]
pub(crate) enum AppendError {
    /// Writing the archive failed.
    Write(io::Error),
    /// Reading the entry's contents failed.
    Read(io::Error),
    /// The contents were not `size` bytes long.
    SizeChanged,
}

pub(crate) struct TarWriter<W: Write> {
    out: W,
    entries: u64,
    buffer: Vec<u8>,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        TarWriter {
            out,
            entries: 0,
            buffer: vec![0; COPY_BUFFER],
        }
    }

    /// Writes one entry: its PAX header if needed, its ustar header, then exactly
    /// `header.size` bytes from `contents` (padded to the block size).
    pub fn append(
        &mut self,
        header: &TarHeader<'_>,
        contents: Option<&mut dyn Read>,
    ) -> Result<(), AppendError> {
        let mut records: Vec<(&[u8], &[u8])> = Vec::new();
        if header.path.len() > NAME_FIELD {
            records.push((b"path", header.path));
        }
        if let Some(target) = header.link_target
            && target.len() > NAME_FIELD
        {
            records.push((b"linkpath", target));
        }
        let xattr_keys: Vec<Vec<u8>> = header
            .xattrs
            .iter()
            .map(|(name, _)| [b"SCHILY.xattr.".as_slice(), name].concat())
            .collect();
        for (key, (_, value)) in xattr_keys.iter().zip(header.xattrs) {
            records.push((key, value));
        }
        if !records.is_empty() {
            self.write_pax_header(header.path, &records)
                .map_err(AppendError::Write)?;
        }

        let mut ustar = Header::new_ustar();
        copy_truncated(&mut ustar.as_old_mut().name, header.path);
        ustar.set_mode(header.mode);
        ustar.set_uid(header.uid);
        ustar.set_gid(header.gid);
        ustar.set_size(header.size);
        ustar.set_mtime(header.mtime);
        ustar.set_entry_type(header.entry_type);
        if let Some(target) = header.link_target {
            copy_truncated(&mut ustar.as_old_mut().linkname, target);
        }
        if let Some((major, minor)) = header.device {
            ustar.set_device_major(major).map_err(AppendError::Write)?;
            ustar.set_device_minor(minor).map_err(AppendError::Write)?;
        }
        ustar.set_cksum();
        self.out
            .write_all(ustar.as_bytes())
            .map_err(AppendError::Write)?;
        self.entries += 1;

        match contents {
            Some(contents) => self.copy_contents(contents, header.size),
            None if header.size == 0 => Ok(()),
            None => Err(AppendError::SizeChanged),
        }
    }

    /// Ends the archive; returns the output and the number of entries written (PAX
    /// headers not counted).
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        self.out.write_all(&[0; 2 * BLOCK])?;
        Ok((self.out, self.entries))
    }

    fn copy_contents(&mut self, contents: &mut dyn Read, size: u64) -> Result<(), AppendError> {
        let mut remaining = size;
        while remaining > 0 {
            let want = self
                .buffer
                .len()
                .min(usize::try_from(remaining).unwrap_or(usize::MAX));
            let n = match contents.read(&mut self.buffer[..want]) {
                Ok(0) => return Err(AppendError::SizeChanged),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(AppendError::Read(e)),
            };
            self.out
                .write_all(&self.buffer[..n])
                .map_err(AppendError::Write)?;
            remaining -= n as u64;
        }
        // More bytes than the header promised means the file grew while we read it.
        loop {
            match contents.read(&mut self.buffer[..1]) {
                Ok(0) => break,
                Ok(_) => return Err(AppendError::SizeChanged),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(AppendError::Read(e)),
            }
        }
        self.pad(size).map_err(AppendError::Write)
    }

    fn write_pax_header(&mut self, path: &[u8], records: &[(&[u8], &[u8])]) -> io::Result<()> {
        let mut data = Vec::new();
        for (key, value) in records {
            data.extend_from_slice(&pax_record(key, value));
        }
        let mut header = Header::new_ustar();
        copy_truncated(&mut header.as_old_mut().name, &pax_header_name(path));
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(data.len() as u64);
        header.set_entry_type(EntryType::XHeader);
        header.set_cksum();
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(&data)?;
        self.pad(data.len() as u64)
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let tail = (size % BLOCK as u64) as usize;
        if tail != 0 {
            self.out.write_all(&[0; BLOCK][..BLOCK - tail])?;
        }
        Ok(())
    }
}

/// `"%d %s=%s\n"` where the leading number counts the whole record, itself included.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + decimal_digits(rest);
    while rest + decimal_digits(len) != len {
        len = rest + decimal_digits(len);
    }
    let mut record = format!("{len} ").into_bytes();
    record.extend_from_slice(key);
    record.push(b'=');
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

fn decimal_digits(n: usize) -> usize {
    n.to_string().len()
}

/// `DIR/PaxHeaders.0/NAME` as Go's archive/tar names it: readers ignore it, people
/// listing a raw archive see what it belongs to.
fn pax_header_name(path: &[u8]) -> Vec<u8> {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    let (dir, name) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
        None => (&b""[..], trimmed),
    };
    [dir, b"PaxHeaders.0/", name].concat()
}

fn copy_truncated(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        assert_eq!(pax_record(b"path", b"a"), b"9 path=a\n");
        // 9 bytes without the length field: the length itself needs two digits, so 11.
        assert_eq!(pax_record(b"path", b"ab"), b"11 path=ab\n");
        for n in 0..300 {
            let record = pax_record(b"k", &vec![b'v'; n]);
            let space = record.iter().position(|&b| b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&record[..space])
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(len, record.len(), "value length {n}");
        }
    }

    #[test]
    fn pax_header_names_follow_go() {
        assert_eq!(pax_header_name(b"a/b/c"), b"a/b/PaxHeaders.0/c");
        assert_eq!(pax_header_name(b"dir/"), b"PaxHeaders.0/dir");
        assert_eq!(pax_header_name(b"f"), b"PaxHeaders.0/f");
    }

    #[test]
    fn long_paths_link_targets_and_xattrs_read_back_with_the_tar_crate() {
        let long_path = format!("{}/file", "d".repeat(150));
        let long_target = "t/".repeat(80);
        let xattrs = vec![
            (b"user.a".to_vec(), b"1".to_vec()),
            (b"user.b".to_vec(), vec![0, 255]),
        ];
        let mut w = TarWriter::new(Vec::new());
        let file = TarHeader {
            path: long_path.as_bytes(),
            entry_type: EntryType::Regular,
            mode: 0o4755,
            uid: 3_000_000,
            gid: 7,
            mtime: 1234,
            size: 5,
            link_target: None,
            device: None,
            xattrs: &xattrs,
        };
        w.append(&file, Some(&mut &b"hello"[..])).unwrap();
        let link = TarHeader {
            path: b"l",
            entry_type: EntryType::Symlink,
            size: 0,
            link_target: Some(long_target.as_bytes()),
            xattrs: &[],
            ..file
        };
        w.append(&link, None).unwrap();
        let (bytes, entries) = w.finish().unwrap();
        assert_eq!(entries, 2);
        assert_eq!(bytes.len() % BLOCK, 0);

        let mut archive = tar::Archive::new(&bytes[..]);
        let mut read = archive.entries().unwrap();
        let mut first = read.next().unwrap().unwrap();
        assert_eq!(first.path_bytes().as_ref(), long_path.as_bytes());
        assert_eq!(first.header().mode().unwrap(), 0o4755);
        assert_eq!(first.header().uid().unwrap(), 3_000_000);
        let records: Vec<(Vec<u8>, Vec<u8>)> = first
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|r| r.unwrap())
            .map(|r| (r.key_bytes().to_vec(), r.value_bytes().to_vec()))
            .collect();
        assert!(records.contains(&(b"SCHILY.xattr.user.b".to_vec(), vec![0, 255])));
        let mut body = String::new();
        first.read_to_string(&mut body).unwrap();
        assert_eq!(body, "hello");
        let second = read.next().unwrap().unwrap();
        assert_eq!(
            second.link_name_bytes().unwrap().as_ref(),
            long_target.as_bytes()
        );
        assert!(read.next().is_none());
    }

    #[test]
    fn contents_of_the_wrong_size_are_refused() {
        let header = TarHeader {
            path: b"f",
            entry_type: EntryType::Regular,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 3,
            link_target: None,
            device: None,
            xattrs: &[],
        };
        let mut w = TarWriter::new(Vec::new());
        assert!(matches!(
            w.append(&header, Some(&mut &b"ab"[..])),
            Err(AppendError::SizeChanged)
        ));
        let mut w = TarWriter::new(Vec::new());
        assert!(matches!(
            w.append(&header, Some(&mut &b"abcd"[..])),
            Err(AppendError::SizeChanged)
        ));
    }
}
