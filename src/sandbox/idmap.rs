//! Choosing the build user namespace's uid/gid maps (pure; no I/O besides the caller
//! reading /etc/subuid). DESIGN decision 1.

use std::path::PathBuf;

/// `inside` ids `inside..inside+count` of the namespace are `outside..` on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdMapPlan {
    /// Real root: namespace ids `0..count` are an unprivileged host range (root's
    /// /etc/subuid entry, else [`BUILTIN_ROOT_RANGE`]), so uid 0 in a step is never host
    /// root (DESIGN decision 1: with `0 0 4294967295` a step could write host sysctls).
    /// The rest of the host's ids are parked at [`HOST_IDS_BASE`] and above, where xbake
    /// itself (root of the namespace) keeps root's access to the caller's files, the
    /// cache and the outputs; steps run in a nested namespace that maps only `0..count`.
    /// Written directly to uid_map/gid_map: the launcher is root.
    Direct {
        uids: Vec<IdRange>,
        gids: Vec<IdRange>,
    },
    /// An unprivileged caller with /etc/subuid and /etc/subgid ranges: namespace root is
    /// the caller, ids 1.. come from the ranges; installed by the setuid helpers
    /// newuidmap/newgidmap (Debian's `uidmap` package), the only way for an unprivileged
    /// process to map more than its own id (user_namespaces(7)).
    Subordinate {
        uids: Vec<IdRange>,
        gids: Vec<IdRange>,
        newuidmap: PathBuf,
        newgidmap: PathBuf,
    },
    /// An unprivileged caller without ranges or helpers: only the caller, as root. Files
    /// the build creates for other ids keep their intended owner in an xattr instead.
    SelfOnly { uid: u32, gid: u32 },
}

/// The range a root build maps onto when root has no /etc/subuid (or /etc/subgid)
/// entry: 65536 ids from 0x70000000, above systemd's container range
/// (0x00080000-0x6FFFFFFF, systemd's UIDS-GIDS.md) and below the signed-32-bit
/// boundary, so no account, container manager or file on a typical host owns them.
pub const BUILTIN_ROOT_RANGE: IdRange = IdRange {
    inside: 0,
    outside: 0x7000_0000,
    count: 65536,
};

/// Where a root build parks the host's own ids inside its namespace (2^31 and up):
/// far above any id an image uses, so unpacking an image never chowns a file to a real
/// host account (ids between the step range and this base are unmapped, and their
/// owners are recorded in an xattr as in rootless builds).
pub const HOST_IDS_BASE: u32 = 0x8000_0000;

impl IdMapPlan {
    /// The caller's own ids as seen inside the namespace, when they are not root
    /// there (root builds): outputs are handed back to them.
    pub fn caller_inside(&self, uid: u32, gid: u32) -> Option<(u32, u32)> {
        let IdMapPlan::Direct { uids, gids } = self else {
            return None;
        };
        Some((inside_of(uids, uid)?, inside_of(gids, gid)?))
    }
}

fn inside_of(ranges: &[IdRange], host: u32) -> Option<u32> {
    ranges
        .iter()
        .find(|r| host >= r.outside && host - r.outside < r.count)
        .map(|r| r.inside + (host - r.outside))
}

/// The caller's identity and what the system offers for subordinate ids.
pub struct IdContext<'a> {
    pub uid: u32,
    pub gid: u32,
    pub user_name: Option<&'a str>,
    pub subuid: Option<&'a str>,
    pub subgid: Option<&'a str>,
    pub newuidmap: Option<PathBuf>,
    pub newgidmap: Option<PathBuf>,
    /// `XBAKE_USERNS=self`: map only the caller even when ranges exist.
    pub force_self_only: bool,
}

pub fn choose(ctx: &IdContext) -> Result<IdMapPlan, String> {
    if ctx.uid == 0 {
        let uids = root_map(ctx.subuid.unwrap_or(""), "/etc/subuid")?;
        let gids = root_map(ctx.subgid.unwrap_or(""), "/etc/subgid")?;
        return Ok(IdMapPlan::Direct { uids, gids });
    }
    let self_only = IdMapPlan::SelfOnly {
        uid: ctx.uid,
        gid: ctx.gid,
    };
    if ctx.force_self_only {
        return Ok(self_only);
    }
    let (Some(newuidmap), Some(newgidmap)) = (&ctx.newuidmap, &ctx.newgidmap) else {
        return Ok(self_only);
    };
    let uids = ranges_for(ctx.subuid.unwrap_or(""), ctx.uid, ctx.user_name, ctx.uid);
    let gids = ranges_for(ctx.subgid.unwrap_or(""), ctx.uid, ctx.user_name, ctx.gid);
    if uids.len() < 2 || gids.len() < 2 {
        return Ok(self_only);
    }
    Ok(IdMapPlan::Subordinate {
        uids,
        gids,
        newuidmap: newuidmap.clone(),
        newgidmap: newgidmap.clone(),
    })
}

/// A root build's map for one id kind: the step range at 0, then the host's ids below
/// and above it parked from [`HOST_IDS_BASE`] (as many as fit under 2^32 - 1, which is
/// not a valid id).
fn root_map(file: &str, file_name: &str) -> Result<Vec<IdRange>, String> {
    let step = match subordinate_entries(file, Some("root"), 0).first() {
        Some(&(outside, count)) => IdRange {
            inside: 0,
            outside,
            count: count.min(HOST_IDS_BASE),
        },
        None => {
            let builtin = BUILTIN_ROOT_RANGE;
            let end = builtin.outside + builtin.count;
            if let Some((owner, start, count)) =
                all_entries(file).into_iter().find(|(_, start, count)| {
                    *start < end && start.saturating_add(*count) > builtin.outside
                })
            {
                return Err(format!(
                    "root has no entry in {file_name}, and xbake's built-in range \
                     {}-{} overlaps {owner}'s entry {start}:{count}; give root its own \
                     range, e.g. `usermod --add-subuids 1879048192-1879113727 \
                     --add-subgids 1879048192-1879113727 root`",
                    builtin.outside,
                    end - 1
                ));
            }
            builtin
        }
    };
    let mut map = vec![step];
    let mut next = HOST_IDS_BASE;
    // Host ids below the step range, then above it.
    let step_end = step.outside as u64 + step.count as u64;
    for (start, end) in [(0u64, step.outside as u64), (step_end, u32::MAX as u64)] {
        let room = u32::MAX as u64 - next as u64;
        let count = (end - start).min(room);
        if count == 0 {
            continue;
        }
        map.push(IdRange {
            inside: next,
            outside: start as u32,
            count: count as u32,
        });
        next += count as u32;
    }
    Ok(map)
}

/// Every well-formed `owner:start:count` line of an /etc/sub[ug]id file.
fn all_entries(file: &str) -> Vec<(String, u32, u32)> {
    file.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.split(':');
            let owner = fields.next()?;
            let start = fields.next()?.parse::<u32>().ok()?;
            let count = fields.next()?.parse::<u32>().ok()?;
            (count > 0).then(|| (owner.to_string(), start, count))
        })
        .collect()
}

/// `(start, count)` of the entries belonging to a user, matched by name or numeric uid
/// as shadow-utils does.
fn subordinate_entries(file: &str, name: Option<&str>, uid: u32) -> Vec<(u32, u32)> {
    all_entries(file)
        .into_iter()
        .filter(|(owner, _, _)| {
            Some(owner.as_str()) == name || owner.parse::<u32>().ok() == Some(uid)
        })
        .map(|(_, start, count)| (start, count))
        .collect()
}

/// Namespace ranges for one id kind: 0 is the caller's own id, then every
/// `/etc/sub[ug]id` range of the user, packed one after another from 1.
fn ranges_for(file: &str, uid: u32, name: Option<&str>, own_id: u32) -> Vec<IdRange> {
    let mut out = vec![IdRange {
        inside: 0,
        outside: own_id,
        count: 1,
    }];
    let mut next_inside: u32 = 1;
    for (start, count) in subordinate_entries(file, name, uid) {
        let Some(end) = next_inside.checked_add(count) else {
            break;
        };
        out.push(IdRange {
            inside: next_inside,
            outside: start,
            count,
        });
        next_inside = end;
    }
    out
}

/// A step's nested map, from the build namespace's own /proc/self/uid_map (or gid_map)
/// text: every extent below [`HOST_IDS_BASE`] mapped onto itself. One line per extent,
/// because the kernel maps each child extent through a single parent extent
/// (map_id_range_down in kernel/user_namespace.c): `0 0 65537` over a parent of
/// `0 1000 1` + `1 100000 65536` is refused.
pub fn nested_map(parent_map: &str) -> String {
    let mut extents: Vec<(u32, u32)> = parent_map
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace().map(|n| n.parse::<u32>().ok());
            let (inside, _outside, count) = (f.next()??, f.next()??, f.next()??);
            (inside < HOST_IDS_BASE).then_some((inside, count))
        })
        .collect();
    extents.sort_unstable();
    extents
        .iter()
        .map(|(inside, count)| format!("{inside} {inside} {count}\n"))
        .collect()
}

/// Text for /proc/PID/{uid,gid}_map, one range per line.
pub fn map_text(ranges: &[IdRange]) -> String {
    ranges
        .iter()
        .map(|r| format!("{} {} {}\n", r.inside, r.outside, r.count))
        .collect()
}

/// Arguments for newuidmap/newgidmap after the pid: `inside outside count` triples.
pub fn helper_args(ranges: &[IdRange]) -> Vec<String> {
    ranges
        .iter()
        .flat_map(|r| [r.inside, r.outside, r.count])
        .map(|n| n.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(uid: u32, subuid: &'a str, subgid: &'a str, helpers: bool) -> IdContext<'a> {
        IdContext {
            uid,
            gid: uid,
            user_name: Some("builder"),
            subuid: Some(subuid),
            subgid: Some(subgid),
            newuidmap: helpers.then(|| PathBuf::from("/usr/bin/newuidmap")),
            newgidmap: helpers.then(|| PathBuf::from("/usr/bin/newgidmap")),
            force_self_only: false,
        }
    }

    #[test]
    fn root_maps_onto_the_builtin_range_never_the_identity() {
        let plan = choose(&ctx(0, "builder:100000:65536\n", "", false)).unwrap();
        let IdMapPlan::Direct { uids, gids } = &plan else {
            panic!("{plan:?}")
        };
        assert_eq!(
            map_text(uids),
            "0 1879048192 65536\n\
             2147483648 0 1879048192\n\
             4026531840 1879113728 268435455\n"
        );
        assert_eq!(map_text(gids), map_text(uids));
        assert!(
            !uids.iter().any(|r| r.inside == 0 && r.outside == 0),
            "uid 0 inside is never host root"
        );
        assert_eq!(
            plan.caller_inside(0, 0),
            Some((HOST_IDS_BASE, HOST_IDS_BASE))
        );
    }

    #[test]
    fn root_uses_its_own_subordinate_entry_when_it_has_one() {
        let subuid = "builder:100000:65536\nroot:200000:100000\n";
        let plan = choose(&ctx(0, subuid, "0:300000:65536\n", false)).unwrap();
        let IdMapPlan::Direct { uids, gids } = &plan else {
            panic!("{plan:?}")
        };
        assert_eq!(
            map_text(uids),
            "0 200000 100000\n2147483648 0 200000\n2147683648 300000 2147283647\n"
        );
        assert_eq!(
            gids[0],
            IdRange {
                inside: 0,
                outside: 300000,
                count: 65536
            }
        );
        // Host root's files stay reachable for xbake itself, at the parked base.
        assert_eq!(
            plan.caller_inside(0, 0),
            Some((HOST_IDS_BASE, HOST_IDS_BASE))
        );
        // The parked ids never exceed the last valid id, 2^32 - 2.
        let last = uids.last().unwrap();
        assert_eq!(last.inside as u64 + last.count as u64, u32::MAX as u64);
    }

    #[test]
    fn a_steps_map_mirrors_the_image_extents_of_the_build_namespace() {
        let root_build = "         0 1879048192      65536\n\
                          2147483648          0 1879048192\n\
                          4026531840 1879113728  268435455\n";
        assert_eq!(nested_map(root_build), "0 0 65536\n");
        let rootless = "0 1000 1\n1 100000 65536\n";
        assert_eq!(nested_map(rootless), "0 0 1\n1 1 65536\n");
        assert_eq!(nested_map("0 1000 1\n"), "0 0 1\n");
        assert_eq!(nested_map("garbage\n"), "");
    }

    #[test]
    fn the_builtin_range_is_refused_when_someone_owns_part_of_it() {
        let subuid = "mallory:1879100000:1000\n";
        let err = choose(&ctx(0, subuid, "", false)).unwrap_err();
        assert!(
            err.contains("mallory") && err.contains("/etc/subuid"),
            "{err}"
        );
        assert!(err.contains("usermod --add-subuids"), "{err}");
    }

    #[test]
    fn a_user_with_ranges_and_helpers_gets_them_after_its_own_id() {
        let subuid = "other:200000:65536\nbuilder:100000:65536\n1000:300000:10\n";
        let subgid = "builder:100000:65536\n";
        let plan = choose(&ctx(1000, subuid, subgid, true)).unwrap();
        let IdMapPlan::Subordinate { uids, gids, .. } = plan else {
            panic!("{plan:?}")
        };
        assert_eq!(
            map_text(&uids),
            "0 1000 1\n1 100000 65536\n65537 300000 10\n"
        );
        assert_eq!(map_text(&gids), "0 1000 1\n1 100000 65536\n");
        assert_eq!(
            helper_args(&gids),
            ["0", "1000", "1", "1", "100000", "65536"]
        );
    }

    #[test]
    fn without_ranges_or_helpers_only_the_caller_is_mapped() {
        let only = IdMapPlan::SelfOnly {
            uid: 1000,
            gid: 1000,
        };
        assert_eq!(choose(&ctx(1000, "", "", true)).unwrap(), only);
        assert_eq!(
            choose(&ctx(
                1000,
                "builder:100000:65536",
                "builder:100000:65536",
                false
            ))
            .unwrap(),
            only
        );
        assert_eq!(
            choose(&ctx(1000, "builder:100000:65536", "", true)).unwrap(),
            only,
            "a uid range without a gid range is not enough"
        );
        let mut forced = ctx(1000, "builder:100000:65536", "builder:100000:65536", true);
        forced.force_self_only = true;
        assert_eq!(choose(&forced).unwrap(), only);
        assert_eq!(
            choose(&ctx(
                1000,
                "builder:x:65536\nbuilder:5:0\n#c\n",
                "builder:1:1",
                true
            ))
            .unwrap(),
            only,
            "malformed and empty ranges are ignored"
        );
    }
}
