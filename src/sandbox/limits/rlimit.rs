//! The fallback when no cgroup enforces a limit: rlimits set in the step's command
//! process right before exec (setrlimit(2)), inherited by everything it starts.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimits {
    /// RLIMIT_DATA: private writable memory (heap, anonymous mappings) per process.
    /// Preferred to RLIMIT_AS, which also counts reservations and shared libraries, so
    /// that a program reserving address space it never uses (glibc's per-thread malloc
    /// arenas, Go's heap) is not stopped by it. Native steps only (see mod.rs).
    pub data: Option<u64>,
    /// RLIMIT_NPROC: processes and threads of the command's user id in the step's user
    /// namespace (counted per namespace since Linux 5.14, kernel/ucount.c).
    pub nproc: Option<u64>,
}

/// The monitor and the step's init (`init.rs`) run as the step's uid 0 and count
/// against that id's RLIMIT_NPROC: a step running as root gets them on top.
const OWN_PROCESSES: u64 = 2;

impl Rlimits {
    /// The values to set, for a command that runs as `uid` in the step.
    pub fn values(&self, uid: u32) -> Vec<(Resource, u64)> {
        let mut out = Vec::new();
        if let Some(d) = self.data {
            out.push((Resource::Data, d));
        }
        if let Some(n) = self.nproc {
            let own = if uid == 0 { OWN_PROCESSES } else { 0 };
            out.push((Resource::Nproc, n.saturating_add(own)));
        }
        out
    }

    /// Sets them (soft and hard, so the step cannot raise them again) in this process.
    pub fn apply(&self, uid: u32) -> Result<(), String> {
        for (resource, value) in self.values(uid) {
            let (id, name) = match resource {
                Resource::Data => (libc::RLIMIT_DATA, "RLIMIT_DATA"),
                Resource::Nproc => (libc::RLIMIT_NPROC, "RLIMIT_NPROC"),
            };
            let limit = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            // SAFETY: setrlimit(2) reads the struct we pass by pointer and nothing else.
            if unsafe { libc::setrlimit(id, &limit) } != 0 {
                return Err(format!(
                    "setrlimit({name}, {value}): {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Data,
    Nproc,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_steps_get_room_for_the_monitor_and_init() {
        let r = Rlimits {
            data: Some(1 << 26),
            nproc: Some(64),
        };
        assert_eq!(
            r.values(0),
            [(Resource::Data, 1 << 26), (Resource::Nproc, 66)]
        );
        assert_eq!(r.values(1000)[1], (Resource::Nproc, 64));
        assert!(Rlimits::default().values(0).is_empty());
    }
}
