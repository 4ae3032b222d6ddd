//! `rootfs:FILE.tar[.gz|.xz|.zst]`: a root filesystem tarball becomes the base layer.
//! A gzip file is stored byte for byte (its digest is the file's); other compressions
//! are converted to gzip once, deterministically, since registries and runtimes expect
//! gzip (or zstd) layers and xz is not an OCI layer type. Both results are remembered in
//! the cache, keyed by content, so a rebuild only hashes the file.

use super::{BaseLayer, SourceError};
use crate::cache::{Cache, CachedLayer, RecordKind};
use crate::digest::{Digest, HashingReader, HashingWriter};
use crate::image::store::PendingBlob;
use crate::layer::LayerError;
use crate::layer::compress::{self, Compression};
use crate::layer::pack::MEDIA_TYPE_GZIP_LAYER;
use crate::layer::unpack::{UnpackBudget, check_layer};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

/// Imports the tarball at `path`; what it would unpack to must fit in `unpack_limit`
/// (the build's `--max-unpack-size`), checked while it is read, before anything is
/// stored, so a decompression bomb costs one header's worth of work and leaves nothing
/// in the cache.
pub fn import(
    path: &Path,
    reference: &str,
    cache: &Cache,
    unpack_limit: u64,
) -> Result<BaseLayer, SourceError> {
    let io = |source| SourceError::Io {
        reference: reference.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let image_err = |source| SourceError::Image {
        reference: reference.to_string(),
        source,
    };
    let open = || std::fs::File::open(path).map_err(io);
    // Hashed only when the tarball's inode changed since the cache last hashed it.
    let (file_digest, file_size, _) = cache.file_digest(path).map_err(io)?;
    // An empty file is no tar archive (one holds at least its end-of-archive blocks); an
    // empty base would only show up later as "executing /bin/sh: No such file".
    if file_size == 0 {
        return Err(SourceError::Invalid {
            reference: reference.to_string(),
            message: format!("{} is empty, not a root filesystem tarball", path.display()),
        });
    }
    // The second read is hashed too, so nothing recorded under `file_digest` can come
    // from a file that changed in between.
    let mut reader = BufReader::new(HashingReader::new(open()?));
    let kind = compress::detect(reader.fill_buf().map_err(io)?);
    let same_file = |reader: BufReader<HashingReader<std::fs::File>>| {
        let (read_digest, _) = reader.into_inner().drain_and_finish().map_err(io)?;
        if read_digest != file_digest {
            return Err(io(std::io::Error::other(
                "the file changed while it was being read; try again",
            )));
        }
        Ok(())
    };
    let mut budget = UnpackBudget::new(unpack_limit);

    if kind == Compression::Gzip {
        let store = cache.store();
        let recorded = cache.get::<Digest>(RecordKind::DiffId, &file_digest);
        let diff_id = match &recorded {
            Some(d) => {
                cache.touch(RecordKind::DiffId, &file_digest);
                d.clone()
            }
            // Checked before the blob is stored: a refused tarball leaves nothing behind.
            None => {
                let tar = compress::decompressor(&mut reader).map_err(layer_err(reference))?;
                let d = check_layer(tar, &mut budget).map_err(layer_err(reference))?;
                same_file(reader)?;
                d
            }
        };
        if !cache.blob_verifies(&file_digest, file_size) {
            // Checked against the digest just computed: a file changing under us fails.
            store
                .put_reader(
                    open()?,
                    Some((&file_digest, file_size)),
                    &path.display().to_string(),
                )
                .map_err(image_err)?;
        }
        if recorded.is_none() {
            cache
                .put(RecordKind::DiffId, &file_digest, &diff_id)
                .map_err(|e| io(std::io::Error::other(e.to_string())))?;
        }
        return Ok(BaseLayer {
            digest: file_digest,
            size: file_size,
            media_type: MEDIA_TYPE_GZIP_LAYER.to_string(),
            diff_id,
        });
    }

    // The conversion's bytes depend on xbake's gzip format too: a record made by another
    // format would give another digest than converting afresh.
    let import_key = Digest::of(format!("{} {file_digest}", compress::GZIP_FORMAT).as_bytes());
    if let Some(done) = cache.get::<CachedLayer>(RecordKind::Import, &import_key)
        && cache.blob_verifies(&done.digest, done.size)
    {
        cache.touch(RecordKind::Import, &import_key);
        return Ok(done);
    }
    let (pending, layer) = convert(&mut reader, cache, reference, path, &mut budget)?;
    same_file(reader)?;
    pending.commit(&layer.digest).map_err(image_err)?;
    cache
        .put(RecordKind::Import, &import_key, &layer)
        .map_err(|e| io(std::io::Error::other(e.to_string())))?;
    Ok(layer)
}

fn layer_err(reference: &str) -> impl Fn(LayerError) -> SourceError + '_ {
    move |source| SourceError::Layer {
        reference: reference.to_string(),
        source,
    }
}

/// One pass: decompress → check (entries, budget, diff_id) → deterministic gzip → sha256
/// → a pending blob, committed by the caller once the file is known not to have changed.
/// A refused tarball stops the pass; the pending blob is then dropped, which removes it.
fn convert(
    reader: &mut impl BufRead,
    cache: &Cache,
    reference: &str,
    path: &Path,
    budget: &mut UnpackBudget,
) -> Result<(PendingBlob, BaseLayer), SourceError> {
    let io = |source| SourceError::Io {
        reference: reference.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let tar = compress::decompressor(reader).map_err(layer_err(reference))?;
    let pending = cache
        .store()
        .create()
        .map_err(|source| SourceError::Image {
            reference: reference.to_string(),
            source,
        })?;
    let mut gz = compress::gzip_writer(HashingWriter::new(pending));
    let diff_id = check_layer(
        Tee {
            from: tar,
            to: &mut gz,
        },
        budget,
    )
    .map_err(layer_err(reference))?;
    let hashing = gz.finish().map_err(io)?;
    let (mut pending, digest, size) = hashing.finish();
    pending.flush().map_err(io)?;
    Ok((
        pending,
        BaseLayer {
            digest,
            size,
            media_type: MEDIA_TYPE_GZIP_LAYER.to_string(),
            diff_id,
        },
    ))
}

/// Copies every byte read from `from` into `to`: the check and the conversion share one
/// decompression.
struct Tee<R, W> {
    from: R,
    to: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.from.read(buf)?;
        self.to.write_all(&buf[..n])?;
        Ok(n)
    }
}
