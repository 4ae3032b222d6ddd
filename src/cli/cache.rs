//! `xbake cache ls`, `xbake cache prune` and `xbake cache verify`.

use super::{Failure, UsageError, default_cache_dir, reexec_in_namespace};
use crate::cache::mounts::{CacheMounts, MountEntry};
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
    /// List cached steps, most recently used first, then the run steps' cache mounts.
    Ls {
        /// As JSON.
        #[arg(long)]
        json: bool,
        /// Only the cache mounts (id, platform, size, last use).
        #[arg(long)]
        mounts: bool,
    },
    /// Remove the least recently used steps until the cache fits, then cache mounts,
    /// plus leftovers of interrupted builds. Waits for running builds.
    Prune {
        /// What may stay (e.g. 500M, 2G; default 0: everything goes).
        #[arg(long = "keep-bytes", value_name = "SIZE", default_value = "0")]
        keep_bytes: String,
        /// Leave the run steps' cache mounts alone (like `docker builder prune
        /// --filter type=regular`).
        #[arg(long = "keep-mounts")]
        keep_mounts: bool,
    },
    /// Re-hash every blob, trusted or not; remove the damaged ones (their steps run
    /// again). Waits for running builds.
    Verify,
}

pub fn run(args: CacheArgs) -> Result<u8, Failure> {
    let dir = args.cache_dir.unwrap_or_else(default_cache_dir);
    match args.command {
        CacheCommand::Ls { json, mounts: true } => {
            let mounts = list_mounts(&dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&mounts)?);
            } else {
                print_mounts(&mounts);
            }
            Ok(0)
        }
        CacheCommand::Ls {
            json,
            mounts: false,
        } => {
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
                    size(e.layer_bytes),
                    crate::build::timefmt::rfc3339(i64::try_from(e.last_used).unwrap_or(0)),
                );
            }
            println!(
                "{} steps, {} of blobs in {}",
                entries.len(),
                size(blob_bytes(&dir)),
                dir.display()
            );
            let mounts = list_mounts(&dir)?;
            if !mounts.is_empty() {
                println!();
                print_mounts(&mounts);
            }
            Ok(0)
        }
        CacheCommand::Prune {
            keep_bytes,
            keep_mounts,
        } => {
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
            let report = prune(&dir, keep, keep_mounts)?;
            println!(
                "removed {} steps and {} blobs ({}); {} kept",
                report.steps_removed,
                report.blobs_removed,
                size(report.bytes_removed),
                size(report.bytes_kept)
            );
            if report.snapshots_removed > 0 {
                println!(
                    "removed {} unpacked layer snapshots",
                    report.snapshots_removed
                );
            }
            if report.mounts_removed > 0 {
                println!(
                    "removed {} cache mounts ({})",
                    report.mounts_removed,
                    size(report.mount_bytes_removed)
                );
            }
            Ok(0)
        }
        CacheCommand::Verify => {
            // The layer snapshots it drops hold files of subordinate ids.
            if let Some(code) = reexec_in_namespace()? {
                return Ok(code);
            }
            let report = crate::cache::verify::verify_all(&dir)?;
            for digest in &report.removed {
                println!("removed damaged blob {digest}");
            }
            println!(
                "{} blobs checked, {} intact, {} damaged blobs removed",
                report.blobs,
                size(report.bytes),
                report.removed.len()
            );
            if report.snapshots_dropped > 0 {
                println!(
                    "dropped {} unpacked layer snapshots (made again from the blobs when needed)",
                    report.snapshots_dropped
                );
            }
            Ok(u8::from(!report.removed.is_empty()))
        }
    }
}

fn list_mounts(dir: &std::path::Path) -> Result<Vec<MountEntry>, Failure> {
    let cache = crate::cache::Cache::open(dir)?;
    Ok(CacheMounts::of(&cache).list())
}

fn print_mounts(mounts: &[MountEntry]) {
    println!(
        "{:<30} {:<16} {:>12}  {:<20}",
        "CACHE MOUNT", "PLATFORM", "SIZE", "LAST USED"
    );
    for m in mounts {
        let id: String = m.id.chars().take(30).collect();
        println!(
            "{id:<30} {:<16} {:>12}  {:<20}",
            m.platform,
            size(m.bytes),
            crate::build::timefmt::rfc3339(i64::try_from(m.last_used).unwrap_or(0)),
        );
    }
    let total: u64 = mounts.iter().map(|m| m.bytes).sum();
    println!("{} cache mounts, {}", mounts.len(), size(total));
}

/// `4.2 MiB`, `512 bytes`: sizes as the progress lines give them (`--json` keeps bytes).
fn size(bytes: u64) -> String {
    crate::layer::error::rounded_size(bytes)
}
