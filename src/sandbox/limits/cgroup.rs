//! Cgroups for the build and its steps.
//!
//! The launcher (userns.rs, outside the build's user namespace; real root in a root
//! build) creates one cgroup for the build beneath its own cgroup in every hierarchy
//! that has a controller xbake uses (`memory`, `pids`, `cpu`), and hands it to the
//! build namespace's root with chown, as systemd's `Delegate=` does (systemd's
//! CGROUP_DELEGATION.md). Inside, each step gets a child cgroup `step-PID` with the
//! step's limits; the builder moves the step's monitor into it before the step runs
//! anything (run.rs), so every process of the step is in it. The launcher removes the
//! build's cgroup when the build ends; a later launcher removes those of a build that
//! was killed (`xbake-PID` whose PID is gone), as the workspace sweep does.
//!
//! cgroup v1 (this machine's hybrid layout: one hierarchy per controller) and cgroup v2
//! (one hierarchy, controllers given to children through `cgroup.subtree_control`)
//! differ only in file names here. v2 needs the launcher's cgroup to be able to give
//! controllers to children, which the kernel refuses while that cgroup holds processes
//! ("no internal processes", cgroup-v2.rst) unless it is the root cgroup; otherwise
//! the build runs without cgroups and says why.
//!
//! Every file access goes through [`CgroupFs`], so the logic is tested on a temporary
//! folder laid out like cgroupfs.

use super::{Coverage, LimitHit, StepLimits};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// The controllers xbake uses.
const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];
/// The launcher's build cgroup: `xbake-<launcher pid>`.
const BUILD_PREFIX: &str = "xbake-";
/// A step's cgroup inside it: `step-<monitor pid>`.
const STEP_PREFIX: &str = "step-";
/// v2 only: the leaf the builder moves to, so the build cgroup holds no process itself.
const BUILDER_LEAF: &str = "build";
/// The environment variable that carries [`BuildCgroups`] from launcher to build.
const ENV: &str = "XBAKE_CGROUPS";
/// cpu controller period for `--cpus` (docker's and the kernel's default, 100 ms).
const CPU_PERIOD_US: u64 = 100_000;
/// The monitor and the step's init are in the step's cgroup too (see init.rs).
const OWN_PROCESSES: u64 = 2;

/// File access to cgroupfs, so the logic runs on a fake tree in tests.
pub trait CgroupFs {
    fn read(&self, path: &Path) -> io::Result<String>;
    /// Writes a control file (never creates one: cgroupfs makes them).
    fn write(&self, path: &Path, text: &str) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
    fn mkdir(&self, path: &Path) -> io::Result<()>;
    /// Removes an empty cgroup (its control files go with it, as rmdir on cgroupfs).
    fn rmdir(&self, path: &Path) -> io::Result<()>;
    fn chown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()>;
    fn subdirs(&self, path: &Path) -> io::Result<Vec<String>>;
    fn pid_alive(&self, pid: i32) -> bool;
}

/// The kernel's cgroupfs.
pub struct RealFs;

impl CgroupFs for RealFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }
    fn write(&self, path: &Path, text: &str) -> io::Result<()> {
        use std::io::Write;
        // One write(2) per value: cgroupfs parses each write on its own.
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)?
            .write_all(text.as_bytes())
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn mkdir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }
    fn rmdir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }
    fn chown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
    }
    fn subdirs(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(names)
    }
    fn pid_alive(&self, pid: i32) -> bool {
        // kill(pid, 0) fails with ESRCH only when no such process exists (EPERM: it
        // exists but is someone else's).
        !matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        )
    }
}

/// One cgroup hierarchy this process is in: its controllers and this process's own
/// cgroup folder there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    pub v2: bool,
    /// The controllers xbake uses that this hierarchy has (v1: from the mount options;
    /// v2: from the own cgroup's `cgroup.controllers`, filled in by [`BuildCgroups::create`]).
    pub controllers: Vec<String>,
    pub own: PathBuf,
}

/// This process's hierarchies, from /proc/self/cgroup and /proc/self/mountinfo (pure).
pub fn hierarchies(proc_cgroup: &str, mountinfo: &str) -> Vec<Hierarchy> {
    let mut found: Vec<Hierarchy> = Vec::new();
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(root), Some(point), Some(fstype), Some(options)) = (
            fields.get(3),
            fields.get(4),
            fields.get(dash + 1),
            fields.get(dash + 3),
        ) else {
            continue;
        };
        let (v2, controllers, path) = match *fstype {
            "cgroup2" => {
                let path = proc_cgroup.lines().find_map(|l| l.strip_prefix("0::"));
                (true, Vec::new(), path)
            }
            "cgroup" => {
                let ours: Vec<String> = options
                    .split(',')
                    .filter(|o| CONTROLLERS.contains(o))
                    .map(String::from)
                    .collect();
                if ours.is_empty() {
                    continue;
                }
                // `4:memory:/path`, or `1:cpu,cpuacct:/path` for co-mounted controllers.
                let path = proc_cgroup.lines().find_map(|l| {
                    let mut parts = l.splitn(3, ':');
                    let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
                    names
                        .split(',')
                        .any(|n| ours.iter().any(|o| o == n))
                        .then_some(path)
                });
                (false, ours, path)
            }
            _ => continue,
        };
        let Some(path) = path else { continue };
        let root = unescape(root);
        // A mount of a sub-tree (a container's) shows the cgroups beneath its root.
        let Some(rest) = Path::new(path).strip_prefix(&root).ok() else {
            continue;
        };
        let own = PathBuf::from(unescape(point)).join(rest);
        if found
            .iter()
            .any(|h| h.v2 == v2 && h.controllers == controllers)
        {
            continue; // the same hierarchy mounted twice
        }
        found.push(Hierarchy {
            v2,
            controllers,
            own,
        });
    }
    found
}

/// mountinfo escapes space, tab, newline and backslash as octal (proc_pid_mountinfo(5)).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = (bytes[i] == b'\\' && bytes.len() - i >= 4)
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 4]).ok())
            .flatten()
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        if let Some(v) = octal {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where one controller's limits for this build go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Place {
    /// The build's cgroup folder; steps get children of it.
    pub dir: PathBuf,
    pub v2: bool,
}

/// The build's cgroups, made by the launcher and passed to the build in [`ENV`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildCgroups {
    pub memory: Option<Place>,
    pub pids: Option<Place>,
    pub cpu: Option<Place>,
    /// Why a controller is missing, by controller: the text warnings quote.
    pub unavailable: BTreeMap<String, String>,
}

impl BuildCgroups {
    /// Launcher side: sweeps the cgroups of dead builds, then creates this build's in
    /// every hierarchy with a controller xbake uses, owned by `owner` (the build
    /// namespace's root, for a root build; None: this process's own ids already).
    pub fn create(
        fs: &dyn CgroupFs,
        hierarchies: &[Hierarchy],
        launcher_pid: i32,
        owner: Option<(u32, u32)>,
    ) -> BuildCgroups {
        let mut built = BuildCgroups::default();
        let name = format!("{BUILD_PREFIX}{launcher_pid}");
        // v1 controllers first: a controller bound to a v1 hierarchy is not in v2's.
        let mut ordered: Vec<&Hierarchy> = hierarchies.iter().filter(|h| !h.v2).collect();
        ordered.extend(hierarchies.iter().filter(|h| h.v2));
        for h in ordered {
            let wanted: Vec<&str> = if h.v2 {
                let offered = fs
                    .read(&h.own.join("cgroup.controllers"))
                    .unwrap_or_default();
                CONTROLLERS
                    .into_iter()
                    .filter(|c| built.slot(c).is_none())
                    .filter(|c| offered.split_whitespace().any(|o| o == *c))
                    .collect()
            } else {
                h.controllers
                    .iter()
                    .map(String::as_str)
                    .filter(|c| built.slot(c).is_none())
                    .collect()
            };
            if wanted.is_empty() {
                continue;
            }
            sweep(fs, &h.own);
            let dir = h.own.join(&name);
            match make_build_cgroup(fs, h, &dir, &wanted, owner) {
                Ok(()) => {
                    for c in wanted {
                        *built.slot_mut(c) = Some(Place {
                            dir: dir.clone(),
                            v2: h.v2,
                        });
                    }
                }
                Err(reason) => {
                    let _ = remove_tree(fs, &dir);
                    for c in wanted {
                        built.unavailable.insert(c.to_string(), reason.clone());
                    }
                }
            }
        }
        for c in CONTROLLERS {
            if built.slot(c).is_none() && !built.unavailable.contains_key(c) {
                built.unavailable.insert(
                    c.to_string(),
                    format!("no cgroup hierarchy here offers the {c} controller"),
                );
            }
        }
        built
    }

    /// v2, launcher side: moves the build process into the build cgroup's leaf, so that
    /// the build cgroup is the nearest common ancestor of the builder and its steps,
    /// which the build namespace's root owns (cgroup-v2.rst, "Delegation Containment").
    pub fn adopt(&self, fs: &dyn CgroupFs, pid: i32) -> io::Result<()> {
        let mut dirs: Vec<&Path> = self
            .places()
            .filter(|p| p.v2)
            .map(|p| p.dir.as_path())
            .collect();
        dirs.dedup();
        for dir in dirs {
            fs.write(
                &dir.join(BUILDER_LEAF).join("cgroup.procs"),
                &pid.to_string(),
            )?;
        }
        Ok(())
    }

    /// Launcher side, after the build: removes every cgroup this build made.
    pub fn remove(&self, fs: &dyn CgroupFs) {
        let mut dirs: Vec<&Path> = self.places().map(|p| p.dir.as_path()).collect();
        dirs.sort();
        dirs.dedup();
        for dir in dirs {
            // A step killed with the build may still be exiting; try a moment longer.
            for _ in 0..50 {
                match remove_tree(fs, dir) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        std::thread::sleep(std::time::Duration::from_millis(10))
                    }
                    _ => break,
                }
            }
        }
    }

    pub fn coverage(&self) -> Coverage {
        Coverage {
            memory: self.memory.is_some(),
            pids: self.pids.is_some(),
            cpu: self.cpu.is_some(),
        }
    }

    fn places(&self) -> impl Iterator<Item = &Place> {
        [&self.memory, &self.pids, &self.cpu].into_iter().flatten()
    }

    fn slot(&self, controller: &str) -> &Option<Place> {
        match controller {
            "memory" => &self.memory,
            "pids" => &self.pids,
            _ => &self.cpu,
        }
    }

    fn slot_mut(&mut self, controller: &str) -> &mut Option<Place> {
        match controller {
            "memory" => &mut self.memory,
            "pids" => &mut self.pids,
            _ => &mut self.cpu,
        }
    }

    /// For the launcher to pass on.
    pub fn to_env(&self) -> (&'static str, String) {
        (ENV, serde_json::to_string(self).unwrap_or_default())
    }

    /// In the build: what the launcher made (read once).
    pub fn current() -> &'static BuildCgroups {
        static CURRENT: std::sync::OnceLock<BuildCgroups> = std::sync::OnceLock::new();
        CURRENT.get_or_init(|| {
            std::env::var(ENV)
                .ok()
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or_else(|| BuildCgroups {
                    unavailable: CONTROLLERS
                        .map(|c| {
                            (
                                c.into(),
                                "the build was not started by xbake's launcher".into(),
                            )
                        })
                        .into(),
                    ..BuildCgroups::default()
                })
        })
    }

    /// Builder side, at the hook between the step's `ready` and `go`: a cgroup for the
    /// step with its limits, and the step's monitor `pid` in it. None when no limit of
    /// the step is enforced by a cgroup.
    pub fn enter_step<'a>(
        &self,
        fs: &'a dyn CgroupFs,
        limits: &StepLimits,
        pid: i32,
    ) -> Result<Option<StepCgroup<'a>>, String> {
        if !limits.by_cgroup.any() {
            return Ok(None);
        }
        let name = format!("{STEP_PREFIX}{pid}");
        let mut step = StepCgroup {
            fs,
            dirs: Vec::new(),
            memory: None,
            pids: None,
        };
        let requested = &limits.requested;
        let mut settings: Vec<(&Place, &str, String)> = Vec::new();
        let mut optional: Vec<(&Place, &str, String)> = Vec::new();
        if let (true, Some(place), Some(bytes)) =
            (limits.by_cgroup.memory, &self.memory, requested.memory)
        {
            step.memory = Some((place.clone(), bytes));
            if place.v2 {
                settings.push((place, "memory.max", bytes.to_string()));
                // No swap: a step must not get around its limit by swapping.
                optional.push((place, "memory.swap.max", "0".into()));
            } else {
                settings.push((place, "memory.limit_in_bytes", bytes.to_string()));
                // memory+swap; the file exists only with swap accounting on.
                optional.push((place, "memory.memsw.limit_in_bytes", bytes.to_string()));
            }
        }
        if let (true, Some(place), Some(n)) = (limits.by_cgroup.pids, &self.pids, requested.pids) {
            step.pids = Some((place.clone(), n));
            settings.push((place, "pids.max", (n + OWN_PROCESSES).to_string()));
        }
        if let (true, Some(place), Some(m)) = (limits.by_cgroup.cpu, &self.cpu, requested.millicpus)
        {
            // quota per period: 1.5 CPUs is 150 ms of CPU time every 100 ms.
            let quota = m * CPU_PERIOD_US / 1000;
            if place.v2 {
                settings.push((place, "cpu.max", format!("{quota} {CPU_PERIOD_US}")));
            } else {
                settings.push((place, "cpu.cfs_period_us", CPU_PERIOD_US.to_string()));
                settings.push((place, "cpu.cfs_quota_us", quota.to_string()));
            }
        }
        let mut places: Vec<&Place> = settings.iter().map(|(p, _, _)| *p).collect();
        places.dedup();
        for place in places {
            let dir = place.dir.join(&name);
            if !step.dirs.contains(&dir) {
                fs.mkdir(&dir)
                    .map_err(|e| format!("creating the step's cgroup {}: {e}", dir.display()))?;
                step.dirs.push(dir);
            }
        }
        let dir_of = |place: &Place| place.dir.join(&name);
        for (place, file, value) in &settings {
            let path = dir_of(place).join(file);
            fs.write(&path, value)
                .map_err(|e| format!("writing {value} to {}: {e}", path.display()))?;
        }
        for (place, file, value) in &optional {
            let path = dir_of(place).join(file);
            if fs.exists(&path) {
                fs.write(&path, value)
                    .map_err(|e| format!("writing {value} to {}: {e}", path.display()))?;
            }
        }
        for dir in &step.dirs {
            let procs = dir.join("cgroup.procs");
            fs.write(&procs, &pid.to_string()).map_err(|e| {
                format!("moving the step (pid {pid}) into {}: {e}", procs.display())
            })?;
        }
        Ok(Some(step))
    }
}

fn make_build_cgroup(
    fs: &dyn CgroupFs,
    h: &Hierarchy,
    dir: &Path,
    wanted: &[&str],
    owner: Option<(u32, u32)>,
) -> Result<(), String> {
    let names = wanted.join(", ");
    let refused = |what: String, e: io::Error| {
        let advice = if e.kind() == io::ErrorKind::PermissionDenied {
            if h.v2 {
                "; no cgroup v2 subtree is delegated to this user"
            } else {
                "; cgroup v1 hierarchies belong to root, rootless builds need a delegated cgroup v2 subtree"
            }
        } else {
            ""
        };
        // The kind without "(os error 13)": these texts end up in warnings.
        format!("{what}: {}{advice}", e.kind())
    };
    if h.v2 {
        let control = h.own.join("cgroup.subtree_control");
        let enabled = fs.read(&control).unwrap_or_default();
        let missing: Vec<String> = wanted
            .iter()
            .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
            .map(|c| format!("+{c}"))
            .collect();
        if !missing.is_empty() {
            fs.write(&control, &missing.join(" ")).map_err(|e| {
                if e.raw_os_error() == Some(libc::EBUSY) {
                    format!(
                        "cgroup v2: {} holds processes, so it cannot give the {names} \
                         controllers to a child cgroup (the no-internal-processes rule); \
                         run xbake in a cgroup of its own with those controllers delegated",
                        h.own.display()
                    )
                } else {
                    refused(format!("enabling {names} in {}", control.display()), e)
                }
            })?;
        }
    }
    fs.mkdir(dir)
        .map_err(|e| refused(format!("creating {}", dir.display()), e))?;
    if h.v2 {
        fs.mkdir(&dir.join(BUILDER_LEAF))
            .map_err(|e| refused(format!("creating {}/{BUILDER_LEAF}", dir.display()), e))?;
        let plus: Vec<String> = wanted.iter().map(|c| format!("+{c}")).collect();
        let control = dir.join("cgroup.subtree_control");
        fs.write(&control, &plus.join(" "))
            .map_err(|e| refused(format!("enabling {names} in {}", control.display()), e))?;
    }
    if let Some((uid, gid)) = owner {
        // The folder (to make step cgroups in it) and, on v2, the files a delegate
        // writes (cgroup-v2.rst, "Model of Delegation").
        let mut paths = vec![dir.to_path_buf()];
        if h.v2 {
            paths.extend(
                ["cgroup.procs", "cgroup.subtree_control", "cgroup.threads"].map(|f| dir.join(f)),
            );
            paths.push(dir.join(BUILDER_LEAF));
            paths.push(dir.join(BUILDER_LEAF).join("cgroup.procs"));
        }
        for path in paths.iter().filter(|p| *p == dir || fs.exists(p)) {
            fs.chown(path, uid, gid)
                .map_err(|e| refused(format!("handing {} to the build", path.display()), e))?;
        }
    }
    Ok(())
}

/// Removes the cgroups of builds whose launcher is gone (killed before it could).
fn sweep(fs: &dyn CgroupFs, own: &Path) {
    let Ok(names) = fs.subdirs(own) else { return };
    for name in names {
        let Some(pid) = name
            .strip_prefix(BUILD_PREFIX)
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // A reused pid keeps a stale cgroup until that process ends too; harmless.
        if !fs.pid_alive(pid) {
            let _ = remove_tree(fs, &own.join(name));
        }
    }
}

/// rmdir of a cgroup and its child cgroups, deepest first (cgroupfs refuses to remove
/// a cgroup with children, or one that still holds processes: EBUSY).
fn remove_tree(fs: &dyn CgroupFs, dir: &Path) -> io::Result<()> {
    if !fs.exists(dir) {
        return Ok(());
    }
    for child in fs.subdirs(dir)? {
        remove_tree(fs, &dir.join(child))?;
    }
    fs.rmdir(dir)
}

/// One step's cgroup (a folder per hierarchy), removed on drop.
pub struct StepCgroup<'a> {
    fs: &'a dyn CgroupFs,
    dirs: Vec<PathBuf>,
    memory: Option<(Place, u64)>,
    pids: Option<(Place, u64)>,
}

impl StepCgroup<'_> {
    /// After the step ended: which limit it hit, from the kernel's event counters
    /// (v1 memory.oom_control `oom_kill`, v2 memory.events `oom_kill`; pids.events
    /// `max`: forks refused at the limit, both versions).
    pub fn hit(&self) -> Option<LimitHit> {
        let fs = self.fs;
        let count = |dir: &Path, file: &str, key: &str| -> u64 {
            fs.read(&dir.join(file))
                .ok()
                .and_then(|text| {
                    text.lines().find_map(|l| {
                        let (k, v) = l.split_once(' ')?;
                        (k == key).then(|| v.trim().parse().ok())?
                    })
                })
                .unwrap_or(0)
        };
        let dir_of = |place: &Place| {
            self.dirs
                .iter()
                .find(|d| d.parent() == Some(place.dir.as_path()))
                .cloned()
        };
        if let Some((place, limit)) = &self.memory {
            let file = if place.v2 {
                "memory.events"
            } else {
                "memory.oom_control"
            };
            if dir_of(place).is_some_and(|d| count(&d, file, "oom_kill") > 0) {
                return Some(LimitHit::OutOfMemory { limit: *limit });
            }
        }
        if let Some((place, limit)) = &self.pids
            && dir_of(place).is_some_and(|d| count(&d, "pids.events", "max") > 0)
        {
            return Some(LimitHit::ProcessLimit { limit: *limit });
        }
        None
    }

    fn remove(&mut self) {
        for dir in self.dirs.drain(..) {
            // Everything in it has exited (the monitor was reaped, and a pid namespace's
            // init exits only after all its processes); a leftover is for the sweep.
            let _ = self.fs.rmdir(&dir);
        }
    }
}

impl Drop for StepCgroup<'_> {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The launcher's part: the build's cgroups for a child about to start, with the
/// environment variable to pass them on, removed again when dropped.
pub struct LauncherCgroups {
    pub cgroups: BuildCgroups,
}

impl LauncherCgroups {
    pub fn create(owner: Option<(u32, u32)>) -> LauncherCgroups {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let found = hierarchies(&read("/proc/self/cgroup"), &read("/proc/self/mountinfo"));
        LauncherCgroups {
            cgroups: BuildCgroups::create(&RealFs, &found, std::process::id() as i32, owner),
        }
    }
}

impl Drop for LauncherCgroups {
    fn drop(&mut self) {
        self.cgroups.remove(&RealFs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::limits::{Limits, plan};
    use std::cell::RefCell;

    /// A temporary folder that behaves like cgroupfs where it matters: mkdir makes the
    /// control files, rmdir takes them along, `cgroup.subtree_control` refuses
    /// controllers while the cgroup holds processes, and folders marked read-only
    /// refuse children (a cgroup that belongs to someone else).
    struct FakeFs {
        dir: tempfile::TempDir,
        alive: Vec<i32>,
        read_only: Vec<PathBuf>,
        chowned: RefCell<Vec<(PathBuf, u32)>>,
    }

    impl FakeFs {
        fn new() -> FakeFs {
            FakeFs {
                dir: tempfile::tempdir().unwrap(),
                alive: vec![],
                read_only: vec![],
                chowned: RefCell::new(vec![]),
            }
        }
        fn root(&self) -> &Path {
            self.dir.path()
        }
        fn put(&self, path: &Path, text: &str) {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        fn get(&self, path: &Path) -> String {
            std::fs::read_to_string(path).unwrap()
        }
    }

    impl CgroupFs for FakeFs {
        fn read(&self, path: &Path) -> io::Result<String> {
            std::fs::read_to_string(path)
        }
        fn write(&self, path: &Path, text: &str) -> io::Result<()> {
            if !path.exists() {
                return Err(io::ErrorKind::NotFound.into());
            }
            let name = path.file_name().unwrap().to_str().unwrap();
            let dir = path.parent().unwrap();
            if name == "cgroup.subtree_control"
                && !self.read(&dir.join("cgroup.procs"))?.trim().is_empty()
            {
                return Err(io::Error::from_raw_os_error(libc::EBUSY));
            }
            if name == "cgroup.procs" {
                let mut old = self.read(path)?;
                old.push_str(&format!("{text}\n"));
                return std::fs::write(path, old);
            }
            std::fs::write(path, text)
        }
        fn exists(&self, path: &Path) -> bool {
            path.exists()
        }
        fn mkdir(&self, path: &Path) -> io::Result<()> {
            if self
                .read_only
                .iter()
                .any(|r| Some(r.as_path()) == path.parent())
            {
                return Err(io::ErrorKind::PermissionDenied.into());
            }
            std::fs::create_dir(path)?;
            // The files a new cgroup has, as far as these tests look.
            let v2 = path.ancestors().any(|a| a.ends_with("unified"));
            let files: &[&str] = if v2 {
                &[
                    "cgroup.procs",
                    "cgroup.subtree_control",
                    "cgroup.controllers",
                    "memory.max",
                    "memory.events",
                    "pids.max",
                    "pids.events",
                    "cpu.max",
                ]
            } else {
                &[
                    "cgroup.procs",
                    "tasks",
                    "memory.limit_in_bytes",
                    "memory.oom_control",
                    "pids.max",
                    "pids.events",
                    "cpu.cfs_period_us",
                    "cpu.cfs_quota_us",
                ]
            };
            for f in files {
                std::fs::write(path.join(f), "")?;
            }
            Ok(())
        }
        fn rmdir(&self, path: &Path) -> io::Result<()> {
            if !self.subdirs(path)?.is_empty() {
                return Err(io::Error::from_raw_os_error(libc::EBUSY));
            }
            std::fs::remove_dir_all(path)
        }
        fn chown(&self, path: &Path, uid: u32, _gid: u32) -> io::Result<()> {
            self.chowned.borrow_mut().push((path.to_path_buf(), uid));
            Ok(())
        }
        fn subdirs(&self, path: &Path) -> io::Result<Vec<String>> {
            RealFs.subdirs(path)
        }
        fn pid_alive(&self, pid: i32) -> bool {
            self.alive.contains(&pid)
        }
    }

    /// This machine's layout: hybrid, v1 memory (nested in a job's cgroup), pids, cpu.
    fn hybrid(fs: &FakeFs) -> Vec<Hierarchy> {
        let r = fs.root().display().to_string();
        let mountinfo = format!(
            "30 25 0:26 / {r}/cpu rw,relatime - cgroup cgroup rw,cpu\n\
             31 25 0:27 / {r}/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n\
             33 25 0:29 / {r}/memory rw,relatime - cgroup cgroup rw,memory\n\
             36 25 0:32 / {r}/pids rw,relatime - cgroup cgroup rw,pids\n\
             37 25 0:33 / {r}/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
             38 25 0:34 / {r}/unified rw,relatime - cgroup2 cgroup2 rw\n\
             22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        );
        let proc_cgroup =
            "9:name=systemd:/\n8:pids:/\n4:memory:/job/1\n2:cpuacct:/\n1:cpu:/\n0::/\n";
        for d in ["cpu", "memory/job/1", "pids", "unified"] {
            std::fs::create_dir_all(fs.root().join(d)).unwrap();
        }
        hierarchies(proc_cgroup, &mountinfo)
    }

    fn step_limits(
        requested: Limits,
        cgroups: &BuildCgroups,
    ) -> crate::sandbox::limits::StepLimits {
        plan(
            &requested,
            cgroups.coverage(),
            &cgroups.unavailable,
            true,
            "amd64",
        )
        .0
    }

    #[test]
    fn mountinfo_and_proc_cgroup_give_each_controller_s_folder() {
        let fs = FakeFs::new();
        let found = hybrid(&fs);
        let r = fs.root();
        assert_eq!(
            found,
            [
                Hierarchy {
                    v2: false,
                    controllers: vec!["cpu".into()],
                    own: r.join("cpu")
                },
                Hierarchy {
                    v2: false,
                    controllers: vec!["memory".into()],
                    own: r.join("memory/job/1")
                },
                Hierarchy {
                    v2: false,
                    controllers: vec!["pids".into()],
                    own: r.join("pids")
                },
                Hierarchy {
                    v2: true,
                    controllers: vec![],
                    own: r.join("unified")
                },
            ]
        );
        // A container's mount of a sub-tree, a co-mounted cpu,cpuacct, an escaped space.
        let found = hierarchies(
            "3:cpu,cpuacct:/ctr/a\n",
            "1 0 0:1 /ctr /sys/fs/cg\\040x rw - cgroup cgroup rw,cpu,cpuacct\n",
        );
        assert_eq!(found[0].own, Path::new("/sys/fs/cg x/a"));
        assert_eq!(found[0].controllers, ["cpu"]);
    }

    #[test]
    fn a_root_build_gets_delegated_v1_cgroups_and_each_step_its_own() {
        let fs = FakeFs::new();
        let found = hybrid(&fs);
        let build = BuildCgroups::create(&fs, &found, 77, Some((0x7000_0000, 0x7000_0000)));
        let r = fs.root();
        assert_eq!(
            build.memory,
            Some(Place {
                dir: r.join("memory/job/1/xbake-77"),
                v2: false
            })
        );
        assert_eq!(
            build.pids,
            Some(Place {
                dir: r.join("pids/xbake-77"),
                v2: false
            })
        );
        assert_eq!(
            build.cpu,
            Some(Place {
                dir: r.join("cpu/xbake-77"),
                v2: false
            })
        );
        assert!(build.unavailable.is_empty(), "{:?}", build.unavailable);
        let chowned = fs.chowned.borrow().clone();
        assert!(
            chowned.contains(&(r.join("pids/xbake-77"), 0x7000_0000)),
            "{chowned:?}"
        );

        let limits = step_limits(
            Limits {
                memory: Some(64 << 20),
                pids: Some(64),
                millicpus: Some(1500),
            },
            &build,
        );
        let step = build.enter_step(&fs, &limits, 4242).unwrap().unwrap();
        let s = |p: &str| fs.get(&r.join(p));
        assert_eq!(
            s("memory/job/1/xbake-77/step-4242/memory.limit_in_bytes"),
            "67108864"
        );
        assert_eq!(s("memory/job/1/xbake-77/step-4242/cgroup.procs"), "4242\n");
        assert_eq!(
            s("pids/xbake-77/step-4242/pids.max"),
            "66",
            "monitor and init on top"
        );
        assert_eq!(s("cpu/xbake-77/step-4242/cpu.cfs_quota_us"), "150000");
        assert_eq!(s("cpu/xbake-77/step-4242/cpu.cfs_period_us"), "100000");
        assert_eq!(step.hit(), None);

        // What the kernel counts after an OOM kill and after refused forks.
        fs.put(&r.join("pids/xbake-77/step-4242/pids.events"), "max 3\n");
        assert_eq!(step.hit(), Some(LimitHit::ProcessLimit { limit: 64 }));
        fs.put(
            &r.join("memory/job/1/xbake-77/step-4242/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        );
        assert_eq!(step.hit(), Some(LimitHit::OutOfMemory { limit: 64 << 20 }));
        drop(step);
        assert!(
            !r.join("pids/xbake-77/step-4242").exists(),
            "step cgroup removed"
        );

        build.remove(&fs);
        assert!(!r.join("memory/job/1/xbake-77").exists());
        assert!(
            r.join("memory/job/1").exists(),
            "the launcher's own cgroup stays"
        );
    }

    #[test]
    fn only_the_requested_controllers_get_a_step_cgroup() {
        let fs = FakeFs::new();
        let build = BuildCgroups::create(&fs, &hybrid(&fs), 5, None);
        let limits = step_limits(
            Limits {
                pids: Some(10),
                ..Limits::default()
            },
            &build,
        );
        let _step = build.enter_step(&fs, &limits, 9).unwrap().unwrap();
        assert!(fs.root().join("pids/xbake-5/step-9").exists());
        assert!(!fs.root().join("memory/job/1/xbake-5/step-9").exists());
        let none = step_limits(Limits::default(), &build);
        assert!(build.enter_step(&fs, &none, 10).unwrap().is_none());
    }

    #[test]
    fn a_killed_build_s_cgroups_are_swept_by_the_next() {
        let mut fs = FakeFs::new();
        let found = hybrid(&fs);
        let pids = fs.root().join("pids");
        fs.mkdir(&pids.join("xbake-11")).unwrap(); // dead launcher
        fs.mkdir(&pids.join("xbake-11/step-12")).unwrap();
        fs.mkdir(&pids.join("xbake-22")).unwrap(); // a build still running
        fs.mkdir(&pids.join("other")).unwrap(); // not ours
        fs.alive = vec![22];
        let _build = BuildCgroups::create(&fs, &found, 33, None);
        assert!(!pids.join("xbake-11").exists());
        assert!(pids.join("xbake-22").exists());
        assert!(pids.join("other").exists());
        assert!(pids.join("xbake-33").exists());
    }

    #[test]
    fn rootless_without_delegation_says_why_per_controller() {
        let mut fs = FakeFs::new();
        let found = hybrid(&fs);
        fs.read_only = ["cpu", "memory/job/1", "pids"]
            .map(|d| fs.root().join(d))
            .into();
        let build = BuildCgroups::create(&fs, &found, 5, None);
        assert!(!build.coverage().any());
        let why = &build.unavailable["memory"];
        assert!(
            why.contains(
                "memory/job/1/xbake-5: permission denied; cgroup v1 hierarchies belong to root"
            ),
            "{why}"
        );
        assert!(build.unavailable["pids"].contains("pids/xbake-5"));
    }

    #[test]
    fn cgroup_v2_delegates_through_subtree_control() {
        let fs = FakeFs::new();
        let r = fs.root().display().to_string();
        let found = hierarchies(
            "0::/\n",
            &format!("1 0 0:1 / {r}/unified rw - cgroup2 cgroup2 rw\n"),
        );
        let unified = fs.root().join("unified");
        fs.put(
            &unified.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        );
        fs.put(&unified.join("cgroup.subtree_control"), "");
        fs.put(&unified.join("cgroup.procs"), "");
        let build = BuildCgroups::create(&fs, &found, 8, Some((1000, 1000)));
        let dir = unified.join("xbake-8");
        for c in [&build.memory, &build.pids, &build.cpu] {
            assert_eq!(c.as_ref().map(|p| p.dir.clone()), Some(dir.clone()));
        }
        assert_eq!(
            fs.get(&unified.join("cgroup.subtree_control")),
            "+memory +pids +cpu"
        );
        assert_eq!(
            fs.get(&dir.join("cgroup.subtree_control")),
            "+memory +pids +cpu"
        );
        build.adopt(&fs, 99).unwrap();
        assert_eq!(fs.get(&dir.join("build/cgroup.procs")), "99\n");

        let limits = step_limits(
            Limits {
                memory: Some(1 << 30),
                pids: Some(100),
                millicpus: Some(500),
            },
            &build,
        );
        let step = build.enter_step(&fs, &limits, 50).unwrap().unwrap();
        let s = |f: &str| fs.get(&dir.join("step-50").join(f));
        assert_eq!(s("memory.max"), "1073741824");
        assert_eq!(s("pids.max"), "102");
        assert_eq!(s("cpu.max"), "50000 100000");
        assert_eq!(s("cgroup.procs"), "50\n", "one folder, one move");
        fs.put(
            &dir.join("step-50/memory.events"),
            "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n",
        );
        assert_eq!(step.hit(), Some(LimitHit::OutOfMemory { limit: 1 << 30 }));
    }

    #[test]
    fn cgroup_v2_with_processes_in_our_cgroup_falls_back_with_the_reason() {
        let fs = FakeFs::new();
        let r = fs.root().display().to_string();
        let found = hierarchies(
            "0::/user.slice/session-1.scope\n",
            &format!("1 0 0:1 / {r}/unified rw - cgroup2 cgroup2 rw\n"),
        );
        let own = fs.root().join("unified/user.slice/session-1.scope");
        fs.put(&own.join("cgroup.controllers"), "memory pids\n");
        fs.put(&own.join("cgroup.subtree_control"), "");
        fs.put(&own.join("cgroup.procs"), "123\n");
        let build = BuildCgroups::create(&fs, &found, 8, None);
        assert!(!build.coverage().any());
        assert!(
            build.unavailable["memory"].contains("holds processes"),
            "{:?}",
            build.unavailable
        );
        assert_eq!(
            build.unavailable["cpu"],
            "no cgroup hierarchy here offers the cpu controller"
        );
        assert!(!own.join("xbake-8").exists(), "nothing half made is left");
    }
}
