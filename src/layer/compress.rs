//! Layer compression: recognise gzip, zstd and xz by their magic numbers when reading (OCI
//! image-spec media-types.md lists gzip and zstd; xz appears in `rootfs:` tarballs), and
//! write gzip, zstd or plain tar deterministically (DESIGN decision 4).

use super::error::LayerError;
use super::pgzip::ParallelGzip;
use std::fmt;
use std::io::{self, BufRead, Cursor, Read, Write};
use std::str::FromStr;

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

/// The gzip level xbake writes by default: gzip's own default.
const GZIP_LEVEL: u32 = 6;

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

/// A gzip writer at xbake's default level on [`gzip_threads`] threads; see
/// [`layer_writer`].
pub fn gzip_writer<W: Write>(w: W) -> ParallelGzip<W> {
    ParallelGzip::new(w, GZIP_LEVEL, gzip_threads(0))
}

/// The threads gzip compresses on: `requested` if not 0, else one per CPU. Only speed
/// depends on it, never the bytes (see `pgzip`).
pub fn gzip_threads(requested: usize) -> usize {
    if requested > 0 {
        return requested;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How xbake compresses the layers it writes (`--compression`). Part of each layer's
/// identity: the same tar gives another blob, so another manifest digest, per value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerCompression {
    /// Block-parallel gzip (`pgzip`) at this level, 1-9.
    Gzip(u32),
    /// Single-threaded zstd at this level, 1-22: zstd's worker mode writes other bytes
    /// than its single-threaded one, and this crate is built without it; one thread
    /// keeps the bytes a function of data and level.
    Zstd(i32),
    /// The plain tar.
    None,
}

/// zstd's own default level.
const ZSTD_LEVEL: i32 = 3;
const ZSTD_MAX_LEVEL: i32 = 22;

impl Default for LayerCompression {
    fn default() -> Self {
        LayerCompression::Gzip(GZIP_LEVEL)
    }
}

impl LayerCompression {
    /// The OCI media type of a layer written this way (image-spec media-types.md).
    pub fn media_type(self) -> &'static str {
        match self {
            LayerCompression::Gzip(_) => "application/vnd.oci.image.layer.v1.tar+gzip",
            LayerCompression::Zstd(_) => "application/vnd.oci.image.layer.v1.tar+zstd",
            LayerCompression::None => "application/vnd.oci.image.layer.v1.tar",
        }
    }

    /// What the step cache key records: the setting and the version of the byte format
    /// behind it, so a change to either never reuses a layer with other bytes.
    pub fn key(self) -> String {
        match self {
            LayerCompression::Gzip(_) => format!("{self} {GZIP_FORMAT}"),
            LayerCompression::Zstd(_) => format!("{self} {ZSTD_FORMAT}"),
            LayerCompression::None => self.to_string(),
        }
    }
}

/// Names xbake's gzip byte format (pgzip, 128 KiB blocks, fixed header): change it
/// whenever the bytes for the same input change. Used in cache keys.
pub const GZIP_FORMAT: &str = "pgzip-128k-v1";
/// Names xbake's zstd byte format (single thread, checksum, no content size).
const ZSTD_FORMAT: &str = "zstd-st-v1";

impl fmt::Display for LayerCompression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerCompression::Gzip(level) => write!(f, "gzip:{level}"),
            LayerCompression::Zstd(level) => write!(f, "zstd:{level}"),
            LayerCompression::None => f.write_str("none"),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompressionSpecError {
    #[error("unknown compression {0:?}; use gzip[:LEVEL], zstd[:LEVEL] or none")]
    Unknown(String),
    #[error("compression {spec:?}: the level must be a whole number from {min} to {max}")]
    Level { spec: String, min: i64, max: i64 },
    #[error("compression {0:?}: none takes no level")]
    NoLevel(String),
}

impl FromStr for LayerCompression {
    type Err = CompressionSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (name, level) = match spec.split_once(':') {
            Some((name, level)) => (name, Some(level)),
            None => (spec, None),
        };
        let level_in = |min: i64, max: i64, default: i64| -> Result<i64, CompressionSpecError> {
            let Some(text) = level else {
                return Ok(default);
            };
            text.parse::<i64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| CompressionSpecError::Level {
                    spec: spec.to_string(),
                    min,
                    max,
                })
        };
        match name {
            "gzip" => Ok(LayerCompression::Gzip(
                level_in(1, 9, i64::from(GZIP_LEVEL))? as u32,
            )),
            "zstd" => Ok(LayerCompression::Zstd(level_in(
                1,
                i64::from(ZSTD_MAX_LEVEL),
                i64::from(ZSTD_LEVEL),
            )? as i32)),
            "none" if level.is_none() => Ok(LayerCompression::None),
            "none" => Err(CompressionSpecError::NoLevel(spec.to_string())),
            _ => Err(CompressionSpecError::Unknown(spec.to_string())),
        }
    }
}

/// A writer compressing as `compression` says, deterministically: the bytes depend on
/// the input and the setting only, not on write sizes or `gzip_threads` (0: one per
/// CPU). Finish it with [`LayerWriter::finish`].
pub fn layer_writer<W: Write>(
    w: W,
    compression: LayerCompression,
    gzip_threads: usize,
) -> io::Result<LayerWriter<W>> {
    Ok(match compression {
        LayerCompression::Gzip(level) => LayerWriter::Gzip(ParallelGzip::new(
            w,
            level,
            self::gzip_threads(gzip_threads),
        )),
        LayerCompression::Zstd(level) => {
            let mut encoder = zstd::stream::write::Encoder::new(w, level)?;
            // Pinned rather than left to the library's defaults: a checksum (as the zstd
            // tool writes) and no content size (a stream does not know it up front).
            encoder.include_checksum(true)?;
            encoder.include_contentsize(false)?;
            encoder.include_dictid(false)?;
            LayerWriter::Zstd(encoder)
        }
        LayerCompression::None => LayerWriter::None(w),
    })
}

pub enum LayerWriter<W: Write> {
    Gzip(ParallelGzip<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    None(W),
}

impl<W: Write> LayerWriter<W> {
    /// Ends the stream and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            LayerWriter::Gzip(w) => w.finish(),
            LayerWriter::Zstd(w) => w.finish(),
            LayerWriter::None(w) => Ok(w),
        }
    }
}

impl<W: Write> Write for LayerWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            LayerWriter::Gzip(w) => w.write(buf),
            LayerWriter::Zstd(w) => w.write(buf),
            LayerWriter::None(w) => w.write(buf),
        }
    }

    /// Does nothing to a compressor, whose flush would change its output
    /// ([`LayerWriter::finish`] completes the stream); a plain tar passes it on.
    fn flush(&mut self) -> io::Result<()> {
        match self {
            LayerWriter::None(w) => w.flush(),
            LayerWriter::Gzip(_) | LayerWriter::Zstd(_) => Ok(()),
        }
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
    fn compression_settings_parse_and_name_the_bad_value() {
        let ok = |s: &str| s.parse::<LayerCompression>().unwrap();
        assert_eq!(ok("gzip"), LayerCompression::Gzip(6));
        assert_eq!(ok("gzip:1"), LayerCompression::Gzip(1));
        assert_eq!(ok("gzip:9"), LayerCompression::Gzip(9));
        assert_eq!(ok("zstd"), LayerCompression::Zstd(3));
        assert_eq!(ok("zstd:22"), LayerCompression::Zstd(22));
        assert_eq!(ok("none"), LayerCompression::None);
        assert_eq!(LayerCompression::default(), LayerCompression::Gzip(6));
        assert_eq!(ok("zstd:19").to_string(), "zstd:19");
        let err = |s: &str| s.parse::<LayerCompression>().unwrap_err().to_string();
        assert_eq!(
            err("brotli"),
            "unknown compression \"brotli\"; use gzip[:LEVEL], zstd[:LEVEL] or none"
        );
        assert_eq!(
            err("gzip:0"),
            "compression \"gzip:0\": the level must be a whole number from 1 to 9"
        );
        assert_eq!(
            err("zstd:23"),
            "compression \"zstd:23\": the level must be a whole number from 1 to 22"
        );
        for bad in ["gzip:", "gzip:x", "zstd:-1", "zstd:3:4", "GZIP", ""] {
            assert!(bad.parse::<LayerCompression>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(err("none:1"), "compression \"none:1\": none takes no level");
    }

    #[test]
    fn every_layer_writer_is_independent_of_write_sizes_and_round_trips() {
        let data: Vec<u8> = (0..700_000u32)
            .map(|i| {
                if i % 3000 < 1500 {
                    (i % 7) as u8
                } else {
                    (i.wrapping_mul(2_654_435_761) >> 24) as u8
                }
            })
            .collect();
        for compression in [
            LayerCompression::Gzip(6),
            LayerCompression::Zstd(3),
            LayerCompression::Zstd(19),
            LayerCompression::None,
        ] {
            let encode = |chunk: usize, threads: usize| {
                let mut w = layer_writer(Vec::new(), compression, threads).unwrap();
                for part in data.chunks(chunk) {
                    w.write_all(part).unwrap();
                }
                w.flush().unwrap();
                w.finish().unwrap()
            };
            let reference = encode(8192, 1);
            assert_eq!(decompress_all(&reference), data, "{compression}");
            for (chunk, threads) in [(1, 2), (511, 1), (131_072, 3), (700_000, 8)] {
                assert!(
                    encode(chunk, threads) == reference,
                    "{compression}: writes of {chunk}, {threads} threads"
                );
            }
        }
    }

    #[test]
    fn zstd_frames_carry_a_checksum_and_no_content_size() {
        let mut w = layer_writer(Vec::new(), LayerCompression::Zstd(3), 1).unwrap();
        w.write_all(b"hello").unwrap();
        let out = w.finish().unwrap();
        assert_eq!(&out[..4], ZSTD_MAGIC);
        // Frame header descriptor (RFC 8878 3.1.1.1.1): checksum flag set, no dictionary
        // id, content size field absent unless single-segment (which needs the size).
        let descriptor = out[4];
        assert_eq!(descriptor & 0x04, 0x04, "content checksum flag");
        assert_eq!(descriptor & 0x03, 0, "dictionary id");
        assert_eq!(descriptor & 0xc0, 0, "frame content size");
        assert_eq!(descriptor & 0x20, 0, "single segment");
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
