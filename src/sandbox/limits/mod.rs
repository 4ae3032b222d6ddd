//! Resource limits for RUN steps and `xbake run`: memory, processes and CPU time, as
//! podman's `--memory`, `--pids-limit` and `--cpus`. Each step gets its own cgroup when
//! the build could make one (cgroup.rs); what no cgroup covers falls back to rlimits
//! (rlimit.rs) where an rlimit means the same thing, and to a warning where none does.
//!
//! Limits never change what a step produces, so they are not part of the step cache key.

pub mod cgroup;
pub mod rlimit;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the user asked for. `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Bytes of memory (swap included) for the whole step.
    pub memory: Option<u64>,
    /// Processes and threads of the step (xbake's own monitor and init come on top).
    pub pids: Option<u64>,
    /// CPU time in thousandths of a CPU (`--cpus 1.5` is 1500).
    pub millicpus: Option<u64>,
}

/// podman's default is finite too (2048 with its cgroup manager); 4096 leaves room for
/// parallel compilers while a fork bomb still stops.
pub const DEFAULT_PIDS: u64 = 4096;

/// docker's smallest accepted `--memory` (6 MiB): below it not even a shell starts.
pub const MIN_MEMORY: u64 = 6 << 20;

/// What the step's sandbox carries: the request and what the command process sets as
/// rlimits because no cgroup enforces it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepLimits {
    pub requested: Limits,
    /// Which requested limits the step's cgroup enforces.
    pub by_cgroup: Coverage,
    pub rlimits: rlimit::Rlimits,
}

impl StepLimits {
    /// For a failed step without a cgroup: the rlimits it ran under, when the user asked
    /// for them (the default process limit alone is no news).
    pub fn rlimit_hint(&self) -> Option<LimitHit> {
        let r = self.rlimits;
        let asked = r.data.is_some() || r.nproc.is_some_and(|n| n != DEFAULT_PIDS);
        asked.then_some(LimitHit::Rlimits(r))
    }
}

/// Which controllers a build's cgroups have (and so which limits they enforce).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    pub memory: bool,
    pub pids: bool,
    pub cpu: bool,
}

impl Coverage {
    pub fn any(&self) -> bool {
        self.memory || self.pids || self.cpu
    }
}

/// Decides, for one platform, how each requested limit is enforced, and says what
/// cannot be. Pure: `available` is what the build's cgroups offer, `why_not` why the
/// rest is missing (see [`cgroup::BuildCgroups::unavailable`]).
pub fn plan(
    requested: &Limits,
    available: Coverage,
    why_not: &BTreeMap<String, String>,
    native: bool,
    platform: &str,
) -> (StepLimits, Vec<String>) {
    let by_cgroup = Coverage {
        memory: requested.memory.is_some() && available.memory,
        pids: requested.pids.is_some() && available.pids,
        cpu: requested.millicpus.is_some() && available.cpu,
    };
    let mut rlimits = rlimit::Rlimits::default();
    let mut warnings = Vec::new();
    let reason = |c: &str| why_not.get(c).map(String::as_str).unwrap_or("unknown");
    if let Some(bytes) = requested.memory.filter(|_| !by_cgroup.memory) {
        if native {
            rlimits.data = Some(bytes);
            warnings.push(format!(
                "--memory {}: no memory cgroup ({}); each process of a step is \
                 limited to it with RLIMIT_DATA instead, so a step of several processes \
                 can use more in total, and a process over it fails to allocate rather \
                 than being killed",
                format_size(bytes),
                reason("memory")
            ));
        } else {
            warnings.push(format!(
                "--memory {} is not enforced for {platform} steps: no memory cgroup \
                 ({}), and no rlimit can limit an emulated step (QEMU reserves \
                 the guest's whole address space and maps its own translation buffers, \
                 so RLIMIT_AS or RLIMIT_DATA would stop QEMU, not bound the step)",
                format_size(bytes),
                reason("memory")
            ));
        }
    }
    if let Some(n) = requested.pids.filter(|_| !by_cgroup.pids) {
        // RLIMIT_NPROC counts the processes and threads of one user id, and since Linux
        // 5.14 it counts them per user namespace (kernel/ucount.c): each step has its
        // own, so the count is the step's own processes of that id, not the host's.
        rlimits.nproc = Some(n);
        if requested.pids != Some(DEFAULT_PIDS) {
            warnings.push(format!(
                "--pids-limit {n}: no pids cgroup ({}); RLIMIT_NPROC limits each user id \
                 of a step to {n} processes instead",
                reason("pids")
            ));
        }
    }
    if let Some(m) = requested.millicpus.filter(|_| !by_cgroup.cpu) {
        warnings.push(format!(
            "--cpus {} is not enforced: no cpu cgroup ({}), and no rlimit limits a rate \
             of CPU time",
            format_cpus(m),
            reason("cpu")
        ));
    }
    let limits = StepLimits {
        requested: *requested,
        by_cgroup,
        rlimits,
    };
    (limits, warnings)
}

/// [`plan`] with what the launcher made for this build (cgroup.rs).
pub fn for_platform(requested: &Limits, native: bool, platform: &str) -> (StepLimits, Vec<String>) {
    let cgroups = cgroup::BuildCgroups::current();
    plan(
        requested,
        cgroups.coverage(),
        &cgroups.unavailable,
        native,
        platform,
    )
}

/// Why a step failed, when a limit explains it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitHit {
    /// The cgroup's OOM killer killed a process of the step.
    OutOfMemory { limit: u64 },
    /// A fork or clone failed at the cgroup's process limit.
    ProcessLimit { limit: u64 },
    /// No cgroup counted anything, but rlimits were in force: the failure may be theirs.
    Rlimits(rlimit::Rlimits),
}

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitHit::OutOfMemory { limit } => {
                write!(
                    f,
                    "was killed: out of memory (limit {})",
                    format_size(*limit)
                )
            }
            LimitHit::ProcessLimit { limit } => write!(f, "hit the process limit ({limit})"),
            LimitHit::Rlimits(r) => {
                let mut parts = Vec::new();
                if let Some(d) = r.data {
                    parts.push(format!(
                        "memory {} per process (RLIMIT_DATA)",
                        format_size(d)
                    ));
                }
                if let Some(n) = r.nproc {
                    parts.push(format!("{n} processes per user id (RLIMIT_NPROC)"));
                }
                write!(
                    f,
                    "ran under rlimits ({}; a failed allocation or fork may come from them)",
                    parts.join(", ")
                )
            }
        }
    }
}

/// Parses docker's `--memory` sizes: a number with an optional unit b, k, m, g or t
/// (binary units, as docker's go-units RAMInBytes; `kb`, `KiB` and `1.5g` too).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let t = t.strip_suffix('i').unwrap_or(t);
    let (number, shift) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 10),
        Some('m') => (&t[..t.len() - 1], 20),
        Some('g') => (&t[..t.len() - 1], 30),
        Some('t') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let bad = || {
        format!(
            "invalid size {text:?}: expected a number with an optional unit k, m, g or t (512m, 2g)"
        )
    };
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    if !value.is_finite() || value < 0.0 {
        return Err(bad());
    }
    let bytes = value * (1u64 << shift) as f64;
    if bytes >= u64::MAX as f64 {
        return Err(format!("size {text:?} is too large"));
    }
    Ok(bytes as u64)
}

/// `--memory`: a size of at least [`MIN_MEMORY`].
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text)?;
    if bytes < MIN_MEMORY {
        return Err(format!(
            "--memory {text}: the smallest limit is {} (as docker's)",
            format_size(MIN_MEMORY)
        ));
    }
    Ok(bytes)
}

/// `--pids-limit`: a count; 0 and -1 mean unlimited, as for podman and docker.
pub fn parse_pids(text: &str) -> Result<Option<u64>, String> {
    match text.trim().parse::<i64>() {
        Ok(0 | -1) => Ok(None),
        Ok(n) if n > 0 => Ok(Some(n as u64)),
        _ => Err(format!(
            "--pids-limit {text:?}: expected a positive count, or 0 or -1 for no limit"
        )),
    }
}

/// `--cpus`: a fraction of CPUs (0.5, 1.5) as docker's; 0 means no limit.
pub fn parse_cpus(text: &str) -> Result<Option<u64>, String> {
    let bad = || format!("--cpus {text:?}: expected a number of CPUs from 0.01, such as 0.5 or 2");
    let value: f64 = text.trim().parse().map_err(|_| bad())?;
    if value == 0.0 {
        return Ok(None);
    }
    if !(0.01..=4096.0).contains(&value) {
        return Err(bad());
    }
    Ok(Some((value * 1000.0).round() as u64))
}

/// The largest unit that states `bytes` exactly: 512M, 2G, 1536K, 100B.
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, 'T'), (30, 'G'), (20, 'M'), (10, 'K')] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

pub fn format_cpus(millicpus: u64) -> String {
    let whole = millicpus / 1000;
    match millicpus % 1000 {
        0 => whole.to_string(),
        frac => format!("{whole}.{}", format!("{frac:03}").trim_end_matches('0')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_docker_s() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("100kb"), Ok(100 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").unwrap_err().contains("\"lots\""));
        assert!(parse_size("-1m").is_err());
        assert!(
            parse_memory("1m")
                .unwrap_err()
                .contains("smallest limit is 6M")
        );
        assert_eq!(format_size(512 << 20), "512M");
        assert_eq!(format_size(2 << 30), "2G");
        assert_eq!(format_size(1536 << 10), "1536K");
        assert_eq!(format_size(100), "100B");
    }

    #[test]
    fn pids_and_cpus_parse_as_podman_s() {
        assert_eq!(parse_pids("64"), Ok(Some(64)));
        assert_eq!(parse_pids("0"), Ok(None));
        assert_eq!(parse_pids("-1"), Ok(None));
        assert!(parse_pids("-2").is_err());
        assert_eq!(parse_cpus("1.5"), Ok(Some(1500)));
        assert_eq!(parse_cpus("0.01"), Ok(Some(10)));
        assert_eq!(parse_cpus("0"), Ok(None));
        assert!(parse_cpus("0.001").is_err());
        assert_eq!(format_cpus(1500), "1.5");
        assert_eq!(format_cpus(2000), "2");
        assert_eq!(format_cpus(10), "0.01");
    }

    const ALL: Coverage = Coverage {
        memory: true,
        pids: true,
        cpu: true,
    };

    fn why(text: &str) -> BTreeMap<String, String> {
        ["memory", "pids", "cpu"]
            .map(|c| (c.to_string(), text.to_string()))
            .into()
    }

    fn asked() -> Limits {
        Limits {
            memory: Some(64 << 20),
            pids: Some(64),
            millicpus: Some(500),
        }
    }

    #[test]
    fn cgroups_take_every_limit_they_can() {
        let (limits, warnings) = plan(&asked(), ALL, &BTreeMap::new(), false, "arm64");
        assert_eq!(limits.by_cgroup, ALL);
        assert_eq!(limits.rlimits, rlimit::Rlimits::default());
        assert!(warnings.is_empty(), "{warnings:?}");
        // Nothing asked, nothing covered.
        let (limits, _) = plan(&Limits::default(), ALL, &BTreeMap::new(), true, "amd64");
        assert!(!limits.by_cgroup.any());
    }

    #[test]
    fn without_cgroups_native_steps_get_rlimits_and_a_warning() {
        let (limits, warnings) = plan(
            &asked(),
            Coverage::default(),
            &why("no delegation"),
            true,
            "amd64",
        );
        assert_eq!(limits.rlimits.data, Some(64 << 20));
        assert_eq!(limits.rlimits.nproc, Some(64));
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].starts_with("--memory 64M: no memory cgroup (no delegation)"));
        assert!(warnings[1].contains("RLIMIT_NPROC"));
        assert!(warnings[2].starts_with("--cpus 0.5 is not enforced"));
    }

    #[test]
    fn emulated_steps_get_no_memory_rlimit() {
        let (limits, warnings) = plan(&asked(), Coverage::default(), &why("why"), false, "arm64");
        assert_eq!(limits.rlimits.data, None);
        assert_eq!(limits.rlimits.nproc, Some(64));
        assert!(
            warnings[0].starts_with("--memory 64M is not enforced for arm64 steps")
                && warnings[0].contains("QEMU reserves the guest's whole address space"),
            "{warnings:?}"
        );
    }

    #[test]
    fn the_default_process_limit_needs_no_warning() {
        let default = Limits {
            pids: Some(DEFAULT_PIDS),
            ..Limits::default()
        };
        let (limits, warnings) = plan(&default, Coverage::default(), &why("why"), true, "amd64");
        assert_eq!(limits.rlimits.nproc, Some(DEFAULT_PIDS));
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn limit_hits_read_as_the_issue_says() {
        assert_eq!(
            LimitHit::OutOfMemory { limit: 512 << 20 }.to_string(),
            "was killed: out of memory (limit 512M)"
        );
        assert_eq!(
            LimitHit::ProcessLimit { limit: 4096 }.to_string(),
            "hit the process limit (4096)"
        );
    }
}
