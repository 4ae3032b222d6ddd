//! `rootfs:FILE.tar[.gz|.xz|.zst]`: a root filesystem tarball becomes the base layer.
//! A gzip file is stored byte for byte (its digest is the file's); other compressions
//! are converted to gzip once, deterministically, since registries and runtimes expect
//! gzip (or zstd) layers and xz is not an OCI layer type.

use super::{BaseLayer, SourceError};
use crate::digest::{HashingReader, HashingWriter};
use crate::image::BlobStore;
use crate::layer::compress::{self, Compression};
use crate::layer::pack::MEDIA_TYPE_GZIP_LAYER;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

pub fn import(path: &Path, reference: &str, store: &BlobStore) -> Result<BaseLayer, SourceError> {
    let io = |source| SourceError::Io {
        reference: reference.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut reader = BufReader::new(file);
    let kind = compress::detect(reader.fill_buf().map_err(io)?);
    if kind == Compression::Gzip {
        let (digest, size) = store
            .put_reader(reader, None, &path.display().to_string())
            .map_err(|source| SourceError::Image {
                reference: reference.to_string(),
                source,
            })?;
        return Ok(BaseLayer {
            digest,
            size,
            media_type: MEDIA_TYPE_GZIP_LAYER.to_string(),
            diff_id: None,
        });
    }
    let layer_err = |source| SourceError::Layer {
        reference: reference.to_string(),
        source,
    };
    let image_err = |source| SourceError::Image {
        reference: reference.to_string(),
        source,
    };
    let tar = compress::decompressor(reader).map_err(layer_err)?;
    let mut tar = HashingReader::new(tar);
    let pending = store.create().map_err(image_err)?;
    let mut gz = compress::gzip_writer(HashingWriter::new(pending));
    std::io::copy(&mut tar, &mut gz).map_err(io)?;
    let (diff_id, _) = tar.drain_and_finish().map_err(io)?;
    let hashing = gz.finish().map_err(io)?;
    let (mut pending, digest, size) = hashing.finish();
    pending.flush().map_err(io)?;
    pending.commit(&digest).map_err(image_err)?;
    Ok(BaseLayer {
        digest,
        size,
        media_type: MEDIA_TYPE_GZIP_LAYER.to_string(),
        diff_id: Some(diff_id),
    })
}
