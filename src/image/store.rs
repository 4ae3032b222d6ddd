//! A content-addressed blob directory (`blobs/sha256/<hex>`), the same shape as an OCI
//! layout's, so blobs move between the two by hard link. Writes go to a temporary file
//! in the same directory and are renamed into place once complete and synced (umoci's
//! oci/cas/dir), so a killed build never leaves a truncated blob under a digest name.
//!
//! A store may keep trust records (src/trust.rs; the cache's store does, a layout's
//! never gets files it did not ask for): a blob whose record still matches its inode is
//! not hashed again when it is checked.

use super::ImageError;
use super::regular_file::{SizedReader, check_size, open_regular};
use crate::digest::{Digest, DigestError, HashingReader, HashingWriter};
use crate::trust::{Check, Record, Records, Stamp};
use nix::fcntl::AT_FDCWD;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct BlobStore {
    root: PathBuf,
    /// Trust records by blob hex digest, when this store keeps them.
    trust: Option<Records>,
}

/// Records that vouched for blobs before xbake linked, unlinked or chowned names of
/// them ([`BlobStore::hold_trust`]).
pub struct TrustHold {
    held: Vec<(Digest, Record)>,
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
    /// byte written (the caller hashed them on the way in). No trust record is written
    /// here: the blob's mtime and ctime are from this very moment, so a record would be
    /// racy and never trusted (src/trust.rs); the first check after the racy window
    /// hashes the blob once more and records it.
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
            trust: None,
        })
    }

    /// Opens a store that keeps trust records in `trust_dir` (outside `blobs/`).
    pub fn open_trusting(root: &Path, trust_dir: &Path) -> Result<BlobStore, ImageError> {
        let records = Records::open(trust_dir).map_err(ImageError::io(trust_dir))?;
        Ok(BlobStore {
            trust: Some(records),
            ..BlobStore::open(root)?
        })
    }

    /// The trust records, if this store keeps them.
    pub fn trust(&self) -> Option<&Records> {
        self.trust.as_ref()
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

    /// Whether a regular file is stored under `digest` (a symlink there is not a blob).
    pub fn contains(&self, digest: &Digest) -> bool {
        std::fs::symlink_metadata(self.path(digest)).is_ok_and(|m| m.is_file())
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

    /// Whether the blob is a regular file of `size` bytes that hashes to `digest`. A
    /// symlink, a device or a file of another size never verifies, and is never read.
    pub fn verifies(&self, digest: &Digest, size: u64) -> bool {
        self.check(digest, size).is_ok()
    }

    /// Checks that the blob is a regular file of `size` bytes holding `digest`: by its
    /// trust record when that still matches the inode, else by hashing every byte (and
    /// then recording it). Says which it was; a mismatch is an error naming the blob.
    pub fn check(&self, digest: &Digest, size: u64) -> Result<Check, ImageError> {
        let opened = open_regular(&self.root, &digest.blob_path())?;
        let what = blob_what("blob", digest, &opened.path);
        check_size(&what, size, opened.size)?;
        let reader = SizedReader::new(&opened.file, size, &what);
        let io = ImageError::io(&opened.path);
        let (actual, how) = match &self.trust {
            Some(records) => records
                .digest(digest.hex(), &opened.file, Some(digest), reader)
                .map_err(io)?,
            None => {
                let (d, _) = HashingReader::new(reader).drain_and_finish().map_err(io)?;
                (d, Check::Hashed)
            }
        };
        digest.verify(&actual, &what)?;
        Ok(how)
    }

    /// Before xbake links, unlinks or chowns names of `digests` (writing an output layout
    /// that shares them by hard link), notes which of their records vouch for them now.
    pub fn hold_trust(&self, digests: &[Digest]) -> TrustHold {
        let mut held = Vec::new();
        if let Some(records) = &self.trust {
            for digest in digests {
                if let Ok(opened) = open_regular(&self.root, &digest.blob_path())
                    && let Some(record) = records.vouched(digest.hex(), &opened.file, Some(digest))
                {
                    held.push((digest.clone(), record));
                }
            }
        }
        TrustHold { held }
    }

    /// After those links: each held record moves to its blob's new ctime, if nothing
    /// but the ctime changed (src/trust.rs, `Records::carry`).
    pub fn carry_trust(&self, hold: TrustHold) {
        let Some(records) = &self.trust else {
            return;
        };
        for (digest, record) in hold.held {
            if let Ok(opened) = open_regular(&self.root, &digest.blob_path()) {
                records.carry(digest.hex(), &record, &Stamp::of(&opened.meta));
            }
        }
    }

    /// Opens a blob for streaming: a regular file beneath the store, never through a
    /// symlink (see regular_file.rs). The caller verifies (e.g. while unpacking).
    pub fn open_blob(&self, digest: &Digest) -> Result<File, ImageError> {
        Ok(open_regular(&self.root, &digest.blob_path())?.file)
    }

    /// Opens a blob whose descriptor says it has `size` bytes: a different real size is an
    /// error naming `what`, the blob and both sizes, and the reader yields exactly `size`
    /// bytes (never reading more than one beyond) or fails.
    pub fn open_sized(
        &self,
        digest: &Digest,
        size: u64,
        what: &str,
    ) -> Result<SizedReader<File>, ImageError> {
        let opened = open_regular(&self.root, &digest.blob_path())?;
        let what = blob_what(what, digest, &opened.path);
        check_size(&what, size, opened.size)?;
        Ok(SizedReader::new(opened.file, size, &what))
    }

    /// Checks that a stored layer's bytes are compressed as `media_type` says (its magic
    /// number, image/checks.rs); the blob must have its descriptor's `size`.
    pub fn check_layer_compression(
        &self,
        digest: &Digest,
        size: u64,
        media_type: &str,
        what: &str,
    ) -> Result<(), ImageError> {
        let mut head = Vec::with_capacity(super::checks::LAYER_MAGIC_LEN);
        self.open_sized(digest, size, what)?
            .take(super::checks::LAYER_MAGIC_LEN as u64)
            .read_to_end(&mut head)
            .map_err(ImageError::io(self.path(digest)))?;
        super::checks::check_layer_bytes(media_type, &head, what)
    }

    /// Reads a whole JSON-sized blob that its descriptor says has `size` bytes (at most
    /// `limit`), checking size and digest. Nothing is allocated for a declared size that
    /// is over the limit or differs from the file's.
    pub fn read_sized(
        &self,
        digest: &Digest,
        size: u64,
        limit: u64,
        what: &str,
    ) -> Result<Vec<u8>, ImageError> {
        if size > limit {
            return Err(ImageError::TooLarge {
                what: format!("{what} {digest}"),
                size,
                limit,
            });
        }
        let mut reader = self.open_sized(digest, size, what)?;
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .map_err(ImageError::io(self.path(digest)))?;
        digest.verify(
            &Digest::of(&bytes),
            &blob_what(what, digest, &self.path(digest)),
        )?;
        Ok(bytes)
    }

    /// Reads a whole (small) blob of this store and checks its digest; for documents xbake
    /// wrote itself, whose size is the file's (bounded all the same).
    pub fn read_bytes(&self, digest: &Digest) -> Result<Vec<u8>, ImageError> {
        let size = open_regular(&self.root, &digest.blob_path())?.size;
        self.read_sized(digest, size, super::CONFIG_SIZE_LIMIT, "blob")
    }

    /// Brings blob `digest`, which a descriptor says has `size` bytes, from this store (an
    /// input: a layout given by the user) into `into` (the cache's store), verified: the
    /// store only ever holds regular files whose size and digest were checked. A file the
    /// caller owns is hard-linked after hashing (the very inode that was hashed, through
    /// its fd); anything else is copied while hashed, so the store never shares an inode
    /// with a file someone else can rewrite. A blob `into` already holds intact is kept.
    pub fn import_verified(
        &self,
        digest: &Digest,
        size: u64,
        into: &BlobStore,
        what: &str,
    ) -> Result<(), ImageError> {
        if into.verifies(digest, size) {
            return Ok(());
        }
        let source = open_regular(&self.root, &digest.blob_path())?;
        let what = blob_what(what, digest, &source.path);
        check_size(&what, size, source.size)?;
        let hashed = || -> Result<HashingReader<SizedReader<&File>>, ImageError> {
            (&source.file)
                .seek(SeekFrom::Start(0))
                .map_err(ImageError::io(&source.path))?;
            Ok(HashingReader::new(SizedReader::new(
                &source.file,
                size,
                &what,
            )))
        };
        if source.uid == nix::unistd::geteuid().as_raw() {
            let (actual, _) = hashed()?
                .drain_and_finish()
                .map_err(ImageError::io(&source.path))?;
            digest.verify(&actual, &what)?;
            if into.link_file(&source.file, digest).is_ok() {
                return Ok(());
            }
        }
        let mut reader = hashed()?;
        let mut pending = into.create()?;
        std::io::copy(&mut reader, &mut pending).map_err(ImageError::io(&source.path))?;
        let (actual, _) = reader
            .drain_and_finish()
            .map_err(ImageError::io(&source.path))?;
        digest.verify(&actual, &what)?;
        pending.commit(digest)?;
        Ok(())
    }

    /// Makes `digest` available in `other` (both stores xbake wrote: the cache and an
    /// output layout being staged) without reading it when both are on one file system
    /// (hard link); otherwise copies it, verifying the digest as it streams. Only a regular
    /// file is ever linked or copied.
    pub fn export_to(&self, digest: &Digest, other: &BlobStore) -> Result<(), ImageError> {
        let source = open_regular(&self.root, &digest.blob_path())?;
        let target = other.path(digest);
        if let Ok(existing) = std::fs::symlink_metadata(&target) {
            // Already there: fine if it is the very same file (a hard link), or if its
            // bytes check out; a damaged copy (or a symlink) is replaced.
            use std::os::unix::fs::MetadataExt;
            let same_file = source
                .file
                .metadata()
                .is_ok_and(|s| (s.dev(), s.ino()) == (existing.dev(), existing.ino()));
            if existing.is_file() && (same_file || other.verifies(digest, existing.len())) {
                return Ok(());
            }
        }
        if other.link_file(&source.file, digest).is_ok() {
            return Ok(());
        }
        let what = blob_what("blob", digest, &source.path);
        let mut reader = HashingReader::new(SizedReader::new(&source.file, source.size, &what));
        let mut pending = other.create()?;
        std::io::copy(&mut reader, &mut pending).map_err(ImageError::io(&source.path))?;
        let (actual, _) = reader
            .drain_and_finish()
            .map_err(ImageError::io(&source.path))?;
        digest.verify(&actual, &what)?;
        pending.commit(digest)?;
        Ok(())
    }

    /// Hard-links the open regular `file` into this store as `digest`, replacing whatever
    /// was there. Linking through /proc/self/fd (linkat(2) with AT_SYMLINK_FOLLOW, the
    /// unprivileged form of AT_EMPTY_PATH) links the inode that was checked, not whatever
    /// a path names by now; a temporary name plus rename replaces a damaged entry
    /// atomically. Fails across file systems, without /proc, or where
    /// fs.protected_hardlinks forbids it; callers then copy.
    fn link_file(&self, file: &File, digest: &Digest) -> Result<(), ImageError> {
        use std::os::fd::AsRawFd;
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let tmp = self.dir().join(format!(
            ".tmp-link-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let fd_path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        nix::unistd::linkat(
            AT_FDCWD,
            &fd_path,
            AT_FDCWD,
            &tmp,
            nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
        )
        .map_err(|e| ImageError::Io {
            path: tmp.clone(),
            source: e.into(),
        })?;
        let target = self.path(digest);
        let renamed = std::fs::rename(&tmp, &target).map_err(ImageError::io(&target));
        // rename(2) does nothing when both names are links to one inode; drop the spare.
        let _ = std::fs::remove_file(&tmp);
        renamed
    }
}

/// "layer sha256:… (DIR/blobs/sha256/…)": what a message names a blob by.
fn blob_what(what: &str, digest: &Digest, path: &Path) -> String {
    format!("{what} {digest} ({})", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two empty stores (a source and a destination) and the folders that hold them.
    fn two_stores() -> ([tempfile::TempDir; 2], BlobStore, BlobStore) {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let a = BlobStore::open(dirs[0].path()).unwrap();
        let b = BlobStore::open(dirs[1].path()).unwrap();
        (dirs, a, b)
    }

    /// A store keeping trust records, read against a clock a minute ahead, so a blob
    /// written just now is past the racy window (src/trust.rs).
    fn trusting_store() -> (tempfile::TempDir, BlobStore) {
        fn later() -> i128 {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            now.as_nanos() as i128 + 60_000_000_000
        }
        let dir = tempfile::tempdir().unwrap();
        let mut store = BlobStore::open_trusting(dir.path(), &dir.path().join("trust")).unwrap();
        store.trust = store.trust.map(|r| r.with_clock(later));
        (dir, store)
    }

    /// Lets the kernel's coarse clock move on: a change in the very tick of the
    /// record's ctime is the racy case the real clock's window exists for.
    fn next_tick() {
        std::thread::sleep(std::time::Duration::from_millis(25));
    }

    #[test]
    fn a_checked_blob_is_trusted_until_its_inode_changes() {
        let (_dir, store) = trusting_store();
        let (d, n) = store.put_bytes(b"layer bytes").unwrap();
        assert_eq!(store.check(&d, n).unwrap(), Check::Hashed);
        assert_eq!(store.check(&d, n).unwrap(), Check::Trusted);
        assert_eq!(store.check(&d, n).unwrap(), Check::Trusted);
        // A record is only ever for the digest it was made for.
        let other = Digest::of(b"other bytes");
        assert!(store.check(&other, n).is_err());

        // The same size, rewritten in place (the same inode): hashed, and refused.
        next_tick();
        let path = store.path(&d);
        let old_mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        let mut f = File::options().write(true).open(&path).unwrap();
        f.write_all(b"LAYER BYTES").unwrap();
        let err = store.check(&d, n).unwrap_err().to_string();
        assert!(err.contains("digest mismatch"), "{err}");
        // Even with the old mtime put back (utimensat): the ctime still moved.
        f.set_modified(old_mtime).unwrap();
        drop(f);
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            old_mtime
        );
        let err = store.check(&d, n).unwrap_err().to_string();
        assert!(err.contains("digest mismatch"), "{err}");
        assert!(!store.verifies(&d, n));
    }

    #[test]
    fn the_old_mtime_restored_after_a_write_is_still_seen() {
        let (_dir, store) = trusting_store();
        let (d, n) = store.put_bytes(b"good").unwrap();
        assert_eq!(store.check(&d, n).unwrap(), Check::Hashed);
        assert_eq!(store.check(&d, n).unwrap(), Check::Trusted);
        next_tick();
        let path = store.path(&d);
        let old_mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        let mut f = File::options().write(true).open(&path).unwrap();
        f.write_all(b"evil").unwrap();
        f.set_modified(old_mtime).unwrap();
        drop(f);
        // Never checked in between: only the ctime tells the record is stale.
        let err = store.check(&d, n).unwrap_err().to_string();
        assert!(err.contains("digest mismatch"), "{err}");
    }

    #[test]
    fn a_torn_or_missing_record_means_hashing_again() {
        let (dir, store) = trusting_store();
        let (d, n) = store.put_bytes(b"blob").unwrap();
        assert_eq!(store.check(&d, n).unwrap(), Check::Hashed);
        let record = dir.path().join("trust").join(d.hex());
        let text = std::fs::read_to_string(&record).unwrap();
        std::fs::write(&record, &text[..text.len() / 2]).unwrap();
        assert_eq!(store.check(&d, n).unwrap(), Check::Hashed);
        let rewritten = Record::decode(&std::fs::read_to_string(&record).unwrap()).unwrap();
        assert_eq!(rewritten.digest, d, "hashed again, and recorded whole");
        assert_eq!(store.check(&d, n).unwrap(), Check::Trusted);
        std::fs::remove_file(&record).unwrap();
        assert_eq!(store.check(&d, n).unwrap(), Check::Hashed);
        // A record is not taken for a blob that is now another inode (replaced).
        assert_eq!(store.check(&d, n).unwrap(), Check::Trusted);
        std::fs::remove_file(store.path(&d)).unwrap();
        store.put_bytes(b"blob").unwrap();
        assert_eq!(store.check(&d, n).unwrap(), Check::Hashed);
    }

    #[test]
    fn trust_is_carried_past_own_links_but_not_past_writes() {
        use std::os::unix::fs::MetadataExt;
        let (dir, store) = trusting_store();
        let (d, n) = store.put_bytes(b"shared").unwrap();
        let (e, m) = store.put_bytes(b"other!").unwrap();
        for (x, k) in [(&d, n), (&e, m)] {
            assert_eq!(store.check(x, k).unwrap(), Check::Hashed);
        }
        next_tick();
        let hold = store.hold_trust(&[d.clone(), e.clone()]);
        let ctime = |x: &Digest| std::fs::metadata(store.path(x)).unwrap().ctime_nsec();
        let before = ctime(&d);
        // What writing an output layout does: a hard link, and a write to the other.
        std::fs::hard_link(store.path(&d), dir.path().join("out-link")).unwrap();
        assert_ne!(ctime(&d), before, "a link moves the ctime");
        std::fs::write(store.path(&e), b"OTHER!").unwrap();
        store.carry_trust(hold);
        assert_eq!(store.check(&d, n).unwrap(), Check::Trusted);
        assert!(
            store.check(&e, m).is_err(),
            "a written blob is hashed, refused"
        );
        // Without a hold: the output layout removed by somebody else (`rm -rf`) only
        // changes the link count, and the record still vouches for the blob...
        next_tick();
        std::fs::remove_file(dir.path().join("out-link")).unwrap();
        assert_eq!(store.check(&d, n).unwrap(), Check::Trusted);
        // ...but a ctime moved with the link count unchanged (a chown or chmod, or a
        // write whose mtime was put back) makes it stale: hashed once more.
        next_tick();
        let mode = std::fs::metadata(store.path(&d)).unwrap().permissions();
        std::fs::set_permissions(store.path(&d), mode).unwrap();
        assert_eq!(store.check(&d, n).unwrap(), Check::Hashed);
    }

    #[test]
    fn a_layout_store_keeps_no_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let (d, n) = store.put_bytes(b"x").unwrap();
        assert_eq!(store.check(&d, n).unwrap(), Check::Hashed);
        assert_eq!(store.check(&d, n).unwrap(), Check::Hashed);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["blobs"]);
    }

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
        let (_dirs, a, b) = two_stores();
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
        let (_dirs, a, b) = two_stores();
        let (d, _) = a.put_bytes(b"blob").unwrap();
        a.export_to(&d, &b).unwrap();
        a.export_to(&d, &b).unwrap();
        assert_eq!(b.read_bytes(&d).unwrap(), b"blob");
    }

    #[test]
    fn a_symlinked_blob_is_refused_and_never_enters_the_store() {
        let (_dirs, a, b) = two_stores();
        let (d, n) = a.put_bytes(b"layer").unwrap();
        std::fs::remove_file(a.path(&d)).unwrap();
        std::os::unix::fs::symlink("/dev/zero", a.path(&d)).unwrap();
        assert!(!a.verifies(&d, n));
        assert!(!a.contains(&d));
        let err = a
            .import_verified(&d, n, &b, "layer 1/1")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is a symbolic link, not a regular file"),
            "{err}"
        );
        assert!(
            std::fs::symlink_metadata(b.path(&d)).is_err(),
            "nothing stored"
        );
        let err = a.export_to(&d, &b).unwrap_err().to_string();
        assert!(err.contains("is a symbolic link"), "{err}");
        assert!(
            std::fs::symlink_metadata(b.path(&d)).is_err(),
            "nothing stored"
        );
    }

    #[test]
    fn a_symlink_in_the_destination_is_replaced_by_the_verified_blob() {
        let (_dirs, a, b) = two_stores();
        let (d, n) = a.put_bytes(b"layer").unwrap();
        std::os::unix::fs::symlink("/dev/zero", b.path(&d)).unwrap();
        a.import_verified(&d, n, &b, "layer").unwrap();
        assert!(std::fs::symlink_metadata(b.path(&d)).unwrap().is_file());
        assert_eq!(b.read_bytes(&d).unwrap(), b"layer");
        std::fs::remove_file(b.path(&d)).unwrap();
        std::os::unix::fs::symlink("/dev/zero", b.path(&d)).unwrap();
        a.export_to(&d, &b).unwrap();
        assert_eq!(b.read_bytes(&d).unwrap(), b"layer");
    }

    #[test]
    fn imports_check_the_declared_size_and_digest() {
        let (_dirs, a, b) = two_stores();
        let (d, n) = a.put_bytes(b"12345").unwrap();
        for declared in [n - 1, n + 1, 1 << 62] {
            let err = a
                .import_verified(&d, declared, &b, "layer 2/3")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("size mismatch for layer 2/3 {d}"))
                    && err.contains(&format!("expected {declared} bytes, got {n}")),
                "{err}"
            );
            let err = a
                .read_sized(&d, declared, 1 << 63, "image config")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("expected {declared} bytes, got {n}")),
                "{err}"
            );
        }
        let err = a
            .read_sized(&d, n, 4, "image config")
            .unwrap_err()
            .to_string();
        assert!(err.contains("is 5 bytes; more than 4"), "{err}");
        // Same size, other bytes: the digest check refuses it.
        std::fs::write(a.path(&d), b"54321").unwrap();
        let err = a
            .import_verified(&d, n, &b, "layer")
            .unwrap_err()
            .to_string();
        assert!(err.contains("digest mismatch"), "{err}");
        assert!(!b.contains(&d), "nothing stored");
    }

    #[test]
    fn own_blobs_are_linked_and_others_copied() {
        use std::os::unix::fs::MetadataExt;
        let base = tempfile::tempdir().unwrap();
        let a = BlobStore::open(&base.path().join("a")).unwrap();
        let b = BlobStore::open(&base.path().join("b")).unwrap();
        let (d, n) = a.put_bytes(b"mine").unwrap();
        a.import_verified(&d, n, &b, "layer").unwrap();
        let ino = |s: &BlobStore| std::fs::metadata(s.path(&d)).unwrap().ino();
        assert_eq!(ino(&a), ino(&b), "a file the caller owns is hard-linked");
        if nix::unistd::geteuid().is_root() {
            // Another user's file could be rewritten by them later: copied, not shared.
            let c = BlobStore::open(&base.path().join("c")).unwrap();
            let (e, m) = a.put_bytes(b"theirs").unwrap();
            std::os::unix::fs::chown(a.path(&e), Some(4242), Some(4242)).unwrap();
            a.import_verified(&e, m, &c, "layer").unwrap();
            assert_ne!(
                std::fs::metadata(a.path(&e)).unwrap().ino(),
                std::fs::metadata(c.path(&e)).unwrap().ino()
            );
            assert_eq!(c.read_bytes(&e).unwrap(), b"theirs");
        }
    }
}
