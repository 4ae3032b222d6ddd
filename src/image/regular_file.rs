//! Opening the files of an image layout or a content store as what they claim to be:
//! regular files exactly where they are named, read no further than their descriptor says.
//!
//! A layout is input like any other (DESIGN decision 7). A blob that is a symlink to
//! /dev/zero made a build read forever, and one linked to a file outside the layout was
//! read and accepted; a hard link of such a symlink then poisoned the cache's store. So
//! every file is opened beneath its directory with openat2(2) `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS` (no symlink is followed, not even the last component), first as
//! `O_PATH` so that nothing but a regular file is ever opened for reading (opening a FIFO
//! blocks, opening a device can have effects), and the size is checked against the
//! descriptor before any byte is read, as containerd's content store does
//! (`content.ReadBlob` / `ReaderAt` size checks).

use super::ImageError;
use crate::digest::DigestError;
use crate::layer::root::open_beneath;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A regular file opened beneath a directory, and what fstat said about it.
pub struct RegularFile {
    pub file: File,
    pub path: PathBuf,
    pub size: u64,
    pub uid: u32,
    /// What fstat(2) said, for trust records (src/trust.rs).
    pub meta: std::fs::Metadata,
}

/// What a non-regular file is, for the error message.
fn kind_of(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_symlink() {
        "symbolic link"
    } else if file_type.is_dir() {
        "directory"
    } else if file_type.is_char_device() {
        "character device"
    } else if file_type.is_block_device() {
        "block device"
    } else if file_type.is_fifo() {
        "named pipe"
    } else if file_type.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// Opens `rel` (a relative path without `..`, e.g. `blobs/sha256/<hex>`) beneath `dir`
/// for reading. `dir` itself is the caller's choice and may be reached through symlinks;
/// nothing below it is. Anything but a regular file is refused, naming what it is.
pub fn open_regular(dir: &Path, rel: &str) -> Result<RegularFile, ImageError> {
    let path = dir.join(rel);
    let io_err = |e: Errno| ImageError::Io {
        path: path.clone(),
        source: e.into(),
    };
    let dir_fd = nix::fcntl::open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| ImageError::Io {
        path: dir.to_path_buf(),
        source: e.into(),
    })?;
    let not_regular = |kind: &'static str| ImageError::NotRegular {
        path: path.clone(),
        kind,
    };
    let probe = match open_beneath(dir_fd.as_fd(), Path::new(rel), OFlag::O_PATH) {
        Ok(fd) => File::from(fd),
        // ELOOP: a symlink somewhere on the way; say whether it is the file itself.
        Err(Errno::ELOOP) => {
            let is_link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_symlink());
            return Err(not_regular(if is_link {
                "symbolic link"
            } else {
                "path through a symbolic link"
            }));
        }
        Err(e) => return Err(io_err(e)),
    };
    let probed = probe.metadata().map_err(ImageError::io(&path))?;
    if !probed.file_type().is_file() {
        return Err(not_regular(kind_of(probed.file_type())));
    }
    // O_NONBLOCK: should the file be swapped for a FIFO after the probe, the open must
    // not hang; the identity check below then refuses it. No effect on regular files.
    let fd = open_beneath(
        dir_fd.as_fd(),
        Path::new(rel),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
    )
    .map_err(|e| match e {
        Errno::ELOOP => not_regular("symbolic link"),
        e => io_err(e),
    })?;
    let file = File::from(fd);
    let meta = file.metadata().map_err(ImageError::io(&path))?;
    if (meta.dev(), meta.ino()) != (probed.dev(), probed.ino()) || !meta.file_type().is_file() {
        return Err(not_regular(kind_of(meta.file_type())));
    }
    Ok(RegularFile {
        size: meta.len(),
        uid: meta.uid(),
        meta,
        file,
        path,
    })
}

/// Checks a file's real size against its descriptor's before reading, naming both.
pub fn check_size(what: &str, declared: u64, actual: u64) -> Result<(), ImageError> {
    if declared == actual {
        Ok(())
    } else {
        Err(DigestError::SizeMismatch {
            what: what.to_string(),
            expected: declared,
            actual,
        }
        .into())
    }
}

/// A reader that yields exactly `expected` bytes or fails: it never reads more than
/// `expected + 1` bytes from the file (one more is how a file that grew is noticed), and
/// reaching the end early is an error too. The size was checked at open; this covers a
/// file that changes while it is read.
pub struct SizedReader<R> {
    inner: R,
    expected: u64,
    read: u64,
    what: String,
}

impl<R: Read> SizedReader<R> {
    pub fn new(inner: R, expected: u64, what: &str) -> SizedReader<R> {
        SizedReader {
            inner,
            expected,
            read: 0,
            what: what.to_string(),
        }
    }

    fn mismatch(&self, actual: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "size mismatch for {}: expected {} bytes, got {actual}",
                self.what, self.expected
            ),
        )
    }
}

impl<R: Read> Read for SizedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let room = self.expected.saturating_add(1).saturating_sub(self.read);
        let want = usize::try_from(room).unwrap_or(usize::MAX).min(buf.len());
        let n = self.inner.read(&mut buf[..want])?;
        self.read += n as u64;
        if self.read > self.expected {
            return Err(self.mismatch("more"));
        }
        if n == 0 && self.read != self.expected {
            return Err(self.mismatch(&self.read.to_string()));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(r: &mut impl Read) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        r.read_to_end(&mut out).map(|_| out)
    }

    #[test]
    fn sized_reader_accepts_exact_and_refuses_short_or_long() {
        assert_eq!(
            read_all(&mut SizedReader::new(&b"abc"[..], 3, "blob x")).unwrap(),
            b"abc"
        );
        let err = read_all(&mut SizedReader::new(&b"ab"[..], 3, "blob x")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "size mismatch for blob x: expected 3 bytes, got 2"
        );
        let err = read_all(&mut SizedReader::new(&b"abcd"[..], 3, "blob x")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "size mismatch for blob x: expected 3 bytes, got more"
        );
    }

    #[test]
    fn sized_reader_never_reads_past_size_plus_one() {
        // An endless source (what /dev/zero is) declared 10 bytes: it stops at 11.
        struct Counting(u64);
        impl Read for Counting {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.0 += buf.len() as u64;
                buf.fill(0);
                Ok(buf.len())
            }
        }
        let mut source = Counting(0);
        let mut r = SizedReader::new(&mut source, 10, "blob");
        assert!(read_all(&mut r).is_err());
        assert_eq!(source.0, 11);
        // A declared 2^62 allocates nothing up front.
        let mut r = SizedReader::new(&b"x"[..], 1 << 62, "blob");
        assert!(read_all(&mut r).unwrap_err().to_string().contains("got 1"));
    }

    #[test]
    fn only_regular_files_beneath_the_directory_open() {
        let dir = tempfile::tempdir().unwrap();
        let d = &dir.path().join("layout");
        std::fs::create_dir(d).unwrap();
        std::fs::write(d.join("file"), b"data").unwrap();
        std::fs::write(dir.path().join("outside"), b"secret").unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.join("zero")).unwrap();
        std::os::unix::fs::symlink("file", d.join("relative")).unwrap();
        std::os::unix::fs::symlink(d.join("sub"), d.join("linkdir")).unwrap();
        std::fs::write(d.join("sub/inner"), b"x").unwrap();
        nix::unistd::mkfifo(
            &d.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();

        let ok = open_regular(d, "file").unwrap();
        assert_eq!(ok.size, 4);
        let refused = |rel: &str| open_regular(d, rel).err().map(|e| e.to_string());
        for (rel, kind) in [
            ("zero", "is a symbolic link"),
            ("relative", "is a symbolic link"),
            ("linkdir/inner", "is a path through a symbolic link"),
            ("sub", "is a directory"),
            ("fifo", "is a named pipe"),
        ] {
            let err = refused(rel).unwrap_or_else(|| panic!("{rel} opened"));
            assert!(
                err.contains(kind) && err.contains(&d.join(rel).display().to_string()),
                "{rel}: {err}"
            );
        }
        assert!(refused("../outside").is_some(), ".. leaves the directory");
        assert!(open_regular(d, "sub/inner").is_ok());
    }
}
