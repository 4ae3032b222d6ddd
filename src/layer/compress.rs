//! Layer compression: recognise gzip, zstd and xz by their magic numbers when reading (OCI
//! image-spec media-types.md lists gzip and zstd; xz appears in `rootfs:` tarballs), and
//! write gzip deterministically (DESIGN decision 4).

use super::error::LayerError;
use flate2::GzBuilder;
use std::io::{self, BufRead, Cursor, Read, Write};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Xz,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
        }
    }
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
/// Longest magic number above.
const MAGIC_LEN: usize = 6;

/// The gzip level xbake writes: gzip's own default, a fixed part of the output's identity.
const GZIP_LEVEL: u32 = 6;
/// RFC 1952 OS byte 255, "unknown": the byte must not depend on the build host.
const GZIP_OS_UNKNOWN: u8 = 255;

/// The compression a stream starting with `first_bytes` uses. Anything unrecognised is
/// taken as an uncompressed tar (whose first bytes are a file name).
pub fn detect(first_bytes: &[u8]) -> Compression {
    if first_bytes.starts_with(GZIP_MAGIC) {
        Compression::Gzip
    } else if first_bytes.starts_with(ZSTD_MAGIC) {
        Compression::Zstd
    } else if first_bytes.starts_with(XZ_MAGIC) {
        Compression::Xz
    } else {
        Compression::None
    }
}

/// A reader of the decompressed stream. The magic number is read first and put back in
/// front of the stream, so no byte is lost whatever the reader's buffering (a single
/// `fill_buf` could return fewer bytes than the longest magic on a pipe or a socket).
/// Gzip is read as a multi-member stream, as `gzip -d` does.
pub fn decompressor<'a>(mut r: impl BufRead + 'a) -> Result<Box<dyn Read + 'a>, LayerError> {
    let mut magic = [0u8; MAGIC_LEN];
    let mut len = 0;
    while len < MAGIC_LEN {
        match r.read(&mut magic[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(LayerError::Tar {
                    after: None,
                    source: e,
                });
            }
        }
    }
    let compression = detect(&magic[..len]);
    let stream = Cursor::new(magic[..len].to_vec()).chain(r);
    Ok(match compression {
        Compression::None => Box::new(stream),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(stream)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(stream).map_err(
            |e| LayerError::Decompress {
                format: compression.name(),
                source: e,
            },
        )?),
        Compression::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(stream)),
    })
}

/// A gzip writer whose output depends only on the input bytes: no file name, mtime 0, OS
/// byte 255, a fixed level (umoci and BuildKit pin the same header fields), and input fed
/// to the compressor in fixed-size blocks. The last point matters: deflate's output
/// depends on how its input was split into calls (measured here: the same tar gave gzip
/// streams 7 bytes apart when copied from an xz and from a plain file), so without
/// blocking, a layer's digest would depend on the reader's buffer sizes.
pub fn gzip_writer<W: Write>(w: W) -> GzipWriter<W> {
    GzipWriter {
        encoder: GzBuilder::new()
            .mtime(0)
            .operating_system(GZIP_OS_UNKNOWN)
            .write(w, flate2::Compression::new(GZIP_LEVEL)),
        block: Vec::with_capacity(GZIP_BLOCK),
    }
}

/// Input block size for [`GzipWriter`]; part of the output format, never change it.
const GZIP_BLOCK: usize = 64 * 1024;

pub struct GzipWriter<W: Write> {
    encoder: flate2::write::GzEncoder<W>,
    block: Vec<u8>,
}

impl<W: Write> GzipWriter<W> {
    /// Compresses what is left and returns the inner writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.encoder.write_all(&self.block)?;
        self.encoder.finish()
    }
}

impl<W: Write> Write for GzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = GZIP_BLOCK - self.block.len();
        let n = room.min(buf.len());
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == GZIP_BLOCK {
            self.encoder.write_all(&self.block)?;
            self.block.clear();
        }
        Ok(n)
    }

    /// Deliberately does nothing: a deflate flush would change the output. The stream
    /// is complete after [`GzipWriter::finish`].
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_output_does_not_depend_on_write_sizes() {
        let data: Vec<u8> = (0..500_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let encode = |chunk: usize| {
            let mut w = gzip_writer(Vec::new());
            for part in data.chunks(chunk) {
                w.write_all(part).unwrap();
            }
            w.finish().unwrap()
        };
        let reference = encode(8192);
        for chunk in [1, 511, 4096, 65_536, 100_000, 500_000] {
            assert_eq!(encode(chunk), reference, "chunk size {chunk}");
        }
    }
    use std::io::BufReader;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut w = gzip_writer(Vec::new());
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn decompress_all(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        decompressor(bytes).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn detects_each_format_by_magic() {
        assert_eq!(detect(&gzip(b"x")), Compression::Gzip);
        assert_eq!(
            detect(&zstd::encode_all(&b"x"[..], 3).unwrap()),
            Compression::Zstd
        );
        let mut xz = Vec::new();
        xz2::read::XzEncoder::new(&b"x"[..], 6)
            .read_to_end(&mut xz)
            .unwrap();
        assert_eq!(detect(&xz), Compression::Xz);
        assert_eq!(detect(b"etc/passwd\0\0"), Compression::None);
        assert_eq!(detect(b""), Compression::None);
        assert_eq!(detect(&[0x1f]), Compression::None);
    }

    #[test]
    fn decompressor_round_trips_every_format_without_losing_bytes() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut xz = Vec::new();
        xz2::read::XzEncoder::new(&data[..], 6)
            .read_to_end(&mut xz)
            .unwrap();
        for encoded in [
            data.clone(),
            gzip(&data),
            zstd::encode_all(&data[..], 3).unwrap(),
            xz,
        ] {
            assert_eq!(decompress_all(&encoded), data);
            // A reader that hands out one byte at a time must not confuse the detection.
            let trickle = BufReader::with_capacity(1, &encoded[..]);
            let mut out = Vec::new();
            decompressor(trickle)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data);
        }
        assert_eq!(decompress_all(b"ab"), b"ab");
    }

    #[test]
    fn gzip_members_are_concatenated() {
        let mut both = gzip(b"hello ");
        both.extend(gzip(b"world"));
        assert_eq!(decompress_all(&both), b"hello world");
    }

    #[test]
    fn gzip_output_is_deterministic_with_no_name_and_no_mtime() {
        let data = vec![42u8; 50_000];
        let a = gzip(&data);
        let b = gzip(&data);
        assert_eq!(a, b);
        assert_eq!(&a[..3], &[0x1f, 0x8b, 8], "gzip magic and deflate method");
        assert_eq!(a[3] & 0x08, 0, "FNAME flag set: a file name is stored");
        assert_eq!(a[3], 0, "no optional header fields at all");
        assert_eq!(&a[4..8], &[0, 0, 0, 0], "mtime must be 0");
        assert_eq!(a[9], 255, "OS byte must be 255 (unknown)");
    }
}
