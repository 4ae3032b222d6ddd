//! Hand-built tar archives for the hostile-archive tests: headers whose fields lie
//! (a symlink with data, a size a bomb claims), PAX records written byte by byte, old GNU
//! sparse entries, and decompression bombs. Shared by the integration tests
//! (tests/hostile_tars.rs) and the layer module's unit tests (src/layer/tests), which
//! include this file by path, so it uses nothing but std and the package's dependencies.
#![allow(dead_code)]

use std::io::{Read, Write};

const BLOCK: usize = 512;

/// An archive being built, one raw entry at a time.
#[derive(Default)]
pub struct RawTar {
    bytes: Vec<u8>,
}

/// `"%d %s=%s\n"` with the length that counts itself (POSIX pax, "pax Extended Header").
pub fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // space, '=', newline
    let mut len = body + body.to_string().len();
    if len.to_string().len() != body.to_string().len() {
        len += 1;
    }
    let mut record = format!("{len} ").into_bytes();
    record.extend_from_slice(key);
    record.push(b'=');
    record.extend_from_slice(value);
    record.push(b'\n');
    assert_eq!(record.len(), len);
    record
}

impl RawTar {
    pub fn new() -> Self {
        RawTar::default()
    }

    /// A header of type `kind` named `name` whose size field says `size`, followed by
    /// `data` (padded to a block). `size` and `data.len()` may disagree on purpose.
    pub fn raw(mut self, kind: u8, name: &[u8], size: u64, data: &[u8], link: &[u8]) -> Self {
        let mut header = tar::Header::new_ustar();
        header.as_mut_bytes()[..name.len()].copy_from_slice(name);
        header.as_mut_bytes()[157..157 + link.len()].copy_from_slice(link);
        header.set_mode(if kind == b'2' { 0o777 } else { 0o644 });
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_000_000);
        header.set_size(size);
        header.as_mut_bytes()[156] = kind;
        header.set_cksum();
        self.bytes.extend_from_slice(header.as_bytes());
        self.data(data)
    }

    fn data(mut self, data: &[u8]) -> Self {
        self.bytes.extend_from_slice(data);
        let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn file(self, name: &str, data: &[u8]) -> Self {
        self.raw(b'0', name.as_bytes(), data.len() as u64, data, b"")
    }

    pub fn dir(self, name: &str) -> Self {
        self.raw(b'5', name.as_bytes(), 0, b"", b"")
    }

    /// A PAX extended header (`x`) for the next entry, or a global one (`g`).
    pub fn pax(self, kind: u8, records: &[(&[u8], &[u8])]) -> Self {
        let body: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
        self.raw(kind, b"PaxHeaders/x", body.len() as u64, &body, b"")
    }

    /// An old GNU sparse entry (type `S`, as `tar --sparse` writes it by default): the
    /// chunks' data is stored one after the other; the rest of `real_size` is holes.
    pub fn sparse(mut self, name: &str, real_size: u64, chunks: &[(u64, &[u8])]) -> Self {
        assert!(
            chunks.len() <= 4,
            "extension blocks not needed by the tests"
        );
        let mut header = tar::Header::new_gnu();
        header.as_mut_bytes()[..name.len()].copy_from_slice(name.as_bytes());
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_000_000);
        let stored: usize = chunks.iter().map(|(_, d)| d.len()).sum();
        header.set_size(stored as u64);
        header.set_entry_type(tar::EntryType::GNUSparse);
        let gnu = header.as_gnu_mut().expect("a GNU header");
        for (slot, (offset, data)) in gnu.sparse.iter_mut().zip(chunks) {
            slot.set_offset(*offset);
            slot.set_length(data.len() as u64);
        }
        gnu.set_real_size(real_size);
        header.set_cksum();
        self.bytes.extend_from_slice(header.as_bytes());
        let data: Vec<u8> = chunks.iter().flat_map(|(_, d)| d.to_vec()).collect();
        self.data(&data)
    }

    /// The archive with its end-of-archive marker.
    pub fn finish(mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&[0u8; 2 * BLOCK]);
        self.bytes
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Bomb {
    Gzip,
    Zstd,
    Xz,
}

/// A compressed tar holding one file `zeros` of `claimed` zero bytes (a multiple of 16
/// MiB), built without ever holding or compressing more than 16 MiB: every format here
/// decodes concatenated members (gzip) or frames/streams (zstd, xz) as one stream, so
/// one compressed chunk of zeros is repeated. 10 GiB is about 10 MiB of gzip, 40 KiB of
/// zstd, 1.5 MiB of xz.
pub fn bomb(format: Bomb, claimed: u64) -> Vec<u8> {
    let header = RawTar::new().raw(b'0', b"zeros", claimed, b"", b"").bytes;
    zeros_between(format, &header, claimed, &[0u8; 2 * BLOCK])
}

/// `size` zero bytes compressed (a multiple of 16 MiB), the naive bomb: as a tar it is
/// an empty archive (its first zero block is the end-of-archive marker) followed by
/// padding, so only a bound on the stream's length stops a reader that hashes it whole.
pub fn zeros_bomb(format: Bomb, size: u64) -> Vec<u8> {
    zeros_between(format, &[], size, &[])
}

/// `head`, `zeros` zero bytes, then `tail`, as one compressed stream.
fn zeros_between(format: Bomb, head: &[u8], zeros: u64, tail: &[u8]) -> Vec<u8> {
    const CHUNK: u64 = 16 << 20;
    assert_eq!(zeros % CHUNK, 0);
    let chunk = vec![0u8; CHUNK as usize];
    let compress = |data: &[u8]| -> Vec<u8> {
        match format {
            Bomb::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                gz.write_all(data).unwrap();
                gz.finish().unwrap()
            }
            Bomb::Zstd => zstd::encode_all(data, 19).unwrap(),
            Bomb::Xz => {
                let mut out = Vec::new();
                xz2::read::XzEncoder::new(data, 9)
                    .read_to_end(&mut out)
                    .unwrap();
                out
            }
        }
    };
    let piece = compress(&chunk);
    let mut out = if head.is_empty() {
        Vec::new()
    } else {
        compress(head)
    };
    for _ in 0..zeros / CHUNK {
        out.extend_from_slice(&piece);
    }
    if !tail.is_empty() {
        out.extend(compress(tail));
    }
    out
}

/// The members Python's tarfile lists in `archive` (one `name type size` line each, the
/// name as a Python bytes literal), or None when python3 is not installed.
pub fn python_listing(archive: &std::path::Path) -> Option<Result<Vec<String>, String>> {
    const SCRIPT: &str = "import sys, tarfile\n\
        for m in tarfile.open(sys.argv[1], encoding='utf-8', errors='surrogateescape'):\n\
        \x20   print(repr(m.name.encode('utf-8', 'surrogateescape')), m.type.decode(), m.size)\n";
    let out = std::process::Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(archive)
        .output()
        .ok()?;
    Some(if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    })
}
