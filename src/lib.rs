//! xbake: build multi-architecture OCI images from a declarative recipe, rootless and
//! without a container daemon. See DESIGN.md (shared) and README.md.

pub mod digest;
pub mod layer;
pub mod platform;
