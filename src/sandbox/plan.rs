//! The sandbox as data (after bubblewrap): a pure function from a step spec to the list
//! of set-up operations, which a small executor (`mounts.rs`) then performs in order.
//! Targets are relative to the rootfs and are resolved inside it by the executor.

use super::spec::{NetworkMode, StepMount, StepSpec};
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetupOp {
    /// Open the rootfs folder, as the root the host-side ops resolve their targets in.
    OpenRootfs { rootfs: PathBuf },
    /// In the step's own mount namespace: a recursive copy of the rootfs (from the
    /// working directory) mounted over it. pivot_root(2) needs the new root to be a
    /// mount point that is not locked, and every mount inherited from the build's
    /// namespace is locked in the step's (mount_namespaces(7)); a bind made here is not.
    MountRootfs,
    /// A fresh procfs for the step's pid namespace.
    Proc { target: &'static str },
    /// A small tmpfs for /dev, populated by the ops that follow.
    DevTmpfs { target: &'static str },
    /// Bind one host device node into the /dev tmpfs. A user namespace cannot mknod(2)
    /// devices, but may bind existing ones.
    DevNode { name: &'static str },
    /// A private devpts instance (newinstance), so ptys do not reach the host's.
    Devpts,
    /// A tmpfs for POSIX shared memory.
    Shm,
    /// A symlink inside the /dev tmpfs.
    DevSymlink {
        name: &'static str,
        target: &'static str,
    },
    /// A fresh read-only sysfs: only a step with its own network namespace may mount
    /// one, and only a fresh one shows that namespace's interfaces (sysfs network
    /// entries belong to the namespace that mounted it).
    Sysfs { target: &'static str },
    /// Recursive read-only bind (every submount made read-only too, as bwrap --ro-bind).
    ReadOnlyBindTree {
        source: PathBuf,
        target: &'static str,
    },
    /// Read-only bind of one file over a file in the rootfs.
    ReadOnlyBindFile { source: PathBuf, target: String },
    /// Make a path of the step's own /proc or /sys read-only (bound onto itself, then
    /// remounted); skipped when the kernel has no such path.
    ReadOnlyPath { target: &'static str },
    /// Hide a path of /proc or /sys: /dev/null over a file, an empty read-only tmpfs
    /// over a folder; skipped when the kernel has no such path.
    MaskPath { target: &'static str },
    /// One of the step's own mounts (`StepSpec::mounts`): a bind, a throwaway overlay or
    /// a tmpfs at a target inside the rootfs, which must not be in /proc, /dev or /sys.
    RunMount(StepMount),
    /// Switch to the rootfs and detach the old root.
    PivotRoot,
}

/// Host device nodes every step gets, as Docker and the OCI runtime spec list them.
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Kernel interfaces a step may read but not change, and those it must not see at all:
/// runc's defaults (libcontainer/specconv/example.go, the lists Docker and youki use),
/// applied after the step's /proc and /sys are mounted. /proc/sys writes are refused by
/// the user namespace already (uid 0 there is not host root); this is the second layer.
pub const READ_ONLY_PATHS: [&str; 5] = [
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];
pub const MASKED_PATHS: [&str; 11] = [
    "proc/acpi",
    "proc/asound",
    "proc/interrupts",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/sched_debug",
    "proc/scsi",
    "proc/timer_list",
    "proc/timer_stats",
    "sys/firmware",
];

/// Paths the sandbox mounts over; they must exist in the rootfs before the step runs
/// (see `placeholders.rs`). Directories first, then files.
pub fn mount_point_dirs() -> [&'static str; 3] {
    ["proc", "dev", "sys"]
}

pub fn mount_point_files(resolv_conf: bool, emulator: Option<&std::path::Path>) -> Vec<String> {
    let mut files = vec!["etc/hosts".to_string(), "etc/hostname".to_string()];
    if resolv_conf {
        files.push("etc/resolv.conf".to_string());
    }
    if let Some(emulator) = emulator {
        files.push(relative(emulator));
    }
    files
}

fn relative(path: &std::path::Path) -> String {
    path.to_string_lossy().trim_start_matches('/').to_string()
}

pub fn plan(spec: &StepSpec) -> Vec<SetupOp> {
    let mut ops = vec![
        SetupOp::OpenRootfs {
            rootfs: spec.rootfs.clone(),
        },
        SetupOp::MountRootfs,
        SetupOp::Proc { target: "proc" },
        SetupOp::DevTmpfs { target: "dev" },
    ];
    ops.extend(DEVICES.iter().map(|name| SetupOp::DevNode { name }));
    ops.extend([
        SetupOp::Devpts,
        SetupOp::Shm,
        SetupOp::DevSymlink {
            name: "ptmx",
            target: "pts/ptmx",
        },
        SetupOp::DevSymlink {
            name: "fd",
            target: "/proc/self/fd",
        },
        SetupOp::DevSymlink {
            name: "stdin",
            target: "/proc/self/fd/0",
        },
        SetupOp::DevSymlink {
            name: "stdout",
            target: "/proc/self/fd/1",
        },
        SetupOp::DevSymlink {
            name: "stderr",
            target: "/proc/self/fd/2",
        },
        if spec.network != NetworkMode::Host {
            SetupOp::Sysfs { target: "sys" }
        } else {
            SetupOp::ReadOnlyBindTree {
                source: PathBuf::from("/sys"),
                target: "sys",
            }
        },
        SetupOp::ReadOnlyBindFile {
            source: spec.hosts_file.clone(),
            target: "etc/hosts".into(),
        },
        SetupOp::ReadOnlyBindFile {
            source: spec.hostname_file.clone(),
            target: "etc/hostname".into(),
        },
    ]);
    ops.extend(
        READ_ONLY_PATHS
            .iter()
            .map(|target| SetupOp::ReadOnlyPath { target }),
    );
    ops.extend(
        MASKED_PATHS
            .iter()
            .map(|target| SetupOp::MaskPath { target }),
    );
    if let Some(resolv) = &spec.resolv_conf {
        ops.push(SetupOp::ReadOnlyBindFile {
            source: resolv.clone(),
            target: "etc/resolv.conf".into(),
        });
    }
    if let Some(emulator) = &spec.emulator_bind {
        ops.push(SetupOp::ReadOnlyBindFile {
            source: emulator.clone(),
            target: relative(emulator),
        });
    }
    // Last, in the recipe's order: a later mount may sit inside an earlier one, and any
    // of them may cover a standard file bind (a folder mounted at /etc, say).
    ops.extend(spec.mounts.iter().cloned().map(SetupOp::RunMount));
    ops.push(SetupOp::PivotRoot);
    ops
}

/// Splits a plan into the ops that read host paths of the build (the rootfs and the
/// generated files beside it, under the cache folder) and the rest. The first run in the
/// build's user namespace, which can reach the cache folder whoever owns its parents; the
/// step's nested namespace maps only image ids and may not be able to (a root build's
/// cache under /root, for one). Order within each part is kept.
///
/// The step's own mounts are all host-side: their sources live under the cache folder
/// too (cache mounts, scratch folders, secrets' tmpfs), and keeping all of them on one
/// side keeps their order. Made in the build's namespace, they are locked in the step's
/// (mount_namespaces(7)): the step can neither unmount them nor make a read-only one
/// writable.
pub fn split_host_side(ops: &[SetupOp]) -> (Vec<SetupOp>, Vec<SetupOp>) {
    ops.iter().cloned().partition(|op| {
        matches!(
            op,
            SetupOp::OpenRootfs { .. } | SetupOp::ReadOnlyBindFile { .. } | SetupOp::RunMount(_)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> StepSpec {
        StepSpec {
            rootfs: "/work/rootfs".into(),
            argv: vec!["/bin/sh".into(), "-c".into(), "true".into()],
            env: vec![],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            groups: vec![],
            network: NetworkMode::Host,
            hostname: "xbake".into(),
            hosts_file: "/work/hosts".into(),
            hostname_file: "/work/hostname".into(),
            resolv_conf: Some("/etc/resolv.conf".into()),
            emulator_bind: None,
            linux32: false,
            stdin_from_caller: false,
            seccomp: Default::default(),
            limits: Default::default(),
            mounts: vec![],
            not_before_unix_ns: None,
        }
    }

    /// The whole sequence, as a snapshot: changing the sandbox means changing this list.
    #[test]
    fn plan_for_a_typical_step() {
        let rendered: Vec<String> = plan(&spec()).iter().map(|op| format!("{op:?}")).collect();
        let expected = [
            r#"OpenRootfs { rootfs: "/work/rootfs" }"#,
            "MountRootfs",
            r#"Proc { target: "proc" }"#,
            r#"DevTmpfs { target: "dev" }"#,
            r#"DevNode { name: "null" }"#,
            r#"DevNode { name: "zero" }"#,
            r#"DevNode { name: "full" }"#,
            r#"DevNode { name: "random" }"#,
            r#"DevNode { name: "urandom" }"#,
            r#"DevNode { name: "tty" }"#,
            "Devpts",
            "Shm",
            r#"DevSymlink { name: "ptmx", target: "pts/ptmx" }"#,
            r#"DevSymlink { name: "fd", target: "/proc/self/fd" }"#,
            r#"DevSymlink { name: "stdin", target: "/proc/self/fd/0" }"#,
            r#"DevSymlink { name: "stdout", target: "/proc/self/fd/1" }"#,
            r#"DevSymlink { name: "stderr", target: "/proc/self/fd/2" }"#,
            r#"ReadOnlyBindTree { source: "/sys", target: "sys" }"#,
            r#"ReadOnlyBindFile { source: "/work/hosts", target: "etc/hosts" }"#,
            r#"ReadOnlyBindFile { source: "/work/hostname", target: "etc/hostname" }"#,
            r#"ReadOnlyPath { target: "proc/bus" }"#,
            r#"ReadOnlyPath { target: "proc/fs" }"#,
            r#"ReadOnlyPath { target: "proc/irq" }"#,
            r#"ReadOnlyPath { target: "proc/sys" }"#,
            r#"ReadOnlyPath { target: "proc/sysrq-trigger" }"#,
            r#"MaskPath { target: "proc/acpi" }"#,
            r#"MaskPath { target: "proc/asound" }"#,
            r#"MaskPath { target: "proc/interrupts" }"#,
            r#"MaskPath { target: "proc/kcore" }"#,
            r#"MaskPath { target: "proc/keys" }"#,
            r#"MaskPath { target: "proc/latency_stats" }"#,
            r#"MaskPath { target: "proc/sched_debug" }"#,
            r#"MaskPath { target: "proc/scsi" }"#,
            r#"MaskPath { target: "proc/timer_list" }"#,
            r#"MaskPath { target: "proc/timer_stats" }"#,
            r#"MaskPath { target: "sys/firmware" }"#,
            r#"ReadOnlyBindFile { source: "/etc/resolv.conf", target: "etc/resolv.conf" }"#,
            "PivotRoot",
        ];
        assert_eq!(rendered, expected);
    }

    #[test]
    fn host_side_ops_are_the_rootfs_and_the_file_binds() {
        let (host, step) = split_host_side(&plan(&spec()));
        let rendered: Vec<String> = host.iter().map(|op| format!("{op:?}")).collect();
        assert_eq!(
            rendered,
            [
                r#"OpenRootfs { rootfs: "/work/rootfs" }"#,
                r#"ReadOnlyBindFile { source: "/work/hosts", target: "etc/hosts" }"#,
                r#"ReadOnlyBindFile { source: "/work/hostname", target: "etc/hostname" }"#,
                r#"ReadOnlyBindFile { source: "/etc/resolv.conf", target: "etc/resolv.conf" }"#,
            ]
        );
        assert_eq!(step.first(), Some(&SetupOp::MountRootfs));
        assert_eq!(step.last(), Some(&SetupOp::PivotRoot));
    }

    fn run_mount(target: &str, kind: crate::sandbox::MountKind) -> StepMount {
        StepMount {
            target: target.into(),
            kind,
        }
    }

    /// A step's own mounts come last, in the recipe's order, and all of them host-side
    /// (with the rootfs and the file binds), so their order holds across the two phases.
    #[test]
    fn run_mounts_follow_the_standard_ones_in_order_on_the_host_side() {
        use crate::sandbox::{MountKind, MountSource};
        let mut s = spec();
        s.emulator_bind = Some("/usr/bin/qemu-arm-static".into());
        s.mounts = vec![
            run_mount(
                "/root/.cache",
                MountKind::Bind {
                    source: MountSource::Host("/cache/mounts/ab/data".into()),
                    read_only: false,
                },
            ),
            run_mount(
                "/root/.cache/tmp",
                MountKind::Tmpfs {
                    size: Some(1 << 20),
                },
            ),
            run_mount(
                "/src",
                MountKind::Scratch {
                    source: MountSource::InRoot {
                        root: "/work/stage-build".into(),
                        path: "/out".into(),
                    },
                    scratch: "/work/bind-1".into(),
                },
            ),
        ];
        let ops = plan(&s);
        let tail: Vec<String> = ops[ops.len() - 6..]
            .iter()
            .map(|op| format!("{op:?}"))
            .collect();
        assert_eq!(
            tail,
            [
                r#"ReadOnlyBindFile { source: "/etc/resolv.conf", target: "etc/resolv.conf" }"#,
                r#"ReadOnlyBindFile { source: "/usr/bin/qemu-arm-static", target: "usr/bin/qemu-arm-static" }"#,
                r#"RunMount(StepMount { target: "/root/.cache", kind: Bind { source: Host("/cache/mounts/ab/data"), read_only: false } })"#,
                r#"RunMount(StepMount { target: "/root/.cache/tmp", kind: Tmpfs { size: Some(1048576) } })"#,
                r#"RunMount(StepMount { target: "/src", kind: Scratch { source: InRoot { root: "/work/stage-build", path: "/out" }, scratch: "/work/bind-1" } })"#,
                "PivotRoot",
            ]
        );
        let (host, step) = split_host_side(&ops);
        let host_mounts: Vec<&StepMount> = host
            .iter()
            .filter_map(|op| match op {
                SetupOp::RunMount(m) => Some(m),
                _ => None,
            })
            .collect();
        assert_eq!(host_mounts, s.mounts.iter().collect::<Vec<_>>());
        assert!(!step.iter().any(|op| matches!(op, SetupOp::RunMount(_))));
        assert!(
            matches!(host.last(), Some(SetupOp::RunMount(m)) if m.target == "/src"),
            "the run mounts are the last host-side ops"
        );
    }

    #[test]
    fn emulator_bind_and_missing_resolv_conf() {
        let mut s = spec();
        s.resolv_conf = None;
        s.emulator_bind = Some("/usr/bin/qemu-arm-static".into());
        let ops = plan(&s);
        assert!(!ops.iter().any(|op| matches!(
            op,
            SetupOp::ReadOnlyBindFile { target, .. } if target == "etc/resolv.conf"
        )));
        assert_eq!(
            ops[ops.len() - 2],
            SetupOp::ReadOnlyBindFile {
                source: "/usr/bin/qemu-arm-static".into(),
                target: "usr/bin/qemu-arm-static".into()
            }
        );
        assert_eq!(
            mount_point_files(false, s.emulator_bind.as_deref()),
            ["etc/hosts", "etc/hostname", "usr/bin/qemu-arm-static"]
        );
        assert_eq!(ops.last(), Some(&SetupOp::PivotRoot));
        s.network = NetworkMode::None;
        assert!(plan(&s).contains(&SetupOp::Sysfs { target: "sys" }));
    }
}
