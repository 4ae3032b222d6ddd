//! `xbake doctor`: what this machine can build, and for each thing it cannot, why and the
//! exact remedy. The facts are gathered once ([`gather`]); judging them is a pure
//! function ([`assess`]), so every verdict and remedy is unit-tested without the
//! machine it describes.

use super::Failure;
use crate::platform::Platform;
use serde::Serialize;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// The platforms to check (comma-separated or repeated); the exit code is 0 only when
    /// every one can build. Default: this machine's, arm/v7, arm64, ppc64le and s390x.
    #[arg(long = "arch", visible_alias = "platform", value_name = "LIST", action = clap::ArgAction::Append)]
    arch: Vec<String>,
    /// The report as JSON, for CI.
    #[arg(long)]
    json: bool,
}

/// The platforms checked without `--arch`: what the Kubernetes images ship for.
const DEFAULT_PLATFORMS: [&str; 4] = ["arm/v7", "arm64", "ppc64le", "s390x"];

/// What was found, before any judgement.
#[derive(Clone, Debug)]
pub struct Facts {
    pub kernel: String,
    pub uid: u32,
    pub user: String,
    /// A user namespace was created for real (or why not).
    pub userns: Result<(), String>,
    pub max_user_namespaces: Option<u64>,
    /// Debian's and Ubuntu's `kernel.unprivileged_userns_clone`, where it exists.
    pub unprivileged_userns_clone: Option<u64>,
    /// Ubuntu's `kernel.apparmor_restrict_unprivileged_userns`, where it exists.
    pub apparmor_restrict: Option<u64>,
    /// How the build namespace would map ids.
    pub ids: IdsFact,
    pub host: Platform,
    /// Per platform to check.
    pub emulators: Vec<EmulatorFact>,
    /// The network helper found (path and version), or why none.
    pub network: Result<(String, String), String>,
    /// Whether /dev/net/tun opens for the helper, or why not (with the remedy).
    pub tun: Result<(), String>,
    /// Controllers a build could put its steps' limits in.
    pub cgroups: crate::sandbox::limits::Coverage,
}

#[derive(Clone, Debug)]
pub enum IdsFact {
    /// Root: the host ranges are written directly.
    Root,
    /// Subordinate ranges through newuidmap/newgidmap.
    Subordinate,
    /// Only the caller is mapped: why (missing helpers, missing ranges).
    SelfOnly {
        why: String,
    },
    Broken {
        why: String,
    },
}

#[derive(Clone, Debug)]
pub struct EmulatorFact {
    pub platform: Platform,
    /// None: native.
    pub emulator: Option<Result<EmulatorFound, String>>,
}

#[derive(Clone, Debug)]
pub struct EmulatorFound {
    pub path: PathBuf,
    pub version: String,
    /// The host's binfmt_misc entry for it: None if there is none, else whether it is
    /// enabled with the F flag.
    pub host_entry: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Clone, Debug, Serialize)]
pub struct Line {
    pub check: String,
    pub status: Status,
    pub detail: String,
    /// What to do about it (empty when OK).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub remedy: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub lines: Vec<Line>,
    /// Platform → whether it can build here.
    pub platforms: Vec<(String, bool)>,
    /// Every requested platform can build.
    pub ok: bool,
}

fn line(check: &str, status: Status, detail: String, remedy: &str) -> Line {
    Line {
        check: check.to_string(),
        status,
        detail,
        remedy: remedy.to_string(),
    }
}

/// The verdicts on `facts`, in the order a person fixes them.
pub fn assess(facts: &Facts) -> Report {
    let mut lines = Vec::new();
    let version = crate::emulation::kernel_version(&facts.kernel);
    let at_least = |want: (u32, u32)| version.is_some_and(|v| v >= want);
    let overlay = at_least((5, 11));
    let private_binfmt = at_least((6, 7));
    lines.push(line(
        "kernel",
        if overlay { Status::Ok } else { Status::Warn },
        format!(
            "Linux {}: overlay snapshots in a user namespace {}, a private binfmt_misc {}",
            facts.kernel,
            if overlay { "yes" } else { "no (5.11+)" },
            if private_binfmt { "yes" } else { "no (6.7+)" }
        ),
        if overlay {
            ""
        } else {
            "builds fall back to unpacking every layer per stage; Linux 5.11 or newer is faster"
        },
    ));

    let mut userns_ok = facts.userns.is_ok();
    let userns_remedy = if facts.max_user_namespaces == Some(0) {
        "as root: sysctl -w user.max_user_namespaces=15000 (and in /etc/sysctl.d/ for good)"
    } else if facts.uid != 0 && facts.unprivileged_userns_clone == Some(0) {
        "as root: sysctl -w kernel.unprivileged_userns_clone=1 (and in /etc/sysctl.d/ for good)"
    } else if facts.uid != 0 && facts.apparmor_restrict == Some(1) {
        "AppArmor restricts unprivileged user namespaces: as root, sysctl -w \
         kernel.apparmor_restrict_unprivileged_userns=0, or give xbake an AppArmor profile \
         with `userns,` (as Ubuntu does for podman)"
    } else {
        "a container runtime or seccomp policy forbids unshare(CLONE_NEWUSER) here: run \
         xbake on the host, or in a pod/container that allows user namespaces"
    };
    lines.push(match &facts.userns {
        Ok(()) => line(
            "user namespaces",
            Status::Ok,
            "this user can create one".into(),
            "",
        ),
        Err(why) => line(
            "user namespaces",
            Status::Fail,
            format!("creating one failed: {why}"),
            userns_remedy,
        ),
    });

    let user = &facts.user;
    let ids_line = match &facts.ids {
        IdsFact::Root => line(
            "id mapping",
            Status::Ok,
            "root: steps run as a range of unprivileged host ids".into(),
            "",
        ),
        IdsFact::Subordinate => line(
            "id mapping",
            Status::Ok,
            format!(
                "{user} has /etc/subuid and /etc/subgid ranges; newuidmap and newgidmap are there"
            ),
            "",
        ),
        IdsFact::SelfOnly { why } => Line {
            check: "id mapping".into(),
            status: Status::Warn,
            detail: format!(
                "only {user} is mapped ({why}): files of other owners keep their owner in an \
                 xattr, and steps that switch users (apt's _apt) fail"
            ),
            remedy: format!(
                "as root: apt-get install uidmap; usermod --add-subuids 100000-165535 \
                 --add-subgids 100000-165535 {user}"
            ),
        },
        IdsFact::Broken { why } => {
            userns_ok = false;
            line(
                "id mapping",
                Status::Fail,
                why.clone(),
                "fix /etc/subuid and /etc/subgid",
            )
        }
    };
    lines.push(ids_line);

    let mut platforms = Vec::new();
    for e in &facts.emulators {
        let name = e.platform.to_string();
        let (status, detail, remedy) = match &e.emulator {
            None => (
                Status::Ok,
                format!("native on {}", facts.host),
                String::new(),
            ),
            Some(Err(why)) => (
                Status::Fail,
                why.clone(),
                "as root: apt-get install qemu-user-static (or point XBAKE_QEMU_PATH at the \
                 folder holding static qemu-*-static emulators)"
                    .to_string(),
            ),
            Some(Ok(found)) => {
                let host = match found.host_entry {
                    None => "no host binfmt_misc entry",
                    Some(true) => "host binfmt_misc entry with the F flag",
                    Some(false) => "host binfmt_misc entry without the F flag",
                };
                let reachable = private_binfmt || found.host_entry.is_some();
                (
                    if reachable { Status::Ok } else { Status::Fail },
                    format!(
                        "{} ({}); {host}; {}",
                        found.path.display(),
                        if found.version.is_empty() {
                            "version unknown"
                        } else {
                            &found.version
                        },
                        if private_binfmt {
                            "registered in the build's own binfmt_misc instance"
                        } else if reachable {
                            "used through the host's entry"
                        } else {
                            "this kernel has no private binfmt_misc instance"
                        }
                    ),
                    if reachable {
                        String::new()
                    } else {
                        "build on Linux 6.7 or newer, or as root register the emulators \
                         host-wide: apt-get install qemu-user-static binfmt-support"
                            .to_string()
                    },
                )
            }
        };
        let can = status == Status::Ok && userns_ok;
        platforms.push((name.clone(), can));
        lines.push(Line {
            check: format!("platform {name}"),
            status,
            detail,
            remedy,
        });
    }

    lines.push(match (&facts.network, &facts.tun) {
        (Ok((path, version)), Ok(())) => line(
            "network helper",
            Status::Ok,
            format!("{path} ({version}); /dev/net/tun opens"),
            "",
        ),
        (Ok((path, _)), Err(why)) => Line {
            check: "network helper".into(),
            status: Status::Warn,
            detail: format!("{path} is there, but {why}"),
            remedy: "or build with --network none (RUN steps offline)".into(),
        },
        (Err(why), _) => Line {
            check: "network helper".into(),
            status: Status::Warn,
            detail: why.clone(),
            remedy: "as root: apt-get install slirp4netns (or passt); or build with --network \
                     none (RUN steps offline)"
                .into(),
        },
    });

    let c = facts.cgroups;
    let enforced: Vec<&str> = [("memory", c.memory), ("pids", c.pids), ("cpu", c.cpu)]
        .iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| *n)
        .collect();
    lines.push(if enforced.len() == 3 {
        line(
            "cgroups",
            Status::Ok,
            "step limits (--memory, --pids-limit, --cpus) in delegated cgroups".into(),
            "",
        )
    } else {
        Line {
            check: "cgroups".into(),
            status: Status::Warn,
            detail: format!(
                "cgroup controllers for step limits: {}; the others fall back to rlimits \
                 (--memory as RLIMIT_AS, --pids-limit as RLIMIT_NPROC, no --cpus)",
                if enforced.is_empty() {
                    "none".to_string()
                } else {
                    enforced.join(", ")
                }
            ),
            remedy: "run as root, or under systemd with delegation: systemd-run --user \
                     --scope -p Delegate=yes xbake …"
                .into(),
        }
    });

    let ok = platforms.iter().all(|(_, can)| *can);
    Report {
        lines,
        platforms,
        ok,
    }
}

/// Reads this machine's facts for `platforms`.
pub fn gather(platforms: &[Platform]) -> Facts {
    use crate::sandbox::idmap::IdMapPlan;
    let read_u64 = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
    };
    let uid = nix::unistd::Uid::current();
    let user = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name);
    let ids = match crate::sandbox::userns::current_plan() {
        Ok(IdMapPlan::Direct { .. }) => IdsFact::Root,
        Ok(IdMapPlan::Subordinate { .. }) => IdsFact::Subordinate,
        Ok(IdMapPlan::SelfOnly { .. }) => IdsFact::SelfOnly {
            why: self_only_reason(&user),
        },
        Err(e) => IdsFact::Broken { why: e.to_string() },
    };
    let host = Platform::host();
    let search = crate::emulation::qemu::search_path();
    let emulators = platforms
        .iter()
        .map(|p| EmulatorFact {
            platform: *p,
            emulator: (!p.runs_natively_on(&host)).then(|| {
                crate::emulation::qemu::find_emulator(p, &search)
                    .map_err(|e| e.to_string())
                    .map(|path| EmulatorFound {
                        version: emulator_version(&path),
                        host_entry: host_entry(p),
                        path,
                    })
            }),
        })
        .collect();
    let helper = crate::sandbox::network::find_helper();
    let tun = match &helper {
        Ok(h) => crate::sandbox::network::check_tun(h).map_err(|e| e.to_string()),
        Err(_) => Ok(()),
    };
    let cgroups = crate::sandbox::limits::cgroup::LauncherCgroups::create(None)
        .cgroups
        .coverage();
    Facts {
        kernel: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".into()),
        uid: uid.as_raw(),
        user,
        userns: crate::sandbox::userns::probe_user_namespace(),
        max_user_namespaces: read_u64("/proc/sys/user/max_user_namespaces"),
        unprivileged_userns_clone: read_u64("/proc/sys/kernel/unprivileged_userns_clone"),
        apparmor_restrict: read_u64("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
        ids,
        host,
        emulators,
        network: helper
            .map(|h| (h.name(), emulator_version(h.path())))
            .map_err(|e| e.to_string()),
        tun,
        cgroups,
    }
}

fn self_only_reason(user: &str) -> String {
    let has_helpers = ["newuidmap", "newgidmap"]
        .iter()
        .all(|p| crate::sandbox::userns::find_program(p).is_some());
    if !has_helpers {
        return "newuidmap/newgidmap are missing".into();
    }
    let listed = |file: &str| {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .any(|l| l.split(':').next() == Some(user))
    };
    match (listed("/etc/subuid"), listed("/etc/subgid")) {
        (false, _) => format!("{user} has no range in /etc/subuid"),
        (_, false) => format!("{user} has no range in /etc/subgid"),
        _ => "XBAKE_USERNS=self, or ranges too small".into(),
    }
}

/// The first line of `PROGRAM --version`, or empty.
fn emulator_version(path: &std::path::Path) -> String {
    crate::emulation::qemu::version_of(path).unwrap_or_default()
}

/// The host's binfmt_misc entry for the platform's emulator: None if none claims it,
/// else whether it is enabled with F.
fn host_entry(platform: &Platform) -> Option<bool> {
    let ours = crate::emulation::table::entry_for(platform.qemu_name()).ok()?;
    let entries = crate::emulation::binfmt::host_entries(std::path::Path::new(
        crate::emulation::HOST_BINFMT_DIR,
    ));
    let found = entries.iter().find(|h| h.claims(&ours))?;
    Some(!found.needs_interpreter_in_rootfs())
}

pub fn run(args: DoctorArgs) -> Result<u8, Failure> {
    let host = Platform::host();
    let platforms: Vec<Platform> = if args.arch.is_empty() {
        std::iter::once(Ok(host))
            .chain(DEFAULT_PLATFORMS.iter().map(|p| p.parse::<Platform>()))
            .collect::<Result<_, _>>()
            .map_err(|e| super::UsageError(format!("{e}")))?
    } else {
        Platform::parse_list(&args.arch.join(","))?
    };
    let report = assess(&gather(&platforms));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for l in &report.lines {
            let tag = match l.status {
                Status::Ok => "OK  ",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            println!("{tag} {}: {}", l.check, l.detail);
            if !l.remedy.is_empty() {
                println!("     fix: {}", l.remedy);
            }
        }
        let (can, cannot): (Vec<_>, Vec<_>) = report.platforms.iter().partition(|(_, ok)| *ok);
        let names = |v: &[&(String, bool)]| {
            v.iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if cannot.is_empty() {
            println!("can build: {}", names(&can));
        } else {
            println!("cannot build: {}", names(&cannot));
        }
    }
    Ok(if report.ok { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::limits::Coverage;

    fn facts() -> Facts {
        let arm64: Platform = "arm64".parse().unwrap();
        Facts {
            kernel: "6.18.3-amd64".into(),
            uid: 1000,
            user: "dev".into(),
            userns: Ok(()),
            max_user_namespaces: Some(15000),
            unprivileged_userns_clone: Some(1),
            apparmor_restrict: None,
            ids: IdsFact::Subordinate,
            host: "amd64".parse().unwrap(),
            emulators: vec![
                EmulatorFact {
                    platform: "amd64".parse().unwrap(),
                    emulator: None,
                },
                EmulatorFact {
                    platform: arm64,
                    emulator: Some(Ok(EmulatorFound {
                        path: "/usr/bin/qemu-aarch64-static".into(),
                        version: "qemu-aarch64 version 7.2".into(),
                        host_entry: None,
                    })),
                },
            ],
            network: Ok((
                "/usr/bin/slirp4netns".into(),
                "slirp4netns version 1.2.0".into(),
            )),
            tun: Ok(()),
            cgroups: Coverage {
                memory: true,
                pids: true,
                cpu: true,
            },
        }
    }

    fn status_of<'a>(report: &'a Report, check: &str) -> &'a Line {
        report
            .lines
            .iter()
            .find(|l| l.check == check)
            .unwrap_or_else(|| panic!("no {check} in {report:?}"))
    }

    #[test]
    fn a_healthy_machine_can_build_every_platform() {
        let report = assess(&facts());
        assert!(report.ok, "{report:?}");
        assert!(
            report.lines.iter().all(|l| l.status == Status::Ok),
            "{report:?}"
        );
    }

    #[test]
    fn an_old_kernel_needs_host_entries_for_foreign_platforms() {
        let mut f = facts();
        f.kernel = "6.1.0-18-amd64".into();
        let report = assess(&f);
        assert!(!report.ok);
        let line = status_of(&report, "platform linux/arm64");
        assert_eq!(line.status, Status::Fail);
        assert!(line.remedy.contains("binfmt-support"), "{line:?}");
        // With a host entry (binfmt-support's, with F) it works there too.
        if let Some(Some(Ok(found))) = f.emulators.get_mut(1).map(|e| e.emulator.as_mut()) {
            found.host_entry = Some(true);
        }
        assert!(assess(&f).ok);
    }

    #[test]
    fn user_namespace_refusals_name_the_switch_that_refuses() {
        for (setup, remedy) in [
            (
                (Some(0), Some(1), None),
                "sysctl -w user.max_user_namespaces=15000",
            ),
            (
                (Some(15000), Some(0), None),
                "sysctl -w kernel.unprivileged_userns_clone=1",
            ),
            (
                (Some(15000), None, Some(1)),
                "kernel.apparmor_restrict_unprivileged_userns=0",
            ),
            ((Some(15000), None, None), "allows user namespaces"),
        ] {
            let mut f = facts();
            f.userns = Err("EPERM".into());
            (
                f.max_user_namespaces,
                f.unprivileged_userns_clone,
                f.apparmor_restrict,
            ) = setup;
            let report = assess(&f);
            assert!(!report.ok, "no platform builds without a user namespace");
            let line = status_of(&report, "user namespaces");
            assert_eq!(line.status, Status::Fail);
            assert!(line.remedy.contains(remedy), "{setup:?}: {line:?}");
        }
    }

    #[test]
    fn missing_ranges_network_helper_and_cgroups_warn_with_their_fixes() {
        let mut f = facts();
        f.ids = IdsFact::SelfOnly {
            why: "dev has no range in /etc/subuid".into(),
        };
        f.network =
            Err("RUN steps get a private network by default, which needs slirp4netns".into());
        f.cgroups = Coverage {
            memory: false,
            pids: true,
            cpu: false,
        };
        let report = assess(&f);
        assert!(report.ok, "warnings do not stop a build: {report:?}");
        let ids = status_of(&report, "id mapping");
        assert_eq!(ids.status, Status::Warn);
        assert!(
            ids.remedy
                .contains("usermod --add-subuids 100000-165535 --add-subgids 100000-165535 dev")
        );
        let net = status_of(&report, "network helper");
        assert_eq!(net.status, Status::Warn);
        assert!(
            net.remedy.contains("apt-get install slirp4netns"),
            "{net:?}"
        );
        let cg = status_of(&report, "cgroups");
        assert_eq!(cg.status, Status::Warn);
        assert!(cg.detail.contains("pids"), "{cg:?}");
        assert!(cg.remedy.contains("Delegate=yes"), "{cg:?}");
    }

    #[test]
    fn a_missing_emulator_fails_only_its_platform() {
        let mut f = facts();
        f.emulators[1].emulator = Some(Err("no QEMU user-mode emulator for linux/arm64".into()));
        let report = assess(&f);
        assert!(!report.ok);
        assert_eq!(
            report.platforms,
            vec![
                ("linux/amd64".to_string(), true),
                ("linux/arm64".to_string(), false)
            ]
        );
        let line = status_of(&report, "platform linux/arm64");
        assert!(
            line.remedy.contains("apt-get install qemu-user-static"),
            "{line:?}"
        );
    }
}
