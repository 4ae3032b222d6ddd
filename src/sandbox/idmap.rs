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
    /// Real root: every id maps to itself, so files keep their owners on disk and the
    /// namespace only isolates (the host is never changed).
    Identity,
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

pub fn choose(ctx: &IdContext) -> IdMapPlan {
    if ctx.uid == 0 {
        return IdMapPlan::Identity;
    }
    let self_only = IdMapPlan::SelfOnly {
        uid: ctx.uid,
        gid: ctx.gid,
    };
    if ctx.force_self_only {
        return self_only;
    }
    let (Some(newuidmap), Some(newgidmap)) = (&ctx.newuidmap, &ctx.newgidmap) else {
        return self_only;
    };
    let uids = ranges_for(ctx.subuid.unwrap_or(""), ctx.uid, ctx.user_name, ctx.uid);
    let gids = ranges_for(ctx.subgid.unwrap_or(""), ctx.uid, ctx.user_name, ctx.gid);
    if uids.len() < 2 || gids.len() < 2 {
        return self_only;
    }
    IdMapPlan::Subordinate {
        uids,
        gids,
        newuidmap: newuidmap.clone(),
        newgidmap: newgidmap.clone(),
    }
}

/// Namespace ranges for one id kind: 0 is the caller's own id, then every
/// `/etc/sub[ug]id` range of the user (matched by name or numeric uid, as shadow-utils
/// does), packed one after another from 1.
fn ranges_for(file: &str, uid: u32, name: Option<&str>, own_id: u32) -> Vec<IdRange> {
    let mut out = vec![IdRange {
        inside: 0,
        outside: own_id,
        count: 1,
    }];
    let mut next_inside: u32 = 1;
    for line in file.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split(':');
        let (Some(owner), Some(start), Some(count)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let owner_matches = Some(owner) == name || owner.parse::<u32>().ok() == Some(uid);
        let (Ok(start), Ok(count)) = (start.parse::<u32>(), count.parse::<u32>()) else {
            continue;
        };
        if !owner_matches || count == 0 {
            continue;
        }
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
    fn root_gets_the_identity_map() {
        assert_eq!(choose(&ctx(0, "", "", false)), IdMapPlan::Identity);
    }

    #[test]
    fn a_user_with_ranges_and_helpers_gets_them_after_its_own_id() {
        let subuid = "other:200000:65536\nbuilder:100000:65536\n1000:300000:10\n";
        let subgid = "builder:100000:65536\n";
        let plan = choose(&ctx(1000, subuid, subgid, true));
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
        assert_eq!(choose(&ctx(1000, "", "", true)), only);
        assert_eq!(
            choose(&ctx(
                1000,
                "builder:100000:65536",
                "builder:100000:65536",
                false
            )),
            only
        );
        assert_eq!(
            choose(&ctx(1000, "builder:100000:65536", "", true)),
            only,
            "a uid range without a gid range is not enough"
        );
        let mut forced = ctx(1000, "builder:100000:65536", "builder:100000:65536", true);
        forced.force_self_only = true;
        assert_eq!(choose(&forced), only);
        assert_eq!(
            choose(&ctx(
                1000,
                "builder:x:65536\nbuilder:5:0\n#c\n",
                "builder:1:1",
                true
            )),
            only,
            "malformed and empty ranges are ignored"
        );
    }
}
