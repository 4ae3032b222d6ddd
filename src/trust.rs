//! Trusting a file's sha256 by its inode, as git's index trusts a work-tree file: once the
//! bytes were hashed, a record keeps the digest with the file's stat (device, inode, size,
//! mode, mtime and ctime to the nanosecond), and later the file is re-hashed only when its
//! stat no longer matches. Any write to the file changes its mtime and ctime; restoring
//! the mtime (utimensat(2)), chmod, chown, rename and link changes ctime, which no
//! unprivileged call can set back (inode(7), "Last status change timestamp"). So an
//! in-place change, even one that keeps the size and the mtime, makes the record stale.
//! What a stat cannot see — bits rotting on the disk — a record cannot see either;
//! `xbake cache verify` re-hashes every blob for that.
//!
//! Records are small text files, one per file, written to a temporary name and renamed
//! into place after the hash matched; each carries its own checksum. A missing, torn,
//! garbled or foreign record means "not trusted": the file is hashed again. A killed
//! writer can only leave a record missing, never a record for bytes that were not hashed.

use crate::digest::{Digest, HashingReader};
use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// First word of every record; a new layout of the line gets a new version.
const MAGIC: &str = "xbake-trust-v2";

/// How close to its verification a timestamp may be and still be trusted: git's "racy"
/// problem (Documentation/technical/racy-git.txt). The kernel stamps files from a coarse
/// clock that moves once per tick (at most 10 ms at HZ=100) and a file system may round
/// further. A file changed within the same tick as its last recorded change keeps its
/// stat, so a record is only trusted when the file's mtime and ctime were older, by more
/// than a tick and the rounding, than the moment its hashing began; else the next use
/// hashes it once more (by then the timestamps are old) and records it again.
const RACY_NS: i128 = 100_000_000;
/// The same for file systems that keep whole seconds (ext3-sized inodes, FAT's two
/// seconds, some FUSE mounts): a timestamp with no nanoseconds is taken to be rounded.
const RACY_COARSE_NS: i128 = 3_000_000_000;

/// The stat fields that any change to a file's bytes or identity alters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mode: u32,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    /// The link count: kept so that a ctime moved by a link or an unlink elsewhere (an
    /// output layout removed with `rm -rf`) can be told from one moved by anything else.
    pub nlink: u64,
}

impl Stamp {
    pub fn of(meta: &Metadata) -> Stamp {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mode: meta.mode(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
            nlink: meta.nlink(),
        }
    }

    /// Whether `later` differs from this stamp at most in its link count and its ctime,
    /// moved forward (what a hard link, an unlink of another name, or a chown to the
    /// same owner does). Any write moves the mtime too, which must still match.
    fn only_ctime_moved(&self, later: &Stamp) -> bool {
        later.ctime_ns >= self.ctime_ns
            && Stamp {
                ctime_ns: self.ctime_ns,
                nlink: self.nlink,
                ..*later
            } == *self
    }

    /// Whether `later` differs from this stamp by its link count, with nothing else
    /// changed but a ctime moved forward: somebody (xbake, or `rm -rf` of an output
    /// layout that shared the file by hard link) added or removed another name of the
    /// same inode.
    fn only_links_changed(&self, later: &Stamp) -> bool {
        later.nlink != self.nlink && self.only_ctime_moved(later)
    }
}

fn racy_window(t_ns: i128) -> i128 {
    if t_ns % 1_000_000_000 == 0 {
        RACY_COARSE_NS
    } else {
        RACY_NS
    }
}

/// A digest that holds for a file as long as its stamp is unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub digest: Digest,
    pub stamp: Stamp,
    /// The clock (CLOCK_REALTIME, ns) just before the stamp was taken and the file read.
    pub verified_at_ns: i128,
    /// The ctime is not the one seen while hashing but a later one, taken right after
    /// xbake's own hard links or unlinks of the file ([`Records::carry`]).
    pub carried: bool,
}

impl Record {
    /// Whether the record vouches for a file that shows `now`: same stamp (or the same
    /// but for links added or removed, see [`Stamp::only_links_changed`]), and no
    /// timestamp so close to the hashing that a change in the same tick could hide.
    /// The cost of trusting a link-count change, as git's `core.trustctime=false` pays
    /// for all of them: an in-place rewrite of the same size that also restores the
    /// mtime (utimensat) and adds or removes a name goes unseen until
    /// `xbake cache verify`; no ordinary write does all three.
    pub fn vouches_for(&self, now: &Stamp) -> bool {
        let settled = |t: i128| t + racy_window(t) < self.verified_at_ns;
        (self.stamp == *now || self.stamp.only_links_changed(now))
            && settled(self.stamp.mtime_ns)
            && (self.carried || settled(self.stamp.ctime_ns))
    }

    fn body(&self) -> String {
        let s = &self.stamp;
        format!(
            "{MAGIC} {} {} {} {} {:o} {} {} {} {} {}",
            self.digest,
            s.dev,
            s.ino,
            s.size,
            s.mode,
            s.mtime_ns,
            s.ctime_ns,
            s.nlink,
            self.verified_at_ns,
            u8::from(self.carried)
        )
    }

    /// One line: the fields, then the sha256 of them (a torn or garbled file fails it).
    pub fn encode(&self) -> String {
        let body = self.body();
        format!("{body} {}\n", Digest::of(body.as_bytes()).hex())
    }

    pub fn decode(text: &str) -> Option<Record> {
        let line = text.strip_suffix('\n')?;
        let (body, check) = line.rsplit_once(' ')?;
        if Digest::of(body.as_bytes()).hex() != check {
            return None;
        }
        let f: Vec<&str> = body.split(' ').collect();
        let [
            magic,
            digest,
            dev,
            ino,
            size,
            mode,
            mtime,
            ctime,
            nlink,
            at,
            carried,
        ] = f[..]
        else {
            return None;
        };
        if magic != MAGIC {
            return None;
        }
        Some(Record {
            digest: digest.parse().ok()?,
            stamp: Stamp {
                dev: dev.parse().ok()?,
                ino: ino.parse().ok()?,
                size: size.parse().ok()?,
                mode: u32::from_str_radix(mode, 8).ok()?,
                mtime_ns: mtime.parse().ok()?,
                ctime_ns: ctime.parse().ok()?,
                nlink: nlink.parse().ok()?,
            },
            verified_at_ns: at.parse().ok()?,
            carried: match carried {
                "0" => false,
                "1" => true,
                _ => return None,
            },
        })
    }
}

/// How a digest was obtained: from a record (no byte read) or by hashing the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    Trusted,
    Hashed,
}

fn realtime_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        // A clock before 1970 makes every record racy, never a stale one trusted.
        .unwrap_or(i128::MIN / 2)
}

/// A folder of records, one per name (a blob's hex digest, a hashed path).
#[derive(Clone, Debug)]
pub struct Records {
    dir: PathBuf,
    clock: fn() -> i128,
}

impl Records {
    /// Opens (creating it if needed) the folder of records at `dir`.
    pub fn open(dir: &Path) -> io::Result<Records> {
        std::fs::create_dir_all(dir)?;
        Ok(Records {
            dir: dir.to_path_buf(),
            clock: realtime_ns,
        })
    }

    /// The same records read against another clock (tests: a clock in the future makes
    /// a file just written old enough to be trusted).
    pub fn with_clock(self, clock: fn() -> i128) -> Records {
        Records { clock, ..self }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The record under `name`; a missing or unreadable one is no record.
    pub fn get(&self, name: &str) -> Option<Record> {
        let text = std::fs::read_to_string(self.path(name)).ok()?;
        Record::decode(&text)
    }

    /// Writes a record: temporary file, then rename. Not synced: a record lost or
    /// garbled by a crash fails its checksum and the file is hashed again.
    pub fn put(&self, name: &str, record: &Record) -> io::Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)?;
        tmp.write_all(record.encode().as_bytes())?;
        tmp.persist(self.path(name)).map_err(|e| e.error)?;
        Ok(())
    }

    pub fn remove(&self, name: &str) {
        let _ = std::fs::remove_file(self.path(name));
    }

    /// The record under `name` if it vouches for `file` as it is now (and holds
    /// `expected`, when given).
    /// A record trusted across a change of links is carried to the stamp seen now, so
    /// that the next check compares exactly again.
    pub fn vouched(&self, name: &str, file: &File, expected: Option<&Digest>) -> Option<Record> {
        let now = Stamp::of(&file.metadata().ok()?);
        let record = self
            .get(name)
            .filter(|r| r.vouches_for(&now) && expected.is_none_or(|e| *e == r.digest))?;
        self.carry(name, &record, &now);
        Some(record)
    }

    /// The one trusted-digest check: the sha256 of the open `file`, from its record when
    /// that vouches for the file's stamp, else by draining `reader` (which reads `file`,
    /// perhaps bounded). A hash is recorded when it is `expected` (if given) and the
    /// file's stamp did not move while it was read; failing to write the record only
    /// means hashing again next time.
    pub fn digest(
        &self,
        name: &str,
        file: &File,
        expected: Option<&Digest>,
        reader: impl Read,
    ) -> io::Result<(Digest, Check)> {
        if let Some(record) = self.vouched(name, file, expected) {
            return Ok((record.digest, Check::Trusted));
        }
        // The clock first, then the stamp: a change after this moment gets a ctime the
        // racy window tells apart from the one recorded.
        let verified_at_ns = (self.clock)();
        let before = Stamp::of(&file.metadata()?);
        let (digest, _) = HashingReader::new(reader).drain_and_finish()?;
        let after = Stamp::of(&file.metadata()?);
        if before == after && expected.is_none_or(|e| *e == digest) {
            let record = Record {
                digest: digest.clone(),
                stamp: after,
                verified_at_ns,
                carried: false,
            };
            let _ = self.put(name, &record);
        }
        Ok((digest, Check::Hashed))
    }

    /// After xbake itself hard-linked, unlinked or chowned names of the file `name` is a
    /// record for (writing an output layout shares its blobs by hard link, replaces the
    /// old layout, and a root build hands the output back to the caller with lchown):
    /// `held` was the record that vouched for the file just before; if the file now
    /// differs from it only by a later ctime, the record moves to the new ctime. Without
    /// this every layout write would make every shared blob's record stale.
    /// The cost: a change in the same tick as the last link that also restores the
    /// mtime would go unseen (a write alone changes the mtime, which is still checked).
    pub fn carry(&self, name: &str, held: &Record, now: &Stamp) {
        if held.stamp == *now || !held.stamp.only_ctime_moved(now) {
            return;
        }
        let record = Record {
            stamp: *now,
            carried: true,
            ..held.clone()
        };
        let _ = self.put(name, &record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp() -> Stamp {
        Stamp {
            dev: 2049,
            ino: 77,
            size: 5,
            mode: 0o100644,
            mtime_ns: 1_700_000_000_123_456_789,
            ctime_ns: 1_700_000_000_223_456_789,
            nlink: 1,
        }
    }

    fn record(verified_at_ns: i128) -> Record {
        Record {
            digest: Digest::of(b"hello"),
            stamp: stamp(),
            verified_at_ns,
            carried: false,
        }
    }

    #[test]
    fn records_round_trip_and_torn_ones_are_refused() {
        let r = record(1_700_000_100_000_000_000);
        let text = r.encode();
        assert_eq!(Record::decode(&text), Some(r.clone()));
        // Every proper prefix is what a torn write could leave: none decodes.
        for n in 0..text.len() {
            assert_eq!(Record::decode(&text[..n]), None, "prefix of {n} bytes");
        }
        // One digit changed (a later size) with the old checksum: refused.
        let forged = text.replacen(" 5 ", " 6 ", 1);
        assert_ne!(forged, text);
        assert_eq!(Record::decode(&forged), None);
        assert_eq!(Record::decode("xbake-trust-v0 garbage\n"), None);
    }

    #[test]
    fn a_record_vouches_only_for_its_stamp_and_not_when_racy() {
        let s = stamp();
        let long_after = s.ctime_ns + 10_000_000_000;
        assert!(record(long_after).vouches_for(&s));
        for changed in [
            Stamp { ino: 78, ..s },
            Stamp { dev: 1, ..s },
            Stamp { size: 6, ..s },
            Stamp {
                mode: 0o100755,
                ..s
            },
            Stamp {
                mtime_ns: s.mtime_ns + 1,
                ..s
            },
            Stamp {
                ctime_ns: s.ctime_ns + 1,
                ..s
            },
        ] {
            assert!(!record(long_after).vouches_for(&changed), "{changed:?}");
        }
        // Another name added or removed (ctime forward, link count changed): trusted,
        // but not with any other change besides, nor with a ctime that went back.
        let relinked = Stamp {
            ctime_ns: s.ctime_ns + 1,
            nlink: 2,
            ..s
        };
        assert!(record(long_after).vouches_for(&relinked));
        for changed in [
            Stamp {
                mtime_ns: s.mtime_ns + 1,
                ..relinked
            },
            Stamp {
                size: 6,
                ..relinked
            },
            Stamp {
                ino: 78,
                ..relinked
            },
            Stamp {
                mode: 0o100755,
                ..relinked
            },
            Stamp {
                ctime_ns: s.ctime_ns - 1,
                ..relinked
            },
        ] {
            assert!(!record(long_after).vouches_for(&changed), "{changed:?}");
        }
        // Hashed within the racy window of the last change: not trusted later.
        assert!(!record(s.ctime_ns + RACY_NS / 2).vouches_for(&s));
        // A file system of whole seconds gets the wider window.
        let coarse = Stamp {
            mtime_ns: 1_700_000_000_000_000_000,
            ctime_ns: 1_700_000_000_000_000_000,
            ..s
        };
        let r = Record {
            stamp: coarse,
            ..record(coarse.ctime_ns + 2_000_000_000)
        };
        assert!(!r.vouches_for(&coarse));
        // A carried record has a fresh ctime by construction: only its mtime must be old.
        let carried = Record {
            carried: true,
            ..record(s.mtime_ns + 1_000_000_000)
        };
        let fresh_ctime = Stamp {
            ctime_ns: s.mtime_ns + 1_000_000_001,
            ..s
        };
        let carried = Record {
            stamp: fresh_ctime,
            ..carried
        };
        assert!(carried.vouches_for(&fresh_ctime));
        assert!(
            !Record {
                carried: false,
                ..carried
            }
            .vouches_for(&fresh_ctime)
        );
    }

    fn later() -> i128 {
        realtime_ns() + 60_000_000_000
    }

    #[test]
    fn a_file_is_hashed_once_then_trusted_until_its_inode_changes() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::open(&dir.path().join("r"))
            .unwrap()
            .with_clock(later);
        let path = dir.path().join("qemu");
        std::fs::write(&path, b"emulator v1").unwrap();
        let digest = |r: &Records| {
            let file = File::open(&path).unwrap();
            r.digest("qemu", &file, None, &file).unwrap()
        };
        assert_eq!(
            digest(&records),
            (Digest::of(b"emulator v1"), Check::Hashed)
        );
        assert_eq!(
            digest(&records),
            (Digest::of(b"emulator v1"), Check::Trusted)
        );
        // An upgrade in place, same size: hashed again, new digest. (In a later clock
        // tick than the first write: the same tick is the racy case, which the real
        // clock's window covers and this test's clock in the future does not.)
        std::thread::sleep(std::time::Duration::from_millis(25));
        std::fs::write(&path, b"emulator v2").unwrap();
        assert_eq!(
            digest(&records),
            (Digest::of(b"emulator v2"), Check::Hashed)
        );
        assert_eq!(digest(&records).1, Check::Trusted);
        // An upgrade as package managers do it: a new file renamed over the old one.
        let new = dir.path().join("qemu.new");
        std::fs::write(&new, b"emulator v3").unwrap();
        std::fs::rename(&new, &path).unwrap();
        assert_eq!(
            digest(&records),
            (Digest::of(b"emulator v3"), Check::Hashed)
        );
        // The real clock: the file was written just now, so its record is racy.
        let real = Records::open(&dir.path().join("r2")).unwrap();
        assert_eq!(digest(&real).1, Check::Hashed);
        assert_eq!(digest(&real).1, Check::Hashed, "racy: hashed again");
    }

    #[test]
    fn a_file_stays_trusted_when_another_name_of_it_comes_and_goes_but_not_when_written() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::open(&dir.path().join("r"))
            .unwrap()
            .with_clock(later);
        let path = dir.path().join("blob");
        std::fs::write(&path, b"layer bytes").unwrap();
        let digest = || {
            let file = File::open(&path).unwrap();
            records.digest("blob", &file, None, &file).unwrap()
        };
        assert_eq!(digest().1, Check::Hashed);
        // An output layout shares the blob by hard link, then `rm -rf` removes it.
        let link = dir.path().join("out-blob");
        std::fs::hard_link(&path, &link).unwrap();
        assert_eq!(digest(), (Digest::of(b"layer bytes"), Check::Trusted));
        std::fs::remove_file(&link).unwrap();
        assert_eq!(digest(), (Digest::of(b"layer bytes"), Check::Trusted));
        // The record followed the link count: it matches exactly again.
        let now = Stamp::of(&std::fs::metadata(&path).unwrap());
        assert_eq!(records.get("blob").unwrap().stamp, now);
        // A write through the other name, same size, moves the mtime: hashed again.
        std::thread::sleep(std::time::Duration::from_millis(25));
        std::fs::hard_link(&path, &link).unwrap();
        std::fs::write(&link, b"LAYER BYTES").unwrap();
        assert_eq!(digest(), (Digest::of(b"LAYER BYTES"), Check::Hashed));
    }

    #[test]
    fn a_record_of_another_digest_is_not_trusted_and_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::open(dir.path()).unwrap().with_clock(later);
        let path = dir.path().join("blob");
        std::fs::write(&path, b"bytes").unwrap();
        let file = File::open(&path).unwrap();
        let wrong = Digest::of(b"other");
        let (d, _) = records.digest("b", &file, Some(&wrong), &file).unwrap();
        assert_eq!(d, Digest::of(b"bytes"));
        assert!(records.get("b").is_none(), "a mismatch is never recorded");
        let right = Digest::of(b"bytes");
        let file = File::open(&path).unwrap();
        records.digest("b", &file, Some(&right), &file).unwrap();
        assert!(records.vouched("b", &file, Some(&right)).is_some());
        assert!(records.vouched("b", &file, Some(&wrong)).is_none());
    }

    #[test]
    fn carrying_follows_a_link_but_not_a_write() {
        let s = stamp();
        let held = record(s.ctime_ns + 10_000_000_000);
        let dir = tempfile::tempdir().unwrap();
        let records = Records::open(dir.path()).unwrap();
        let linked = Stamp {
            ctime_ns: s.ctime_ns + 5,
            ..s
        };
        records.carry("x", &held, &linked);
        let carried = records.get("x").unwrap();
        assert!(carried.carried && carried.vouches_for(&linked));
        let written = Stamp {
            mtime_ns: s.mtime_ns + 5,
            ..linked
        };
        records.carry("y", &held, &written);
        assert!(records.get("y").is_none());
        let older = Stamp {
            ctime_ns: s.ctime_ns - 5,
            ..s
        };
        records.carry("z", &held, &older);
        assert!(records.get("z").is_none());
    }
}
