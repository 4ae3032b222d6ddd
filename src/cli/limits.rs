//! `--memory`, `--pids-limit` and `--cpus`, shared by `xbake build` and `xbake run`
//! (podman's spellings and meanings).

use crate::sandbox::limits::{self, Limits};
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct LimitArgs {
    /// Memory limit of each RUN step, swap included: 512m, 2g, … (no limit by default).
    #[arg(short = 'm', long = "memory", value_name = "SIZE", value_parser = limits::parse_memory)]
    memory: Option<u64>,
    /// Processes and threads each RUN step may have; 0 or -1: no limit.
    #[arg(long = "pids-limit", value_name = "N", default_value = "4096", allow_hyphen_values = true, value_parser = |t: &str| limits::parse_pids(t).map(Count))]
    pids_limit: Count,
    /// CPUs each RUN step may use, as a fraction: 0.5, 1.5, … (no limit by default).
    #[arg(long = "cpus", value_name = "N", value_parser = |t: &str| limits::parse_cpus(t).map(Count))]
    cpus: Option<Count>,
}

/// A parsed value where `None` means "no limit" (clap reads a bare `Option` field as
/// "flag absent").
#[derive(Clone, Copy, Debug)]
struct Count(Option<u64>);

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            memory: self.memory,
            pids: self.pids_limit.0,
            millicpus: self.cpus.and_then(|c| c.0),
        }
    }
}

/// What a build that no one gave flags to gets (`xbake verify`'s rebuild).
pub fn defaults() -> Limits {
    Limits {
        pids: Some(limits::DEFAULT_PIDS),
        ..Limits::default()
    }
}
