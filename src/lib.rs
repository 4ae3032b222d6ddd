//! xbake: build multi-architecture OCI images from a declarative recipe, rootless and
//! without a container daemon. See DESIGN.md (shared) and README.md.

pub mod attest;
pub mod audit;
pub mod build;
pub mod cache;
pub mod cli;
pub mod context;
pub mod digest;
pub mod emulation;
pub mod image;
pub mod layer;
pub mod normalize;
pub mod platform;
pub mod recipe;
pub mod registry;
pub mod sandbox;
pub mod sign;
pub mod source;
pub mod trust;
