//! Scans of small images built here: layers as tar, tar+gzip and tar+zstd blobs in a
//! real `BlobStore`, read through the same reader a build uses.

use super::gobuildinfo::{BuildInfo, Module, Scanner};
use super::view::{self, Limits};
use super::*;
use crate::layer::compress;
use oci_spec::image::MediaType;
use std::io::Write;

/// One entry of a test layer.
enum E<'a> {
    File(&'a str, u32, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

fn tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            E::File(path, mode, body) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(body.len() as u64);
                b.append_data(&mut h, path, *body).unwrap();
            }
            E::Dir(path) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, path, &b""[..]).unwrap();
            }
            E::Symlink(path, target) | E::Hardlink(path, target) => {
                let kind = if matches!(e, E::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                h.set_entry_type(kind);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

#[derive(Clone, Copy)]
enum Z {
    Gzip,
    Zstd,
    Plain,
}

struct Image {
    _dir: tempfile::TempDir,
    store: BlobStore,
    layers: Vec<Descriptor>,
}

fn image(layers: &[(Z, Vec<u8>)]) -> Image {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let layers = layers
        .iter()
        .map(|(z, tar)| {
            let (blob, media_type) = match z {
                Z::Gzip => {
                    let mut gz = compress::gzip_writer(Vec::new());
                    gz.write_all(tar).unwrap();
                    (gz.finish().unwrap(), MediaType::ImageLayerGzip)
                }
                Z::Zstd => (
                    zstd::encode_all(&tar[..], 3).unwrap(),
                    MediaType::ImageLayerZstd,
                ),
                Z::Plain => (tar.clone(), MediaType::ImageLayer),
            };
            let (digest, size) = store.put_bytes(&blob).unwrap();
            crate::image::descriptor(media_type, &digest, size).unwrap()
        })
        .collect();
    Image {
        _dir: dir,
        store,
        layers,
    }
}

fn scan(layers: &[(Z, Vec<u8>)]) -> Vec<Package> {
    let image = image(layers);
    packages_in_image(&image.store, &image.layers, 1 << 30).unwrap()
}

/// (kind, name, version) of each package, for short assertions.
fn names(packages: &[Package]) -> Vec<(PackageKind, &str, &str)> {
    packages
        .iter()
        .map(|p| (p.kind, p.name.as_str(), p.version.as_str()))
        .collect()
}

use crate::layer::tests::chain;

const DEBIAN_12: &[u8] =
    b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n";

fn stanza(name: &str, version: &str) -> String {
    format!(
        "Package: {name}\nStatus: install ok installed\nArchitecture: amd64\n\
         Version: {version}\nMaintainer: Jane Doe <jane@example.org>\n\
         Description: {name}\n the package {name}\n\n"
    )
}

#[test]
fn dpkg_packages_have_versions_arches_and_purls() {
    let status = format!(
        "{}{}Package: removed\nStatus: deinstall ok config-files\nVersion: 1\n\n\
         Package: broken\nVersion 1 without a colon\nStatus: install ok installed\n\n\
         Package: libc6\nStatus: install ok installed\nArchitecture: amd64\n\
         Source: glibc (2.36-9)\nVersion: 2.36-9+deb12u4\n\
         Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>\n",
        stanza("tar", "1.34+dfsg-1.2+deb12u1"),
        stanza("zlib1g", "1:1.2.13.dfsg-1"),
    );
    let packages = scan(&[(
        Z::Gzip,
        tar(&[
            E::Dir("etc/"),
            E::File("etc/os-release", 0o644, DEBIAN_12),
            E::Dir("var/lib/dpkg/"),
            E::File("var/lib/dpkg/status", 0o644, status.as_bytes()),
        ]),
    )]);
    assert_eq!(
        names(&packages),
        [
            (PackageKind::Deb, "libc6", "2.36-9+deb12u4"),
            (PackageKind::Deb, "tar", "1.34+dfsg-1.2+deb12u1"),
            (PackageKind::Deb, "zlib1g", "1:1.2.13.dfsg-1"),
        ],
        "sorted; removed and broken stanzas skipped"
    );
    let libc = &packages[0];
    assert_eq!(libc.arch.as_deref(), Some("amd64"));
    assert_eq!(libc.found_at, "/var/lib/dpkg/status");
    assert_eq!(libc.source.as_deref(), Some("glibc"));
    assert_eq!(libc.source_version.as_deref(), Some("2.36-9"));
    assert_eq!(
        libc.purl,
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc%402.36-9"
    );
    assert_eq!(
        packages[2].purl,
        "pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1?arch=amd64&distro=debian-12"
    );
    assert_eq!(
        packages[2].supplier.as_deref(),
        Some("Jane Doe <jane@example.org>")
    );
}

#[test]
fn an_upper_layers_rewritten_status_removes_a_package() {
    let both = format!(
        "{}{}",
        stanza("curl", "7.88.1-10"),
        stanza("wget", "1.21.3-1")
    );
    let packages = scan(&[
        (
            Z::Gzip,
            tar(&[E::File("var/lib/dpkg/status", 0o644, both.as_bytes())]),
        ),
        (
            Z::Zstd,
            tar(&[E::File(
                "var/lib/dpkg/status",
                0o644,
                stanza("wget", "1.21.3-1").as_bytes(),
            )]),
        ),
    ]);
    assert_eq!(names(&packages), [(PackageKind::Deb, "wget", "1.21.3-1")]);
    assert_eq!(
        packages[0].purl, "pkg:deb/debian/wget@1.21.3-1?arch=amd64",
        "no os-release: the namespace is debian, no distro qualifier"
    );
}

#[test]
fn whiteouts_of_the_status_file_or_its_directory_remove_every_deb() {
    let status = stanza("curl", "7.88.1-10");
    let base = tar(&[
        E::File("var/lib/dpkg/status", 0o644, status.as_bytes()),
        E::File(
            "var/lib/dpkg/status.d/base",
            0o644,
            stanza("base-files", "12.4").as_bytes(),
        ),
    ]);
    assert_eq!(scan(&[(Z::Gzip, base.clone())]).len(), 2);

    let file_whiteout = tar(&[E::File("var/lib/dpkg/.wh.status", 0o644, b"")]);
    let packages = scan(&[(Z::Gzip, base.clone()), (Z::Plain, file_whiteout)]);
    assert_eq!(names(&packages), [(PackageKind::Deb, "base-files", "12.4")]);

    let dir_whiteout = tar(&[E::File("var/lib/.wh.dpkg", 0o644, b"")]);
    assert!(scan(&[(Z::Gzip, base.clone()), (Z::Zstd, dir_whiteout)]).is_empty());

    // A file where the directory was hides what the directory held.
    let retyped = tar(&[E::File("var/lib/dpkg", 0o644, b"not a directory")]);
    assert!(scan(&[(Z::Gzip, base), (Z::Gzip, retyped)]).is_empty());
}

#[test]
fn an_opaque_directory_hides_only_the_lower_layers_content() {
    let lower = tar(&[
        E::File(
            "var/lib/dpkg/status.d/base",
            0o644,
            stanza("base-files", "12.4").as_bytes(),
        ),
        E::File(
            "var/lib/dpkg/status.d/tzdata",
            0o644,
            stanza("tzdata", "2024a-0").as_bytes(),
        ),
        E::File(
            "var/lib/dpkg/status.d/tzdata.md5sums",
            0o644,
            b"0123  usr/share/zoneinfo/UTC\n",
        ),
    ]);
    assert_eq!(
        scan(&[(Z::Gzip, lower.clone())]).len(),
        2,
        "md5sums files list no packages"
    );
    // The marker comes after the new file in the tar: it still hides only the layers below.
    let upper = tar(&[
        E::File(
            "var/lib/dpkg/status.d/netbase",
            0o644,
            stanza("netbase", "6.4").as_bytes(),
        ),
        E::File("var/lib/dpkg/status.d/.wh..wh..opq", 0o644, b""),
    ]);
    let packages = scan(&[(Z::Gzip, lower), (Z::Plain, upper)]);
    assert_eq!(names(&packages), [(PackageKind::Deb, "netbase", "6.4")]);
    assert_eq!(packages[0].found_at, "/var/lib/dpkg/status.d/netbase");
}

#[test]
fn distroless_status_files_need_no_status_field() {
    let text =
        b"Package: libssl3\nVersion: 3.0.11-1~deb12u2\nArchitecture: arm64\nSource: openssl\n";
    let packages = scan(&[(
        Z::Gzip,
        tar(&[
            E::File("usr/lib/os-release", 0o644, DEBIAN_12),
            E::File("var/lib/dpkg/status.d/libssl3", 0o644, text),
        ]),
    )]);
    assert_eq!(
        names(&packages),
        [(PackageKind::Deb, "libssl3", "3.0.11-1~deb12u2")]
    );
    assert_eq!(
        packages[0].purl,
        "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=arm64&distro=debian-12&upstream=openssl",
        "/usr/lib/os-release is read when /etc/os-release is absent"
    );
}

const APK_DB: &[u8] = b"C:Q1abc=\nP:musl\nV:1.2.4_git20230717-r4\nA:x86_64\nL:MIT\no:musl\n\
m:Timo Ter\xc3\xa4s <timo.teras@iki.fi>\nF:lib\nR:ld-musl-x86_64.so.1\n\n\
P:busybox-binsh\nV:1.36.1-r15\nA:x86_64\no:busybox\nm:Natanael Copa <ncopa@alpinelinux.org>\n\n\
P:broken\nV:1\nnot a field\n";

#[test]
fn apk_packages_with_os_release_through_a_symlink() {
    let packages = scan(&[
        (
            Z::Zstd,
            tar(&[
                E::File(
                    "usr/lib/os-release",
                    0o644,
                    b"NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19\n",
                ),
                E::Symlink("etc/os-release", "../usr/lib/os-release"),
            ]),
        ),
        (
            Z::Gzip,
            tar(&[E::File("lib/apk/db/installed", 0o644, APK_DB)]),
        ),
    ]);
    assert_eq!(
        names(&packages),
        [
            (PackageKind::Apk, "busybox-binsh", "1.36.1-r15"),
            (PackageKind::Apk, "musl", "1.2.4_git20230717-r4"),
        ]
    );
    assert_eq!(
        packages[0].purl,
        "pkg:apk/alpine/busybox-binsh@1.36.1-r15?arch=x86_64&distro=alpine-3.19&upstream=busybox"
    );
    assert_eq!(
        packages[1].purl,
        "pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64&distro=alpine-3.19"
    );
    assert_eq!(packages[1].found_at, "/lib/apk/db/installed");
    assert_eq!(
        packages[1].supplier.as_deref(),
        Some("Timo Teräs <timo.teras@iki.fi>")
    );
}

#[test]
fn an_os_release_symlink_follows_the_final_view() {
    // /etc/os-release points at a file a later layer replaces: the final one counts.
    let packages = scan(&[
        (
            Z::Gzip,
            tar(&[
                E::File("usr/lib/os-release", 0o644, b"ID=alpine\nVERSION_ID=3.18\n"),
                E::Symlink("etc/os-release", "/usr/lib/os-release"),
                E::File("lib/apk/db/installed", 0o644, b"P:musl\nV:1.2.4-r2\n"),
            ]),
        ),
        (
            Z::Gzip,
            tar(&[E::File("usr/lib/os-release", 0o644, b"ID=wolfi\n")]),
        ),
    ]);
    assert_eq!(packages[0].purl, "pkg:apk/wolfi/musl@1.2.4-r2?distro=wolfi");
}

/// cmd/go's sentinels around the module info (modload `infoStart`, `infoEnd`).
const INFO_START: &[u8; 16] = b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6";
const INFO_END: &[u8; 16] = b"\xf92C1\x86\x18 r\x00\x82B\x10A\x16\xd8\xf2";
const GO_MAGIC: &[u8; 14] = b"\xff Go buildinf:";

/// Module info as `debug.BuildInfo.String` writes it (a replaced module's line is
/// followed by the `=>` line, then an empty line).
const MODINFO: &str = "go\tgo1.19.8\npath\texample.com/app/cmd/app\n\
mod\texample.com/app\t(devel)\t\n\
dep\tgithub.com/foo/bar\tv1.0.0\n=>\tgithub.com/fork/bar\tv1.1.0\th1:bbb=\n\n\
dep\tgolang.org/x/sys\tv0.6.0\th1:ccc=\n\
dep\texample.com/local\tv0.0.0-00010101000000-000000000000\n=>\t../local\t\t\n\n\
build\t-compiler=gc\nbuild\tGOARCH=amd64\n";

fn uvarint(mut n: usize, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn pad_to(out: &mut Vec<u8>, offset: usize) {
    out.resize(offset, 0);
}

/// A fake ELF file whose data holds a build-info header (`flags` 2: the inline format
/// of Go ≥ 1.18) after two copies of the magic that are not headers.
fn go_binary(version: &str, modinfo: &[u8], flags: u8) -> Vec<u8> {
    let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
    pad_to(&mut elf, 0x101);
    elf.extend(GO_MAGIC); // unaligned, as a string in read-only data
    pad_to(&mut elf, 0x200);
    elf.extend(GO_MAGIC); // aligned, but no pointer size after it
    elf.extend(b"AB");
    pad_to(&mut elf, 0x1000);
    elf.extend(GO_MAGIC);
    elf.extend([8, flags]);
    pad_to(&mut elf, 0x1000 + 32);
    uvarint(version.len(), &mut elf);
    elf.extend(version.as_bytes());
    let framed = [&INFO_START[..], modinfo, &INFO_END[..]].concat();
    uvarint(framed.len(), &mut elf);
    elf.extend(framed);
    elf.extend([0u8; 300]);
    elf
}

fn expected_build_info() -> BuildInfo {
    let m = |path: &str, version: &str| Module {
        path: path.into(),
        version: version.into(),
    };
    BuildInfo {
        go_version: "go1.19.8".into(),
        path: Some("example.com/app/cmd/app".into()),
        main: Some(m("example.com/app", "(devel)")),
        deps: vec![
            m("github.com/fork/bar", "v1.1.0"),
            m("golang.org/x/sys", "v0.6.0"),
            m("example.com/local", "(devel)"),
        ],
    }
}

#[test]
fn go_build_info_is_found_in_any_chunking_of_the_file() {
    let binary = go_binary("go1.19.8", MODINFO.as_bytes(), 2);
    for chunk in [1, 3, 7, 16, 100, 4096, binary.len()] {
        let mut scanner = Scanner::new();
        for part in binary.chunks(chunk) {
            scanner.write_all(part).unwrap();
        }
        assert_eq!(
            scanner.finish(),
            Some(expected_build_info()),
            "chunks of {chunk}"
        );
    }
    // A module info of more than 127 bytes has a two-byte length.
    let long = format!("{MODINFO}{}", "build\tx=y\n".repeat(200));
    let mut scanner = Scanner::new();
    scanner
        .write_all(&go_binary("go1.19.8", long.as_bytes(), 2))
        .unwrap();
    assert_eq!(scanner.finish(), Some(expected_build_info()));
    // No sentinels: the toolchain alone (a binary built outside module mode).
    let mut scanner = Scanner::new();
    scanner
        .write_all(&go_binary("go1.19.8", b"", 2)[..])
        .unwrap();
    let bare = scanner.finish().unwrap();
    assert_eq!((bare.main, bare.deps.len()), (None, 0));
}

#[test]
fn a_file_of_fake_headers_is_scanned_in_one_pass() {
    // Every 16 bytes a header whose version has a control character: none is waited
    // for, so 8 MiB of them take one pass and keep no more than a block pending.
    let mut fake = GO_MAGIC.to_vec();
    fake.extend([8, 2]);
    fake.resize(32, 0);
    fake.extend([200, 1]); // a version of 200 bytes...
    fake.push(b'\n'); // ...that starts with a control character
    let mut elf = b"\x7fELF".to_vec();
    pad_to(&mut elf, 16);
    while elf.len() < 8 << 20 {
        elf.extend(&fake);
        let aligned = elf.len().div_ceil(16) * 16;
        pad_to(&mut elf, aligned);
    }
    let started = std::time::Instant::now();
    let mut scanner = Scanner::new();
    for part in elf.chunks(8192) {
        scanner.write_all(part).unwrap();
    }
    assert_eq!(scanner.finish(), None);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn go_binaries_report_their_modules_and_toolchain() {
    let binary = go_binary("go1.19.8 X:boringcrypto", MODINFO.as_bytes(), 2);
    let pointer_format = go_binary("go1.17.13", MODINFO.as_bytes(), 0);
    let mut script = b"#!/bin/sh\n".to_vec();
    script.extend(&binary);
    let packages = scan(&[
        (
            Z::Gzip,
            tar(&[
                E::File("usr/local/bin/app", 0o755, &binary),
                E::File("usr/share/doc/app.bin", 0o644, &binary),
                E::File("usr/bin/old", 0o755, &pointer_format),
                E::File("usr/bin/script", 0o755, &script),
            ]),
        ),
        (
            Z::Zstd,
            tar(&[E::Hardlink("usr/bin/app2", "usr/local/bin/app")]),
        ),
    ]);
    let at = |path: &str| {
        packages
            .iter()
            .filter(|p| p.found_at == path)
            .map(|p| (p.kind, p.name.as_str(), p.version.as_str(), p.purl.as_str()))
            .collect::<Vec<_>>()
    };
    let expected = [
        (
            PackageKind::GoModule,
            "example.com/app",
            "(devel)",
            "pkg:golang/example.com/app@%28devel%29",
        ),
        (
            PackageKind::GoModule,
            "example.com/local",
            "(devel)",
            "pkg:golang/example.com/local@%28devel%29",
        ),
        (
            PackageKind::GoModule,
            "github.com/fork/bar",
            "v1.1.0",
            "pkg:golang/github.com/fork/bar@v1.1.0",
        ),
        (
            PackageKind::GoModule,
            "golang.org/x/sys",
            "v0.6.0",
            "pkg:golang/golang.org/x/sys@v0.6.0",
        ),
        (
            PackageKind::GoStdlib,
            "stdlib",
            "go1.19.8",
            "pkg:golang/stdlib@1.19.8",
        ),
    ];
    assert_eq!(at("/usr/local/bin/app"), expected);
    assert_eq!(
        at("/usr/bin/app2"),
        expected,
        "a hard link is the same binary"
    );
    assert_eq!(
        packages.len(),
        10,
        "not executable, pointer format, not ELF: skipped\n{packages:#?}"
    );

    // A later layer replacing the binary with something else hides it.
    let packages = scan(&[
        (
            Z::Gzip,
            tar(&[E::File("usr/local/bin/app", 0o755, &binary)]),
        ),
        (
            Z::Gzip,
            tar(&[E::Symlink("usr/local/bin/app", "/bin/true")]),
        ),
    ]);
    assert!(packages.is_empty(), "{packages:#?}");
}

#[test]
fn limits_bound_what_is_read() {
    let binary = go_binary("go1.19.8", MODINFO.as_bytes(), 2);
    let image = image(&[(
        Z::Gzip,
        tar(&[
            E::File("usr/local/bin/app", 0o755, &binary),
            E::File(
                "var/lib/dpkg/status",
                0o644,
                stanza("curl", "7.88.1-10").as_bytes(),
            ),
        ]),
    )]);
    let keep = |p: &str| super::is_package_file(p);
    let small = Limits {
        text: 1 << 20,
        go_binary: 100,
    };
    let view = view::final_view(&image.store, &image.layers, 1 << 30, &small, &keep).unwrap();
    let packages = super::packages_in_view(&view);
    assert_eq!(
        names(&packages),
        [(PackageKind::Deb, "curl", "7.88.1-10")],
        "the binary is over the limit"
    );

    let tiny = Limits {
        text: 10,
        ..Limits::DEFAULT
    };
    let err = view::final_view(&image.store, &image.layers, 1 << 30, &tiny, &keep).unwrap_err();
    assert!(
        matches!(&err, SbomError::FileTooLarge { index: 0, path, .. } if path == "/var/lib/dpkg/status"),
        "{err:?}"
    );

    let err = packages_in_image(&image.store, &image.layers, 1000).unwrap_err();
    let text = chain(&err);
    assert!(
        text.starts_with("layer 0 (sha256:") && text.contains("unpacked size limit"),
        "{text}"
    );
}

#[test]
fn a_layer_whose_digest_does_not_match_is_an_error_naming_it() {
    let image = image(&[
        (Z::Gzip, tar(&[E::File("etc/os-release", 0o644, DEBIAN_12)])),
        (
            Z::Plain,
            tar(&[E::File(
                "var/lib/dpkg/status",
                0o644,
                stanza("a", "1").as_bytes(),
            )]),
        ),
    ]);
    // Same size, other bytes: the store's file no longer holds what its name says.
    let digest = crate::image::descriptor_digest(&image.layers[1]).unwrap();
    let path = image.store.path(&digest);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(7).position(|w| w == b"Package").unwrap();
    bytes[at] = b'X';
    std::fs::write(&path, &bytes).unwrap();
    let err = packages_in_image(&image.store, &image.layers, 1 << 30).unwrap_err();
    assert!(
        matches!(
            &err,
            SbomError::Layer {
                index: 1,
                source: LayerError::Digest(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        chain(&err).contains("digest mismatch for layer 1 blob"),
        "{}",
        chain(&err)
    );
}

// --- the SPDX document ---

fn package(kind: PackageKind, name: &str, version: &str, arch: Option<&str>, at: &str) -> Package {
    Package {
        kind,
        name: name.into(),
        version: version.into(),
        arch: arch.map(Into::into),
        found_at: at.into(),
        source: None,
        source_version: None,
        supplier: Some("Jane Doe <jane@example.org>".into()),
        purl: format!(
            "pkg:generic/{}@{}",
            purl::encode(name),
            purl::encode(version)
        ),
    }
}

fn sample() -> Vec<Package> {
    vec![
        package(PackageKind::GoStdlib, "stdlib", "go1.19.8", None, "/app"),
        package(
            PackageKind::Deb,
            "libc6",
            "2.36-9",
            Some("amd64"),
            "/var/lib/dpkg/status",
        ),
        package(
            PackageKind::Deb,
            "libc6",
            "2.36-9",
            Some("i386"),
            "/var/lib/dpkg/status",
        ),
        package(
            PackageKind::GoModule,
            "golang.org/x/sys",
            "v0.6.0",
            None,
            "/app",
        ),
        package(
            PackageKind::GoModule,
            "golang.org/x/sys",
            "v0.6.0",
            None,
            "/bin/other",
        ),
        // Natural ids that collide: `+` and `_` both become `-`; the second
        // "golang.org/x/sys" would be `…-v0.6.0-2`, which this one already is.
        package(PackageKind::Apk, "a+b", "1", None, "/lib/apk/db/installed"),
        package(PackageKind::Apk, "a_b", "1", None, "/lib/apk/db/installed"),
        package(
            PackageKind::GoModule,
            "golang.org/x/sys",
            "v0.6.0-2",
            None,
            "/app",
        ),
    ]
}

fn document(packages: &[Package]) -> Value {
    spdx_document(
        packages,
        "example.com/app:1.0",
        "https://example.com/spdx/app-1.0-sha256-0123",
        "1970-01-01T00:00:00Z",
        "xbake-0.1.0",
    )
}

use serde_json::Value;

fn valid_spdx_id(id: &str) -> bool {
    id.strip_prefix("SPDXRef-").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    })
}

#[test]
fn the_document_has_spdx_2_3_shape() {
    let doc = document(&sample());
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert_eq!(doc["dataLicense"], "CC0-1.0");
    assert_eq!(doc["SPDXID"], "SPDXRef-DOCUMENT");
    assert_eq!(doc["name"], "example.com/app:1.0");
    assert_eq!(
        doc["documentNamespace"],
        "https://example.com/spdx/app-1.0-sha256-0123"
    );
    assert_eq!(doc["creationInfo"]["created"], "1970-01-01T00:00:00Z");
    assert_eq!(
        doc["creationInfo"]["creators"],
        serde_json::json!(["Tool: xbake-0.1.0"])
    );

    let packages = doc["packages"].as_array().unwrap();
    assert_eq!(packages.len(), 9, "the image and its 8 packages");
    let root = &packages[0];
    assert_eq!(root["name"], "example.com/app:1.0");
    assert_eq!(
        doc["documentDescribes"],
        serde_json::json!([root["SPDXID"]])
    );

    let libc = &packages[1];
    assert_eq!(libc["SPDXID"], "SPDXRef-Package-deb-libc6-2.36-9-amd64");
    assert_eq!(libc["name"], "libc6");
    assert_eq!(libc["versionInfo"], "2.36-9");
    assert_eq!(libc["downloadLocation"], "NOASSERTION");
    assert_eq!(libc["filesAnalyzed"], false);
    assert_eq!(libc["supplier"], "Person: Jane Doe (jane@example.org)");
    assert_eq!(libc["licenseConcluded"], "NOASSERTION");
    assert_eq!(libc["licenseDeclared"], "NOASSERTION");
    assert_eq!(libc["copyrightText"], "NOASSERTION");
    assert!(
        libc["sourceInfo"]
            .as_str()
            .unwrap()
            .ends_with("/var/lib/dpkg/status")
    );
    assert_eq!(
        libc["externalRefs"],
        serde_json::json!([{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": "pkg:generic/libc6@2.36-9",
        }])
    );
    let kinds: Vec<&str> = packages[1..]
        .iter()
        .map(|p| p["SPDXID"].as_str().unwrap().split('-').nth(2).unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["deb", "deb", "apk", "apk", "go", "go", "go", "go"],
        "sorted by kind"
    );

    let relationships = doc["relationships"].as_array().unwrap();
    assert_eq!(
        relationships[0],
        serde_json::json!({
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relationshipType": "DESCRIBES",
            "relatedSpdxElement": root["SPDXID"],
        })
    );
    let contained: Vec<&Value> = relationships[1..]
        .iter()
        .inspect(|r| {
            assert_eq!(r["spdxElementId"], root["SPDXID"]);
            assert_eq!(r["relationshipType"], "CONTAINS");
        })
        .map(|r| &r["relatedSpdxElement"])
        .collect();
    let ids: Vec<&Value> = packages[1..].iter().map(|p| &p["SPDXID"]).collect();
    assert_eq!(contained, ids, "the image contains every package");
}

#[test]
fn spdx_ids_are_valid_unique_and_deterministic() {
    let doc = document(&sample());
    let ids: Vec<&str> = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["SPDXID"].as_str().unwrap())
        .collect();
    for id in &ids {
        assert!(valid_spdx_id(id), "{id}");
    }
    let unique: std::collections::BTreeSet<&&str> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "{ids:#?}");
    assert_eq!(
        ids[3..],
        [
            "SPDXRef-Package-apk-a-b-1",
            "SPDXRef-Package-apk-a-b-1-2",
            "SPDXRef-Package-go-module-golang.org-x-sys-v0.6.0",
            "SPDXRef-Package-go-module-golang.org-x-sys-v0.6.0-3",
            "SPDXRef-Package-go-module-golang.org-x-sys-v0.6.0-2",
            "SPDXRef-Package-go-stdlib-stdlib-go1.19.8",
        ]
    );
}

#[test]
fn the_same_packages_in_any_order_give_the_same_bytes() {
    let packages = sample();
    let bytes = serde_json::to_vec(&document(&packages)).unwrap();
    assert_eq!(serde_json::to_vec(&document(&packages)).unwrap(), bytes);
    let mut reversed = packages.clone();
    reversed.reverse();
    assert_eq!(serde_json::to_vec(&document(&reversed)).unwrap(), bytes);
    let mut rotated = packages;
    rotated.rotate_left(3);
    assert_eq!(
        serde_json::to_vec_pretty(&document(&rotated)).unwrap(),
        serde_json::to_vec_pretty(&document(&reversed)).unwrap()
    );
}

#[test]
fn a_scanned_image_gives_a_document() {
    let status = format!(
        "{}{}",
        stanza("curl", "7.88.1-10"),
        stanza("zlib1g", "1:1.2.13.dfsg-1")
    );
    let packages = scan(&[(
        Z::Gzip,
        tar(&[
            E::File("etc/os-release", 0o644, DEBIAN_12),
            E::File("var/lib/dpkg/status", 0o644, status.as_bytes()),
            E::File("app", 0o755, &go_binary("go1.19.8", MODINFO.as_bytes(), 2)),
        ]),
    )]);
    let doc = document(&packages);
    let entries = doc["packages"].as_array().unwrap();
    assert_eq!(entries.len(), 1 + 2 + 5);
    assert_eq!(
        entries[2]["externalRefs"][0]["referenceLocator"],
        "pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1?arch=amd64&distro=debian-12"
    );
    assert_eq!(
        entries[2]["SPDXID"],
        "SPDXRef-Package-deb-zlib1g-1-1.2.13.dfsg-1-amd64"
    );
    assert!(
        entries
            .iter()
            .all(|p| valid_spdx_id(p["SPDXID"].as_str().unwrap()))
    );
}
