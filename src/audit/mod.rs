//! Auditing images: loading every platform of an image, and comparing two of them down
//! to the files of each layer, for `xbake diff` and `xbake verify`.

pub mod align;
pub mod compare;
pub mod entries;
pub mod explain;
pub mod load;
pub mod open;
mod registry;

pub use compare::{Report, compare};
pub use load::{LoadedImage, load};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{what}: {source}")]
    Image {
        what: String,
        #[source]
        source: crate::image::ImageError,
    },
    #[error("{what}: {source}")]
    Layer {
        what: String,
        #[source]
        source: crate::layer::LayerError,
    },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
}
