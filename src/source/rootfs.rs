//! `rootfs:FILE.tar[.gz|.xz|.zst]`: a root filesystem tarball becomes the base layer.
//! A gzip file is stored byte for byte (its digest is the file's); other compressions
//! are converted to gzip once, deterministically, since registries and runtimes expect
//! gzip (or zstd) layers and xz is not an OCI layer type. Both results are remembered in
//! the cache, keyed by content, so a rebuild only hashes the file.

use super::{BaseLayer, SourceError};
use crate::cache::{Cache, CachedLayer, RecordKind};
use crate::digest::{Digest, HashingReader, HashingWriter};
use crate::layer::compress::{self, Compression};
use crate::layer::pack::MEDIA_TYPE_GZIP_LAYER;
use crate::layer::unpack::check_layer;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

pub fn import(path: &Path, reference: &str, cache: &Cache) -> Result<BaseLayer, SourceError> {
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
    let (file_digest, file_size) = HashingReader::new(open()?).drain_and_finish().map_err(io)?;
    // The second read is hashed too, so nothing recorded under `file_digest` can come
    // from a file that changed in between.
    let mut reader = BufReader::new(HashingReader::new(open()?));
    let kind = compress::detect(reader.fill_buf().map_err(io)?);

    if kind == Compression::Gzip {
        let store = cache.store();
        if !cache.blob_verifies(&file_digest, file_size) {
            // Checked against the digest just computed: a file changing under us fails.
            store
                .put_reader(
                    reader,
                    Some((&file_digest, file_size)),
                    &path.display().to_string(),
                )
                .map_err(image_err)?;
        }
        let diff_id = match cache.get::<Digest>(RecordKind::DiffId, &file_digest) {
            Some(d) => {
                cache.touch(RecordKind::DiffId, &file_digest);
                d
            }
            None => {
                let d = check(store.open_blob(&file_digest).map_err(image_err)?, reference)?;
                cache
                    .put(RecordKind::DiffId, &file_digest, &d)
                    .map_err(|e| io(std::io::Error::other(e.to_string())))?;
                d
            }
        };
        return Ok(BaseLayer {
            digest: file_digest,
            size: file_size,
            media_type: MEDIA_TYPE_GZIP_LAYER.to_string(),
            diff_id,
        });
    }

    if let Some(done) = cache.get::<CachedLayer>(RecordKind::Import, &file_digest)
        && cache.blob_verifies(&done.digest, done.size)
    {
        cache.touch(RecordKind::Import, &file_digest);
        return Ok(done);
    }
    let layer = convert(&mut reader, cache, reference, path)?;
    let (read_digest, _) = reader.into_inner().drain_and_finish().map_err(io)?;
    if read_digest != file_digest {
        return Err(io(std::io::Error::other(
            "the file changed while it was being read; try again",
        )));
    }
    check(
        cache.store().open_blob(&layer.digest).map_err(image_err)?,
        reference,
    )?;
    cache
        .put(RecordKind::Import, &file_digest, &layer)
        .map_err(|e| io(std::io::Error::other(e.to_string())))?;
    Ok(layer)
}

/// Refuses a hostile tarball (entries outside the root) before it becomes a layer, and
/// computes its diff_id on the way. The result is cached with the diff_id record, so
/// each tarball is checked once.
fn check(blob: std::fs::File, reference: &str) -> Result<Digest, SourceError> {
    let layer_err = |source| SourceError::Layer {
        reference: reference.to_string(),
        source,
    };
    let tar = compress::decompressor(BufReader::new(blob)).map_err(layer_err)?;
    check_layer(tar).map_err(layer_err)
}

/// One pass: decompress → sha256 (diff_id) → deterministic gzip → sha256 → store.
fn convert(
    reader: &mut impl BufRead,
    cache: &Cache,
    reference: &str,
    path: &Path,
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
    let tar = compress::decompressor(reader).map_err(|source| SourceError::Layer {
        reference: reference.to_string(),
        source,
    })?;
    let mut tar = HashingReader::new(tar);
    let pending = cache.store().create().map_err(image_err)?;
    let mut gz = compress::gzip_writer(HashingWriter::new(pending));
    std::io::copy(&mut tar as &mut dyn Read, &mut gz).map_err(io)?;
    let (diff_id, _) = tar.drain_and_finish().map_err(io)?;
    let hashing = gz.finish().map_err(io)?;
    let (mut pending, digest, size) = hashing.finish();
    pending.flush().map_err(io)?;
    pending.commit(&digest).map_err(image_err)?;
    Ok(BaseLayer {
        digest,
        size,
        media_type: MEDIA_TYPE_GZIP_LAYER.to_string(),
        diff_id,
    })
}
