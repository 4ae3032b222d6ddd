//! `xbake diff A B`.

use super::{EXIT_FAILURE, Failure, UsageError};
use crate::audit::{compare, load};
use crate::image::reference::LayoutRef;
use clap::Args;

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// First image: `oci:DIR[:TAG]`.
    a: String,
    /// Second image: `oci:DIR[:TAG]`.
    b: String,
    /// Print the comparison as JSON.
    #[arg(long)]
    json: bool,
}

pub fn parse_image(text: &str) -> Result<LayoutRef, UsageError> {
    LayoutRef::parse(text)
        .ok_or_else(|| UsageError(format!("unsupported image {text:?}; use oci:DIR[:TAG]")))?
        .map_err(UsageError)
}

/// Exit 0 when identical, 1 when they differ (as diff(1)).
pub fn run(args: DiffArgs) -> Result<u8, Failure> {
    let a = load(&parse_image(&args.a)?)?;
    let b = load(&parse_image(&args.b)?)?;
    let report = compare(&a, &b, None)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(if report.identical { 0 } else { EXIT_FAILURE })
}
