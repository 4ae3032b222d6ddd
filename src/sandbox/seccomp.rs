//! The seccomp filter of a step's command: refuses what Docker's default profile refuses
//! a container without CAP_SYS_ADMIN (moby/profiles `seccomp/default.json` v0.2.3), so a
//! recipe meets the same kernel surface under xbake as under `docker build`.
//!
//! **A denylist, not Docker's allowlist.** Docker's profile allows ~360 names and answers
//! EPERM to everything else. [`PROFILE`] lists the other side instead: every syscall
//! libseccomp knows on x86-64, i386 and x32 that Docker does not allow (a unit test checks
//! that the two sets are exact complements), plus Docker's argument rules, and lets the
//! rest through. Three reasons:
//! - QEMU runs as a host binary under the filter; nothing it needs can be missing from a
//!   list it is never checked against.
//! - Debian 12's libseccomp (2.5.4) cannot name syscalls newer than its table on the
//!   compat ABIs (a raw number is always read as a native one), so an allowlist would
//!   answer EPERM to statmount, mseal, the *xattrat calls… and glibc falls back to older
//!   calls only on ENOSYS (moby#42680: faccessat2 broke images this way). runc patches
//!   its BPF to return ENOSYS above the profile's highest number; libseccomp has no API
//!   for that.
//! - libseccomp refuses a conditional rule whose action is the default one, so an
//!   EPERM-default filter cannot carve TIOCSTI out of ioctl on the low 32 bits, the way
//!   bubblewrap does.
//!
//! The cost: a syscall added to the kernel after this list was written is allowed (Docker
//! answers it with EPERM or ENOSYS). Calls newer than libseccomp's table are refused by
//! their generic number (the same on every architecture since Linux 5.1), on the native
//! ABI only when the library cannot name them.
//!
//! The filter is loaded without `no_new_privs` (so setuid programs such as sudo keep
//! working), which the kernel allows because the command still holds CAP_SYS_ADMIN in
//! its user namespace at that point (seccomp(2)); runc does the same when
//! NoNewPrivileges is off. It is inherited by every process of the step and cannot be
//! removed, only narrowed.

use super::spec::SeccompMode;
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("building the seccomp filter ({what}): {source}")]
    Build {
        what: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("no seccomp architecture is known for this host")]
    NoArchitecture,
    #[error(
        "loading the seccomp filter: {source} (use --security-opt seccomp=unconfined to run without it)"
    )]
    Load {
        #[source]
        source: libseccomp::error::SeccompError,
    },
}

/// A syscall by name, with its generic number for calls added since Linux 5.1 (424 and
/// up, the same on every architecture), which older libseccomp tables may not name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syscall {
    pub name: &'static str,
    pub generic_nr: Option<i32>,
}

const fn old(name: &'static str) -> Syscall {
    Syscall {
        name,
        generic_nr: None,
    }
}

const fn new(name: &'static str, nr: i32) -> Syscall {
    Syscall {
        name,
        generic_nr: Some(nr),
    }
}

/// When a rule refuses the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    Always,
    /// Any of `bits` is set in argument `arg`.
    AnyBit {
        arg: u32,
        bits: u64,
    },
    /// The low 32 bits of argument `arg` are one of `values`. Only the low half: the
    /// kernel reads these arguments as `int`, so high bits must not hide a match
    /// (bubblewrap compares ioctl requests this way since CVE-2017-5226).
    Low32In {
        arg: u32,
        values: &'static [u32],
    },
    /// The low 32 bits of argument `arg` are none of `values`.
    Low32NotIn {
        arg: u32,
        values: &'static [u32],
    },
}

#[derive(Clone, Copy, Debug)]
pub struct Rule {
    pub syscalls: &'static [Syscall],
    pub errno: i32,
    pub when: When,
    /// Architectures the rule is left out on.
    pub except: &'static [ScmpArch],
}

/// Namespace flags of clone(2): Docker's mask 0x7E020000.
const CLONE_NEW_ANY: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;

/// The personality(2) values Docker allows: PER_LINUX, PER_LINUX32, UNAME26 alone and with
/// PER_LINUX32, and 0xffffffff (query). The rest (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC,
/// MMAP_PAGE_ZERO…) weaken the address-space defences.
const PERSONALITIES: &[u32] = &[0, 0x0008, 0x0002_0000, 0x0002_0008, 0xffff_ffff];

/// Every syscall Docker's profile refuses to a container with its default capabilities,
/// without arguments to look at. Grouped by the capability Docker would require.
const REFUSED: &[Syscall] = &[
    // CAP_SYS_ADMIN: mounts, namespaces, BPF, perf, quotas, host names, kernel log.
    old("mount"),
    old("umount"),
    old("umount2"),
    old("pivot_root"),
    new("open_tree", 428),
    new("move_mount", 429),
    new("fsopen", 430),
    new("fsconfig", 431),
    new("fsmount", 432),
    new("fspick", 433),
    new("mount_setattr", 442),
    // open_tree with mount attributes (Linux 6.15); Docker's profile predates it.
    new("open_tree_attr", 467),
    old("unshare"),
    old("setns"),
    old("bpf"),
    old("perf_event_open"),
    old("fanotify_init"),
    old("lookup_dcookie"),
    old("quotactl"),
    new("quotactl_fd", 443),
    old("sethostname"),
    old("setdomainname"),
    old("syslog"),
    // Docker requires CAP_SYS_ADMIN since 2025 (moby commit 148a19b6d6).
    new("lsm_get_self_attr", 459),
    new("lsm_set_self_attr", 460),
    new("lsm_list_modules", 461),
    // The kernel keyring is not namespaced: keys would be shared with the host.
    old("keyctl"),
    old("add_key"),
    old("request_key"),
    // userfaultfd stalls kernel page faults at will: a staple of kernel exploits.
    old("userfaultfd"),
    // io_uring bypasses seccomp for the operations it submits; moby dropped it in 2023.
    new("io_uring_setup", 425),
    new("io_uring_enter", 426),
    new("io_uring_register", 427),
    // CAP_DAC_READ_SEARCH: opens any file of a mounted file system by handle (the
    // 2014 "shocker" container escape).
    old("open_by_handle_at"),
    // CAP_SYS_BOOT, CAP_SYS_MODULE, CAP_SYS_PACCT, CAP_SYS_RAWIO, CAP_SYS_TIME,
    // CAP_SYS_TTY_CONFIG, CAP_SYS_PTRACE, CAP_SYS_NICE (NUMA policy).
    old("reboot"),
    old("kexec_load"),
    old("kexec_file_load"),
    old("init_module"),
    old("finit_module"),
    old("delete_module"),
    old("create_module"),
    old("get_kernel_syms"),
    old("query_module"),
    old("acct"),
    old("iopl"),
    old("ioperm"),
    old("settimeofday"),
    old("stime"),
    old("clock_settime"),
    old("clock_settime64"),
    old("vhangup"),
    old("kcmp"),
    new("pidfd_getfd", 438),
    new("process_madvise", 440),
    old("get_mempolicy"),
    old("set_mempolicy"),
    new("set_mempolicy_home_node", 450),
    old("mbind"),
    old("migrate_pages"),
    old("move_pages"),
    // Host-wide or obsolete interfaces Docker does not list.
    old("swapon"),
    old("swapoff"),
    old("nfsservctl"),
    old("_sysctl"),
    old("sysfs"),
    old("ustat"),
    old("uselib"),
    old("bdflush"),
    old("vm86"),
    old("vm86old"),
    old("nice"),
    old("sgetmask"),
    old("ssetmask"),
    old("signal"),
    old("sigaction"),
    old("sigpending"),
    old("sigsuspend"),
    old("readdir"),
    old("oldstat"),
    old("oldfstat"),
    old("oldlstat"),
    old("olduname"),
    old("oldolduname"),
    old("ulimit"),
    old("idle"),
    old("ftime"),
    old("lock"),
    old("prof"),
    old("profil"),
    old("gtty"),
    old("stty"),
    old("break"),
    old("mpx"),
    old("getpmsg"),
    old("putpmsg"),
    old("afs_syscall"),
    old("security"),
    old("tuxcall"),
    old("vserver"),
];

/// The whole profile. EPERM unless noted, as Docker's `defaultErrnoRet: 1`.
pub const PROFILE: &[Rule] = &[
    Rule {
        syscalls: REFUSED,
        errno: libc::EPERM,
        when: When::Always,
        except: &[],
    },
    // A new namespace from clone(2) needs CAP_SYS_ADMIN in Docker's profile. (s390x
    // passes the flags second; xbake filters x86 hosts.)
    Rule {
        syscalls: &[old("clone")],
        errno: libc::EPERM,
        when: When::AnyBit {
            arg: 0,
            bits: CLONE_NEW_ANY,
        },
        except: &[],
    },
    // clone3 passes its flags in memory a filter cannot read: Docker answers ENOSYS, so
    // glibc (pthread_create, posix_spawn) falls back to clone(2), which is checked.
    Rule {
        syscalls: &[new("clone3", 435)],
        errno: libc::ENOSYS,
        when: When::Always,
        except: &[],
    },
    // AF_ALG (kernel crypto, a recurring source of CVEs) and AF_VSOCK (reaches the
    // hypervisor's host). Not on i386: its glibc creates sockets through socketcall(2),
    // whose arguments are in memory, and libseccomp would then refuse every socket
    // there; Docker allows socketcall outright.
    Rule {
        syscalls: &[old("socket")],
        errno: libc::EPERM,
        when: When::Low32In {
            arg: 0,
            values: &[libc::AF_ALG as u32, libc::AF_VSOCK as u32],
        },
        except: &[ScmpArch::X86],
    },
    Rule {
        syscalls: &[old("personality")],
        errno: libc::EPERM,
        when: When::Low32NotIn {
            arg: 0,
            values: PERSONALITIES,
        },
        except: &[],
    },
    // Not in Docker's profile, but in bubblewrap's since CVE-2017-5226: TIOCSTI pushes
    // input into a terminal (it would run as the caller after xbake exits), TIOCLINUX
    // can do the same on a virtual console.
    Rule {
        syscalls: &[old("ioctl")],
        errno: libc::EPERM,
        when: When::Low32In {
            arg: 1,
            values: &[libc::TIOCSTI as u32, TIOCLINUX],
        },
        except: &[],
    },
    // Docker allows arch_prctl on amd64 and x32 only; i386 has it since Linux 4.12.
    Rule {
        syscalls: &[old("arch_prctl")],
        errno: libc::EPERM,
        when: When::Always,
        except: &[ScmpArch::X8664, ScmpArch::X32],
    },
];

/// ioctl_console(2); the libc crate does not export it.
const TIOCLINUX: u32 = 0x541C;

/// The audit architectures a step's processes can use: Docker's archMap for the host.
/// Native i386 steps run as i386 syscalls on an x86-64 kernel.
pub fn filter_arches() -> &'static [ScmpArch] {
    match std::env::consts::ARCH {
        "x86_64" => &[ScmpArch::X8664, ScmpArch::X86, ScmpArch::X32],
        "aarch64" => &[ScmpArch::Aarch64, ScmpArch::Arm],
        "s390x" => &[ScmpArch::S390X, ScmpArch::S390],
        _ => &[ScmpArch::Native],
    }
}

/// The comparisons of each libseccomp rule a condition becomes (libseccomp ANDs the
/// comparisons of one rule and ORs rules; it allows one comparison per argument).
pub fn lower(when: When) -> Vec<Vec<ScmpArgCompare>> {
    let low32 = |arg: u32, (mask, value): (u32, u32)| {
        vec![ScmpArgCompare::new(
            arg,
            ScmpCompareOp::MaskedEqual(u64::from(mask)),
            u64::from(value),
        )]
    };
    match when {
        When::Always => vec![vec![]],
        When::AnyBit { arg, bits } => (0..64)
            .map(|i| 1u64 << i)
            .filter(|bit| bits & bit != 0)
            .map(|bit| {
                vec![ScmpArgCompare::new(
                    arg,
                    ScmpCompareOp::MaskedEqual(bit),
                    bit,
                )]
            })
            .collect(),
        When::Low32In { arg, values } => {
            values.iter().map(|v| low32(arg, (u32::MAX, *v))).collect()
        }
        When::Low32NotIn { arg, values } => complement(values)
            .into_iter()
            .map(|p| low32(arg, p))
            .collect(),
    }
}

/// Masked-equality patterns `(mask, value)` that together match exactly the 32-bit
/// numbers not in `excluded`: the empty branches of a binary trie of `excluded`, since
/// libseccomp has no "none of" comparison.
pub fn complement(excluded: &[u32]) -> Vec<(u32, u32)> {
    fn walk(prefix: u32, depth: u32, within: &[u32], out: &mut Vec<(u32, u32)>) {
        if within.is_empty() {
            let mask = u32::MAX.checked_shl(32 - depth).unwrap_or(0);
            out.push((mask, prefix));
            return;
        }
        if depth == 32 {
            return;
        }
        let bit = 1u32 << (31 - depth);
        let (ones, zeros): (Vec<u32>, Vec<u32>) = within.iter().partition(|v| *v & bit != 0);
        walk(prefix, depth + 1, &zeros, out);
        walk(prefix | bit, depth + 1, &ones, out);
    }
    let mut values = excluded.to_vec();
    values.sort_unstable();
    values.dedup();
    let mut out = Vec::new();
    walk(0, 0, &values, &mut out);
    // Two patterns with one mask that differ in one bit are one pattern without that
    // bit (the trie repeats its subtrees below every free bit): 82 rules become 60 for
    // personality(2), and each costs time when the step loads the filter.
    while let Some((i, j)) = (0..out.len())
        .flat_map(|i| (i + 1..out.len()).map(move |j| (i, j)))
        .find(|&(i, j)| out[i].0 == out[j].0 && (out[i].1 ^ out[j].1).count_ones() == 1)
    {
        let bit = out[i].1 ^ out[j].1;
        out[i] = (out[i].0 & !bit, out[i].1 & !bit);
        out.swap_remove(j);
    }
    out
}

/// The filter for this host's architectures, not yet loaded.
pub fn build() -> Result<ScmpFilterContext, SeccompError> {
    let err = |what: String| move |source| SeccompError::Build { what, source };
    // Lowered once: the personality patterns take a while to compute.
    let lowered: Vec<(&Rule, Vec<Vec<ScmpArgCompare>>)> =
        PROFILE.iter().map(|r| (r, lower(r.when))).collect();
    let mut merged: Option<ScmpFilterContext> = None;
    // One context per architecture, merged at the end: rules can leave an architecture
    // out, and a raw syscall number can only be given for the native one.
    for &arch in filter_arches() {
        let mut ctx =
            ScmpFilterContext::new(ScmpAction::Allow).map_err(err("creating a filter".into()))?;
        let native = arch == ScmpArch::Native || arch == ScmpArch::native();
        if !native {
            ctx.add_arch(arch)
                .map_err(err(format!("adding architecture {arch:?}")))?;
            ctx.remove_arch(ScmpArch::Native)
                .map_err(err("removing the native architecture".into()))?;
        }
        ctx.set_ctl_nnp(false)
            .map_err(err("leaving no_new_privs off".into()))?;
        // A binary tree of syscall numbers rather than a linear list: fewer
        // instructions per syscall (libseccomp >= 2.5).
        ctx.set_ctl_optimize(2)
            .map_err(err("choosing the binary-tree layout".into()))?;
        for (rule, conditions) in lowered.iter().filter(|(r, _)| !r.except.contains(&arch)) {
            for syscall in rule.syscalls {
                let Some(nr) = resolve(syscall, native) else {
                    continue;
                };
                for cmps in conditions {
                    let action = ScmpAction::Errno(rule.errno);
                    let added = if cmps.is_empty() {
                        ctx.add_rule(action, nr)
                    } else {
                        ctx.add_rule_conditional(action, nr, cmps)
                    };
                    added.map_err(|source| SeccompError::Build {
                        what: format!("rule for {} on {arch:?}", syscall.name),
                        source,
                    })?;
                }
            }
        }
        match &mut merged {
            None => merged = Some(ctx),
            Some(all) => {
                all.merge(ctx)
                    .map_err(err(format!("merging the {arch:?} filter")))?;
            }
        }
    }
    merged.ok_or(SeccompError::NoArchitecture)
}

/// The number to give libseccomp: by name when its table knows the call (it maps the name
/// onto each architecture), else the generic number on the native architecture.
fn resolve(syscall: &Syscall, native: bool) -> Option<ScmpSyscall> {
    match (ScmpSyscall::from_name(syscall.name), syscall.generic_nr) {
        (Ok(nr), _) => Some(nr),
        (Err(_), Some(nr)) if native => Some(ScmpSyscall::from(nr)),
        (Err(_), _) => None,
    }
}

/// Loads the filter into the calling process (and so into everything it executes).
pub fn apply(mode: SeccompMode) -> Result<(), SeccompError> {
    match mode {
        SeccompMode::Unconfined => Ok(()),
        SeccompMode::Default => build()?
            .load()
            .map_err(|source| SeccompError::Load { source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// moby/profiles seccomp/default.json v0.2.3 (vendored in moby at b985e2313a86):
    /// the unconditional allowlist, plus what its `includes` grant a container with
    /// Docker's default capabilities on a kernel >= 4.8 (ptrace, process_vm_*; chroot
    /// for CAP_SYS_CHROOT; arch_prctl and modify_ldt on x86).
    const DOCKER_ALLOWS: &str = "accept accept4 access adjtimex alarm bind brk cachestat \
        capget capset chdir chmod chown chown32 clock_adjtime clock_adjtime64 clock_getres \
        clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep \
        clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3 \
        epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 \
        epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat \
        faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat \
        fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr \
        flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync \
        ftruncate ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv \
        futex_wake futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid \
        geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid \
        getpgrp getpid getppid getpriority getrandom getresgid getresgid32 getresuid \
        getresuid32 getrlimit get_robust_list getrusage getsid getsockname getsockopt \
        get_thread_area gettid gettimeofday getuid getuid32 getxattr getxattrat \
        inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl \
        io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set \
        io_setup io_submit ipc kill landlock_add_rule landlock_create_ruleset \
        landlock_restrict_self lchown lchown32 lgetxattr link linkat listen listmount \
        listxattr listxattrat llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 \
        madvise map_shadow_stack membarrier memfd_create memfd_secret mincore mkdir mkdirat \
        mknod mknodat mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify \
        mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 \
        mq_unlink mremap mseal msgctl msgget msgrcv msgsnd msync munlock munlockall munmap \
        name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause \
        pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll \
        ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6 \
        pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv \
        recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr \
        removexattrat rename renameat renameat2 restart_syscall riscv_hwprobe rmdir rseq \
        rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn \
        rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo \
        sched_getaffinity sched_getattr sched_getparam sched_get_priority_max \
        sched_get_priority_min sched_getscheduler sched_rr_get_interval \
        sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam \
        sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop \
        semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid \
        setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer \
        setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid setresuid32 \
        setreuid setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area \
        set_tid_address setuid setuid32 setxattr setxattrat shmat shmctl shmdt shmget \
        shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn socketcall socketpair \
        splice stat stat64 statfs statfs64 statmount statx symlink symlinkat sync \
        sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete \
        timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64 \
        timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 \
        times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat uretprobe \
        utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write \
        writev ptrace process_vm_readv process_vm_writev chroot arch_prctl modify_ldt";

    const X86_ARCHES: [ScmpArch; 3] = [ScmpArch::X8664, ScmpArch::X86, ScmpArch::X32];

    /// Every name libseccomp knows on x86-64, i386 and x32.
    fn known_names() -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for arch in X86_ARCHES {
            let base = if arch == ScmpArch::X32 {
                0x4000_0000
            } else {
                0
            };
            for nr in 0..1100 {
                if let Ok(name) = ScmpSyscall::from(base + nr).get_name_by_arch(arch) {
                    names.insert(name);
                }
            }
        }
        names
    }

    fn refused_always() -> BTreeSet<&'static str> {
        PROFILE
            .iter()
            .filter(|r| r.when == When::Always && r.except.is_empty())
            .flat_map(|r| r.syscalls.iter().map(|s| s.name))
            .collect()
    }

    #[test]
    fn refuses_exactly_what_docker_does_not_allow() {
        let allowed: BTreeSet<&str> = DOCKER_ALLOWS.split_whitespace().collect();
        let with_conditions: BTreeSet<&str> = PROFILE
            .iter()
            .filter(|r| r.when != When::Always || !r.except.is_empty())
            .flat_map(|r| r.syscalls.iter().map(|s| s.name))
            .collect();
        let refused = refused_always();
        let known = known_names();
        let missing: Vec<&String> = known
            .iter()
            .filter(|n| !allowed.contains(n.as_str()))
            .filter(|n| !refused.contains(n.as_str()) && !with_conditions.contains(n.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "Docker refuses, the profile allows: {missing:?}"
        );
        let overreach: Vec<&&str> = refused.iter().filter(|n| allowed.contains(*n)).collect();
        assert!(
            overreach.is_empty(),
            "Docker allows, the profile refuses: {overreach:?}"
        );
    }

    #[test]
    fn every_name_resolves_or_has_a_number() {
        for rule in PROFILE {
            for s in rule.syscalls {
                let by_name = X86_ARCHES
                    .iter()
                    .any(|a| ScmpSyscall::from_name_by_arch(s.name, *a).is_ok());
                assert!(
                    by_name || s.generic_nr.is_some(),
                    "{} is unknown to libseccomp and has no number",
                    s.name
                );
                if let (Some(nr), Ok(known)) = (
                    s.generic_nr,
                    ScmpSyscall::from_name_by_arch(s.name, ScmpArch::X8664),
                ) {
                    assert_eq!(i32::from(known), nr, "{}'s number", s.name);
                    assert_eq!(
                        ScmpSyscall::from_name_by_arch(s.name, ScmpArch::X86)
                            .ok()
                            .map(i32::from),
                        Some(nr),
                        "{}'s i386 number",
                        s.name
                    );
                }
            }
        }
    }

    #[test]
    fn refuses_the_calls_the_issue_names() {
        let refused = refused_always();
        for name in [
            "unshare",
            "setns",
            "keyctl",
            "add_key",
            "request_key",
            "userfaultfd",
            "bpf",
            "perf_event_open",
            "kexec_load",
            "kexec_file_load",
            "open_by_handle_at",
            "mount",
            "umount",
            "umount2",
            "move_mount",
            "open_tree",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "mount_setattr",
            "pivot_root",
            "swapon",
            "swapoff",
            "reboot",
            "init_module",
            "finit_module",
            "delete_module",
            "iopl",
            "ioperm",
            "acct",
            "settimeofday",
            "clock_settime",
            "quotactl",
            "lookup_dcookie",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "syslog",
            "vhangup",
            "uselib",
            "ustat",
            "sysfs",
            "_sysctl",
            "get_kernel_syms",
            "query_module",
            "create_module",
            "nfsservctl",
            "vm86",
            "vm86old",
        ] {
            assert!(refused.contains(name), "{name} is not refused");
        }
        // Docker allows these (ptrace since 4.8): refusing them would break strace, gdb.
        for name in [
            "ptrace",
            "name_to_handle_at",
            "clock_adjtime",
            "adjtimex",
            "chroot",
        ] {
            assert!(!refused.contains(name), "{name} is refused");
        }
    }

    #[test]
    fn clone_is_refused_for_every_namespace_flag_and_clone3_with_enosys() {
        let clone = PROFILE
            .iter()
            .find(|r| r.syscalls[0].name == "clone")
            .unwrap();
        let rules = lower(clone.when);
        assert_eq!(rules.len(), 7);
        assert_eq!(CLONE_NEW_ANY, 0x7E02_0000);
        let clone3 = PROFILE
            .iter()
            .find(|r| r.syscalls[0].name == "clone3")
            .unwrap();
        assert_eq!((clone3.errno, clone3.when), (libc::ENOSYS, When::Always));
    }

    fn matches(patterns: &[(u32, u32)], v: u32) -> bool {
        patterns.iter().any(|(mask, value)| v & mask == *value)
    }

    #[test]
    fn complement_matches_everything_but_the_values() {
        let patterns = complement(PERSONALITIES);
        for v in PERSONALITIES {
            assert!(!matches(&patterns, *v), "{v:#x} is refused");
        }
        for v in [
            1,
            7,
            9,
            0x40000,
            0x0040_0008,
            0x0002_0001,
            0xffff_fffe,
            0x8000_0000,
        ] {
            assert!(matches(&patterns, v), "{v:#x} is allowed");
        }
        // Disjoint patterns, so each refused value matches exactly one.
        let mut state = 0x1234_5678u32;
        for _ in 0..100_000 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let hits = patterns.iter().filter(|(m, val)| state & m == *val).count();
            assert_eq!(
                hits,
                usize::from(!PERSONALITIES.contains(&state)),
                "{state:#x}"
            );
        }
        assert_eq!(complement(&[]), [(0, 0)]);
        assert!(complement(&[5]).len() == 32);
    }

    #[test]
    fn the_filter_builds_for_every_architecture() {
        let ctx = build().unwrap();
        for arch in filter_arches() {
            assert!(ctx.is_arch_present(*arch).unwrap(), "{arch:?}");
        }
        assert!(!ctx.get_ctl_nnp().unwrap());
        let mut bpf = tempfile::tempfile().unwrap();
        ctx.export_bpf(&bpf).unwrap();
        let size = std::io::Seek::seek(&mut bpf, std::io::SeekFrom::End(0)).unwrap();
        // struct sock_filter is 8 bytes; the kernel takes at most 4096 instructions.
        assert!(size / 8 <= 4096, "{} instructions", size / 8);
        assert!(size / 8 > 100, "{} instructions", size / 8);
    }
}
