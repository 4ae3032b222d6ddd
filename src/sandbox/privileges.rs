//! The capabilities a step keeps: Docker's default set (moby's
//! oci/caps/defaults.go), so a recipe behaves as under `docker build`. Everything else
//! is removed from the bounding set, so not even a setuid binary regains it.

use caps::{CapSet, Capability};
use std::collections::HashSet;

pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

pub fn restrict_capabilities() -> Result<(), String> {
    let keep: HashSet<Capability> = DEFAULT_CAPABILITIES.into_iter().collect();
    let err = |what: &str, e: caps::errors::CapsError| format!("{what}: {e}");
    for cap in caps::all() {
        if keep.contains(&cap) {
            continue;
        }
        // Capabilities unknown to the running kernel cannot be dropped; skip them.
        if caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|e| err("dropping a bounding capability", e))?;
        }
    }
    let permitted =
        caps::read(None, CapSet::Permitted).map_err(|e| err("reading capabilities", e))?;
    let kept: HashSet<Capability> = permitted.intersection(&keep).copied().collect();
    caps::set(None, CapSet::Inheritable, &HashSet::new())
        .map_err(|e| err("clearing inheritable capabilities", e))?;
    caps::set(None, CapSet::Effective, &kept).map_err(|e| err("setting capabilities", e))?;
    caps::set(None, CapSet::Permitted, &kept).map_err(|e| err("setting capabilities", e))
}
