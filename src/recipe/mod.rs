//! The recipe: its YAML schema (v1), validation with `file:line:column` in every error,
//! and expansion of `${TARGETARCH}`-style variables and build args per platform.
//!
//! ```text
//! recipe.yaml ──Recipe::load──▶ Recipe (checked, unexpanded) ──plan(platform, args)──▶ Plan
//! ```
//! Loading judges everything that does not depend on the platform; planning expands
//! and judges the rest. Neither touches the disk beyond reading the recipe:
//! [`resolve_copy_sources`] does, when the builder is about to copy.
//!
//! Choices the format leaves open, settled here:
//! - `mode:` is read as octal text whether quoted or not (`0644`, `644`, `"0644"` and
//!   `0o644` are all rw-r--r--); a YAML integer is never reinterpreted.
//! - `entrypoint:`/`cmd:` given as a string become `["/bin/sh", "-c", STRING]`.
//! - `exposed_ports:` are stored as `PORT/proto` (`8080` → `8080/tcp`).
//! - An `args:` entry with no value (`VERSION:`) declares the arg with an empty default.
//! - Build args may not use the names xbake sets (TARGET*, BUILD*, GOOS, GOARCH, GOARM).
//! - `platforms:` and `copy:` take a string or a list of strings.
mod base;
mod copy_sources;
mod error;
mod expand;
mod fields;
mod plan;

pub use base::BaseRef;
pub use copy_sources::resolve_copy_sources;
pub use error::{Location, Problem, RecipeError};
pub use plan::{ConfigSpec, Network, Plan, PlanStep, RunCommand, StepKind, UnknownNetwork};
