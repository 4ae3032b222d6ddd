//! Packs a minimal busybox root filesystem into a deterministic `.tar.gz`, the base
//! image the demo recipe and the integration tests build on.
//!
//!     cargo run --example mkbase -- BUSYBOX APPLET_LIST OUT.tar.gz
//!
//! BUSYBOX is a statically linked busybox for the target architecture (from Debian's
//! busybox-static); APPLET_LIST is `busybox --list-full` output (the same for every
//! architecture of one Debian version). Every entry has mtime 0 and numeric owners;
//! `/home/user` belongs to 1000:1000 so tests can check that owners survive.

use flate2::{Compression, GzBuilder};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

enum Node {
    Dir {
        mode: u32,
        owner: u32,
    },
    File {
        mode: u32,
        owner: u32,
        data: Vec<u8>,
    },
    Link(String),
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [busybox, applets, out] = args.as_slice() else {
        anyhow::bail!("usage: mkbase BUSYBOX APPLET_LIST OUT.tar.gz");
    };
    let mut tree: BTreeMap<String, Node> = BTreeMap::new();
    for (dir, mode, owner) in [
        ("bin", 0o755, 0),
        ("dev", 0o755, 0),
        ("etc", 0o755, 0),
        ("home", 0o755, 0),
        ("home/user", 0o750, 1000),
        ("proc", 0o555, 0),
        ("root", 0o700, 0),
        ("sbin", 0o755, 0),
        ("sys", 0o555, 0),
        ("tmp", 0o1777, 0),
        ("usr", 0o755, 0),
        ("usr/bin", 0o755, 0),
        ("usr/sbin", 0o755, 0),
        ("var", 0o755, 0),
    ] {
        tree.insert(dir.into(), Node::Dir { mode, owner });
    }
    let file = |mode, owner, data: &str| Node::File {
        mode,
        owner,
        data: data.as_bytes().to_vec(),
    };
    tree.insert(
        "bin/busybox".into(),
        Node::File {
            mode: 0o755,
            owner: 0,
            data: std::fs::read(busybox)?,
        },
    );
    tree.insert(
        "etc/passwd".into(),
        file(
            0o644,
            0,
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n\
             nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
    );
    tree.insert(
        "etc/group".into(),
        file(0o644, 0, "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n"),
    );
    tree.insert(
        "home/user/.profile".into(),
        file(0o640, 1000, "# owned by user\n"),
    );
    for line in std::fs::read_to_string(applets)?.lines() {
        let path = line.trim().trim_start_matches('/');
        if path.is_empty() || path == "bin/busybox" || tree.contains_key(path) {
            continue;
        }
        if let Some(parent) = Path::new(path).parent() {
            let parent = parent.to_string_lossy();
            if !parent.is_empty() && !tree.contains_key(parent.as_ref()) {
                anyhow::bail!("applet {path}: no directory {parent} in the base");
            }
        }
        tree.insert(path.to_string(), Node::Link("/bin/busybox".into()));
    }

    let tmp = format!("{out}.tmp");
    let file = std::fs::File::create(&tmp)?;
    let gz = GzBuilder::new().mtime(0).write(file, Compression::best());
    let mut tar = tar::Builder::new(gz);
    for (path, node) in &tree {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(0);
        match node {
            Node::Dir { mode, owner } => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_uid((*owner).into());
                h.set_gid((*owner).into());
                h.set_size(0);
                tar.append_data(&mut h, format!("{path}/"), std::io::empty())?;
            }
            Node::File { mode, owner, data } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_uid((*owner).into());
                h.set_gid((*owner).into());
                h.set_size(data.len() as u64);
                tar.append_data(&mut h, path, data.as_slice())?;
            }
            Node::Link(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_uid(0);
                h.set_gid(0);
                h.set_size(0);
                tar.append_link(&mut h, path, target)?;
            }
        }
    }
    let mut gz = tar.into_inner()?;
    gz.flush()?;
    gz.finish()?.sync_all()?;
    std::fs::rename(&tmp, out)?;
    Ok(())
}
