//! A content-addressed blob directory (`blobs/sha256/<hex>`), the same shape as an OCI
//! layout's, so blobs move between the two by hard link. Writes go to a temporary file
//! in the same directory and are renamed into place once complete and synced (umoci's
//! oci/cas/dir), so a killed build never leaves a truncated blob under a digest name.

use super::ImageError;
use crate::digest::{Digest, DigestError, HashingReader, HashingWriter};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct BlobStore {
    root: PathBuf,
}

/// A blob being written; nothing is visible under a digest name until `commit`.
pub struct PendingBlob {
    file: tempfile::NamedTempFile,
    dir: PathBuf,
}

impl Write for PendingBlob {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl PendingBlob {
    /// Moves the finished blob to its digest name. `digest` must be the sha256 of every
    /// byte written (the caller hashed them on the way in).
    pub fn commit(self, digest: &Digest) -> Result<PathBuf, ImageError> {
        let target = self.dir.join(digest.hex());
        // Temporary files are created 0600; blobs are content anyone may read (a layout
        // is meant to be shared, pushed, inspected by other users).
        use std::os::unix::fs::PermissionsExt;
        self.file
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(ImageError::io(self.file.path()))?;
        self.file
            .as_file()
            .sync_all()
            .map_err(ImageError::io(self.file.path()))?;
        self.file.persist(&target).map_err(|e| ImageError::Io {
            path: target.clone(),
            source: e.error,
        })?;
        Ok(target)
    }
}

impl BlobStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: &Path) -> Result<BlobStore, ImageError> {
        let dir = root.join("blobs/sha256");
        std::fs::create_dir_all(&dir).map_err(ImageError::io(&dir))?;
        Ok(BlobStore {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir().join(digest.hex())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Starts writing a blob whose digest the caller computes.
    pub fn create(&self) -> Result<PendingBlob, ImageError> {
        let dir = self.dir();
        let file = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .map_err(ImageError::io(&dir))?;
        Ok(PendingBlob { file, dir })
    }

    /// Whether the blob exists, has `size` bytes and hashes to `digest`.
    pub fn verifies(&self, digest: &Digest, size: u64) -> bool {
        let path = self.path(digest);
        if !std::fs::metadata(&path).is_ok_and(|m| m.len() == size) {
            return false;
        }
        File::open(&path)
            .map(HashingReader::new)
            .and_then(HashingReader::drain_and_finish)
            .is_ok_and(|(actual, _)| &actual == digest)
    }

    /// Stores `bytes` and returns their digest and size. A blob already stored under
    /// that digest is kept only if it really holds these bytes.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<(Digest, u64), ImageError> {
        let digest = Digest::of(bytes);
        if !self.verifies(&digest, bytes.len() as u64) {
            let mut pending = self.create()?;
            pending
                .write_all(bytes)
                .map_err(ImageError::io(self.dir()))?;
            pending.commit(&digest)?;
        }
        Ok((digest, bytes.len() as u64))
    }

    /// Copies a stream into the store, hashing it on the way; when `expected` is given,
    /// a digest or size mismatch is an error and nothing is stored.
    pub fn put_reader(
        &self,
        reader: impl Read,
        expected: Option<(&Digest, u64)>,
        what: &str,
    ) -> Result<(Digest, u64), ImageError> {
        let mut pending = self.create()?;
        let mut hashing = HashingWriter::new(&mut pending);
        std::io::copy(&mut { reader }, &mut hashing).map_err(|source| ImageError::Io {
            path: PathBuf::from(what),
            source,
        })?;
        let (_, digest, size) = hashing.finish();
        if let Some((want, want_size)) = expected {
            want.verify(&digest, what)?;
            if size != want_size {
                return Err(DigestError::SizeMismatch {
                    what: what.to_string(),
                    expected: want_size,
                    actual: size,
                }
                .into());
            }
        }
        pending.commit(&digest)?;
        Ok((digest, size))
    }

    /// Reads a whole (small) blob and checks its digest.
    pub fn read_bytes(&self, digest: &Digest) -> Result<Vec<u8>, ImageError> {
        let path = self.path(digest);
        let bytes = std::fs::read(&path).map_err(ImageError::io(&path))?;
        digest.verify(&Digest::of(&bytes), &path.display().to_string())?;
        Ok(bytes)
    }

    /// Opens a blob for streaming; the caller verifies (e.g. while unpacking).
    pub fn open_blob(&self, digest: &Digest) -> Result<File, ImageError> {
        let path = self.path(digest);
        File::open(&path).map_err(ImageError::io(&path))
    }

    /// Makes `digest` available in `other` without reading it when both are on one file
    /// system (hard link); otherwise copies it, verifying the digest as it streams.
    pub fn export_to(&self, digest: &Digest, other: &BlobStore) -> Result<(), ImageError> {
        let source = self.path(digest);
        let target = other.path(digest);
        if let Ok(existing) = std::fs::metadata(&target) {
            // Already there: fine if it is the very same file (a hard link), or if its
            // bytes check out; a damaged copy is replaced.
            use std::os::unix::fs::MetadataExt;
            let same_file = std::fs::metadata(&source)
                .is_ok_and(|s| (s.dev(), s.ino()) == (existing.dev(), existing.ino()));
            if same_file || other.verifies(digest, existing.len()) {
                return Ok(());
            }
            std::fs::remove_file(&target).map_err(ImageError::io(&target))?;
        }
        match std::fs::hard_link(&source, &target) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(_) => {
                let file = self.open_blob(digest)?;
                let mut reader = HashingReader::new(file);
                let mut pending = other.create()?;
                std::io::copy(&mut reader, &mut pending).map_err(ImageError::io(&source))?;
                let (actual, _) = reader.drain_and_finish().map_err(ImageError::io(&source))?;
                digest.verify(&actual, &source.display().to_string())?;
                pending.commit(digest)?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_and_read_back_verified() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let (d, n) = store.put_bytes(b"hello").unwrap();
        assert_eq!(n, 5);
        assert_eq!(store.read_bytes(&d).unwrap(), b"hello");
        // Corrupt the blob on disk: the next read must refuse it.
        std::fs::write(store.path(&d), b"HELLO").unwrap();
        let err = store.read_bytes(&d).unwrap_err();
        assert!(err.to_string().contains("digest mismatch"), "{err}");
    }

    #[test]
    fn blobs_are_readable_by_everyone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let (d, _) = store.put_bytes(b"shared").unwrap();
        let mode = std::fs::metadata(store.path(&d))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
    }

    #[test]
    fn put_reader_with_wrong_expectation_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let wrong = Digest::of(b"something else");
        let err = store
            .put_reader(&b"data"[..], Some((&wrong, 4)), "layer 1")
            .unwrap_err();
        assert!(err.to_string().contains("layer 1"), "{err}");
        let right = Digest::of(b"data");
        let err = store
            .put_reader(&b"data"[..], Some((&right, 5)), "layer 1")
            .unwrap_err();
        assert!(err.to_string().contains("size mismatch"), "{err}");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .collect();
        assert!(names.is_empty(), "left behind: {names:?}");
        store
            .put_reader(&b"data"[..], Some((&right, 4)), "layer 1")
            .unwrap();
        assert!(store.contains(&right));
    }

    #[test]
    fn damaged_blobs_are_replaced_not_trusted() {
        let a_dir = tempfile::tempdir().unwrap();
        let b_dir = tempfile::tempdir().unwrap();
        let a = BlobStore::open(a_dir.path()).unwrap();
        let b = BlobStore::open(b_dir.path()).unwrap();
        let (d, n) = a.put_bytes(b"good").unwrap();
        std::fs::write(b.path(&d), b"evil").unwrap();
        assert!(!b.verifies(&d, n));
        a.export_to(&d, &b).unwrap();
        assert_eq!(b.read_bytes(&d).unwrap(), b"good");
        std::fs::write(b.path(&d), b"evil").unwrap();
        b.put_bytes(b"good").unwrap();
        assert_eq!(b.read_bytes(&d).unwrap(), b"good");
    }

    #[test]
    fn export_links_or_copies() {
        let a_dir = tempfile::tempdir().unwrap();
        let b_dir = tempfile::tempdir().unwrap();
        let a = BlobStore::open(a_dir.path()).unwrap();
        let b = BlobStore::open(b_dir.path()).unwrap();
        let (d, _) = a.put_bytes(b"blob").unwrap();
        a.export_to(&d, &b).unwrap();
        a.export_to(&d, &b).unwrap();
        assert_eq!(b.read_bytes(&d).unwrap(), b"blob");
    }
}
