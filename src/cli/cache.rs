//! `xbake cache ls` and `xbake cache prune`.

use super::{Failure, UsageError, default_cache_dir, reexec_in_namespace};
use crate::cache::prune::{blob_bytes, list, parse_size, prune};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct CacheArgs {
    #[command(subcommand)]
    command: CacheCommand,
    /// The cache folder (default: $XDG_CACHE_HOME/xbake).
    #[arg(long = "cache-dir", value_name = "DIR", global = true)]
    cache_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum CacheCommand {
    /// List cached steps, most recently used first.
    Ls {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove the least recently used steps until the cache fits, plus leftovers of
    /// interrupted builds. Waits for running builds.
    Prune {
        /// What may stay (e.g. 500M, 2G; default 0: everything goes).
        #[arg(long = "keep-bytes", value_name = "SIZE", default_value = "0")]
        keep_bytes: String,
    },
}

pub fn run(args: CacheArgs) -> Result<u8, Failure> {
    let dir = args.cache_dir.unwrap_or_else(default_cache_dir);
    match args.command {
        CacheCommand::Ls { json } => {
            let entries = list(&dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
                return Ok(0);
            }
            println!(
                "{:<14} {:<16} {:>10}  {:<20} STEP",
                "KEY", "PLATFORM", "LAYER", "LAST USED"
            );
            for e in &entries {
                let step: String = e.created_by.chars().take(60).collect();
                println!(
                    "{:<14} {:<16} {:>10}  {:<20} {step}",
                    &e.key.hex()[..12],
                    e.platform,
                    e.layer_bytes,
                    crate::build::timefmt::rfc3339(i64::try_from(e.last_used).unwrap_or(0)),
                );
            }
            println!(
                "{} steps, {} bytes of blobs in {}",
                entries.len(),
                blob_bytes(&dir),
                dir.display()
            );
            Ok(0)
        }
        CacheCommand::Prune { keep_bytes } => {
            let keep = parse_size(&keep_bytes).ok_or_else(|| {
                UsageError(format!(
                    "--keep-bytes {keep_bytes:?}: expected a size like 500M or 2G"
                ))
            })?;
            // Workspaces of killed rootless builds hold files of subordinate ids, which
            // only the build namespace may delete.
            if let Some(code) = reexec_in_namespace()? {
                return Ok(code);
            }
            let report = prune(&dir, keep)?;
            println!(
                "removed {} steps and {} blobs ({} bytes); {} bytes kept",
                report.steps_removed, report.blobs_removed, report.bytes_removed, report.bytes_kept
            );
            Ok(0)
        }
    }
}
