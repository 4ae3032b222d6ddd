//! Resolving a step's `user:` (`name`, `uid`, `uid:gid`, `name:group`) against the
//! image's own /etc/passwd and /etc/group, as docker and runc do.

use std::fmt;
use std::io::Read;

use crate::layer::root::RootDir;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// The home directory from passwd, for HOME.
    pub home: String,
    /// Supplementary groups: those /etc/group lists the user as a member of, when the
    /// spec names no group (runc's rule, so BuildKit's; an explicit group sets none).
    pub groups: Vec<u32>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct UserError(pub String);

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        Some(PasswdEntry {
            name: f.first()?,
            uid: f.get(2)?.parse().ok()?,
            gid: f.get(3)?.parse().ok()?,
            home: f.get(5).copied().unwrap_or("/"),
        })
    })
}

fn group_gid(text: &str, name: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.first() == Some(&name)).then(|| f.get(2)?.parse().ok())?
    })
}

/// The gids of the groups whose member list names `user`, in file order, once each.
fn member_gids(text: &str, user: &str) -> Vec<u32> {
    let mut gids = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        let (Some(gid), Some(members)) = (f.get(2).and_then(|g| g.parse().ok()), f.get(3)) else {
            continue;
        };
        if members.split(',').any(|m| m.trim() == user) && !gids.contains(&gid) {
            gids.push(gid);
        }
    }
    gids
}

/// `spec` is the `user:` value (None: root). `passwd`/`group` are the image's files, if
/// it has them.
pub fn resolve(
    spec: Option<&str>,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ResolvedUser, UserError> {
    let spec = spec.unwrap_or("0");
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = passwd.unwrap_or("");
    let entry = match user.parse::<u32>() {
        Ok(uid) => passwd_entries(passwd).find(|e| e.uid == uid),
        Err(_) => Some(
            passwd_entries(passwd)
                .find(|e| e.name == user)
                .ok_or_else(|| {
                    UserError(format!("user {user:?} is not in the image's /etc/passwd"))
                })?,
        ),
    };
    let uid = match (&entry, user.parse::<u32>()) {
        (_, Ok(uid)) => uid,
        (Some(e), Err(_)) => e.uid,
        (None, Err(_)) => return Err(UserError(format!("unknown user {user:?}"))),
    };
    let gid = match grp {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group_gid(group.unwrap_or(""), g).ok_or_else(|| {
                UserError(format!("group {g:?} is not in the image's /etc/group"))
            })?,
        },
        // Docker: the passwd entry's group, or 0 for a uid without one.
        None => entry.as_ref().map(|e| e.gid).unwrap_or(0),
    };
    let home = match &entry {
        Some(e) => e.home.to_string(),
        None if uid == 0 => "/root".to_string(),
        None => "/".to_string(),
    };
    let groups = match (grp, &entry) {
        (None, Some(e)) => member_gids(group.unwrap_or(""), e.name),
        _ => Vec::new(),
    };
    Ok(ResolvedUser {
        uid,
        gid,
        home,
        groups,
    })
}

/// A step's `user:` resolved against the image's own /etc/passwd and /etc/group.
pub fn resolve_in(spec: Option<&str>, root: &RootDir) -> Result<ResolvedUser, UserError> {
    resolve(
        spec,
        image_text(root, "etc/passwd").as_deref(),
        image_text(root, "etc/group").as_deref(),
    )
}

/// A file of the image, as text, if it has it.
fn image_text(root: &RootDir, path: &str) -> Option<String> {
    let mut text = String::new();
    root.open_file(std::path::Path::new(path))
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// A copy's `--chown=user[:group]` as numbers: names from the image's /etc/passwd and
/// /etc/group; without a group, the user's uid is the gid too (Docker's documented rule
/// for `--chown`, unlike a step's `user:`, which takes the passwd entry's group).
pub fn resolve_chown(spec: &str, root: &RootDir) -> Result<(u32, u32), UserError> {
    let (user, group) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let passwd = image_text(root, "etc/passwd");
    let groups = image_text(root, "etc/group");
    let uid = match user.parse::<u32>() {
        Ok(uid) => uid,
        Err(_) => passwd_entries(passwd.as_deref().unwrap_or(""))
            .find(|e| e.name == user)
            .map(|e| e.uid)
            .ok_or_else(|| UserError(format!("user {user:?} is not in the image's /etc/passwd")))?,
    };
    let gid = match group {
        None => uid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group_gid(groups.as_deref().unwrap_or(""), g).ok_or_else(|| {
                UserError(format!("group {g:?} is not in the image's /etc/group"))
            })?,
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1001:u:/home/user:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:\nwheel:x:10:root,user\naudio:x:29:other, user\n";

    fn r(spec: Option<&str>) -> Result<ResolvedUser, UserError> {
        resolve(spec, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn names_numbers_and_groups() {
        assert_eq!(
            r(None).unwrap(),
            ResolvedUser {
                uid: 0,
                gid: 0,
                home: "/root".into(),
                groups: vec![10],
            }
        );
        assert_eq!(
            r(Some("user")).unwrap(),
            ResolvedUser {
                uid: 1000,
                gid: 1001,
                home: "/home/user".into(),
                groups: vec![10, 29],
            }
        );
        assert_eq!(r(Some("1000")).unwrap().gid, 1001);
        // A uid with a passwd entry is that entry's user, memberships included.
        assert_eq!(r(Some("1000")).unwrap().groups, [10, 29]);
        assert_eq!(r(Some("1000:1000")).unwrap().gid, 1000);
        assert_eq!(r(Some("user:staff")).unwrap().gid, 50);
        // An explicit group: that group only, as runc does.
        assert!(r(Some("user:staff")).unwrap().groups.is_empty());
        assert!(r(Some("1000:1000")).unwrap().groups.is_empty());
        assert_eq!(
            r(Some("4242")).unwrap(),
            ResolvedUser {
                uid: 4242,
                gid: 0,
                home: "/".into(),
                groups: Vec::new(),
            }
        );
        assert!(r(Some("ghost")).unwrap_err().0.contains("ghost"));
        assert!(r(Some("user:nogroup")).unwrap_err().0.contains("nogroup"));
        assert_eq!(resolve(Some("7:8"), None, None).unwrap().uid, 7);
    }
}
