//! The build info the Go linker writes into every binary since Go 1.13, read as Go's
//! own `debug/buildinfo` reads it (src/debug/buildinfo/buildinfo.go), without seeking:
//! a 32-byte header starting with `\xff Go buildinf:` at a 16-byte aligned address,
//! then (Go ≥ 1.18, flags bit 2) the toolchain version and the module info as
//! uvarint-length-prefixed strings; the module info framed by 16-byte sentinels
//! (cmd/go/internal/modload `infoStart`/`infoEnd`) and read as
//! `runtime/debug.ParseBuildInfo` reads it.
//!
//! Go looks for the header in the first 64 KiB of the data segment, which needs the
//! ELF section table at the end of the file; a layer is a stream, so the scanner looks
//! at every 16-byte aligned offset of the file instead (the linker aligns the section,
//! and a segment's file offset is congruent to its address modulo the page size) and
//! takes the first candidate whose header and strings decode. A stray copy of the magic
//! (a binary that embeds `debug/buildinfo`, in its read-only data) does not decode as a
//! header with strings, so it is passed over. The older pointer format (flags without
//! bit 2) needs the segment table to follow its pointers: such binaries are skipped.

use std::io::{self, Write};

const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
const ALIGN: usize = 16;
const HEADER: usize = 32;
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
/// A toolchain version is `go1.21.5` or `devel go1.22-abcdef Tue Jan 2 …`.
const MAX_VERSION: u64 = 256;
/// Module info is a line per dependency (~100 bytes each); a binary with ten thousand
/// dependencies still fits. A candidate claiming more is not a header.
const MAX_MODINFO: u64 = 1 << 20;
/// The cmd/go sentinels around the module info, 16 bytes each.
const SENTINEL: usize = 16;

/// A module: its path and version (`(devel)` for a main module built from a checkout).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    pub path: String,
    pub version: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildInfo {
    /// The toolchain's version string as linked (`go1.19.8`).
    pub go_version: String,
    /// The main package's import path (`path` line), if any.
    pub path: Option<String>,
    /// The main module (`mod` line); none for a binary built outside module mode.
    pub main: Option<Module>,
    /// The dependencies (`dep` lines), each as replaced (`=>` lines).
    pub deps: Vec<Module>,
}

impl BuildInfo {
    /// The toolchain's release: the version's first word (`go1.20.1 X:boringcrypto` →
    /// `go1.20.1`).
    pub fn toolchain(&self) -> &str {
        self.go_version
            .split_whitespace()
            .next()
            .unwrap_or(&self.go_version)
    }
}

/// A `Write` sink fed a file's content that finds its Go build info. Memory is bounded
/// by one candidate header with its strings.
pub struct Scanner {
    /// Bytes not yet passed over; `pending[0]` is at a 16-byte aligned file offset.
    pending: Vec<u8>,
    /// Whether the first bytes were checked to be ELF's magic.
    elf_checked: bool,
    /// Nothing more to look for: found, or not an ELF file.
    done: bool,
    found: Option<BuildInfo>,
}

enum Candidate {
    /// The header or its strings go past the bytes seen so far.
    NeedMore,
    /// Not a build-info header (or the pointer format), keep looking.
    Not,
    Found(BuildInfo),
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner::new()
    }
}

impl Scanner {
    pub fn new() -> Scanner {
        Scanner {
            pending: Vec::new(),
            elf_checked: false,
            done: false,
            found: None,
        }
    }

    /// The build info, once the whole file was written.
    pub fn finish(mut self) -> Option<BuildInfo> {
        if self.elf_checked {
            self.scan(true);
        }
        self.found
    }

    /// Passes over the pending bytes up to the first candidate that needs more of them.
    fn scan(&mut self, at_end: bool) {
        let mut at = 0;
        while !self.done && self.pending.len() - at >= ALIGN {
            let here = &self.pending[at..];
            if here.starts_with(MAGIC) {
                match candidate(here) {
                    Candidate::NeedMore if !at_end => break,
                    Candidate::NeedMore | Candidate::Not => {}
                    Candidate::Found(info) => {
                        self.found = Some(info);
                        self.done = true;
                    }
                }
            }
            at += ALIGN;
        }
        if self.done {
            self.pending = Vec::new();
        } else {
            self.pending.drain(..at);
        }
    }
}

impl Write for Scanner {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.done {
            return Ok(buf.len());
        }
        self.pending.extend_from_slice(buf);
        if !self.elf_checked {
            if self.pending.len() < ELF_MAGIC.len() {
                return Ok(buf.len());
            }
            self.elf_checked = true;
            if !self.pending.starts_with(ELF_MAGIC) {
                self.done = true;
                self.pending = Vec::new();
                return Ok(buf.len());
            }
        }
        self.scan(false);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Decodes the header that starts `data` (the magic already matched).
fn candidate(data: &[u8]) -> Candidate {
    if data.len() < HEADER {
        return Candidate::NeedMore;
    }
    let pointer_size = data[14];
    let flags = data[15];
    if !matches!(pointer_size, 4 | 8) || flags & !3 != 0 || flags & 2 == 0 {
        return Candidate::Not;
    }
    // The version is checked before waiting for the module info, so the only candidate
    // ever waited for is one that will be taken: a file of fake headers costs a few
    // hundred bytes of work per 16 bytes, and the scan stays linear.
    let (version, rest) = match uvarint_string(&data[HEADER..], MAX_VERSION) {
        Ok(found) => found,
        Err(c) => return c,
    };
    let Ok(version) = std::str::from_utf8(version) else {
        return Candidate::Not;
    };
    if version.is_empty() || version.chars().any(char::is_control) {
        return Candidate::Not;
    }
    let (modinfo, _) = match uvarint_string(rest, MAX_MODINFO) {
        Ok(found) => found,
        Err(c) => return c,
    };
    Candidate::Found(parse_modinfo(version, modinfo))
}

/// A string prefixed by its length as a uvarint (Go's `binary.Uvarint`), and the bytes
/// after it.
fn uvarint_string(data: &[u8], max: u64) -> Result<(&[u8], &[u8]), Candidate> {
    let mut len: u64 = 0;
    for (i, &byte) in data.iter().enumerate() {
        // Ten bytes hold 64 bits; Go refuses a longer or overflowing one.
        if i == 10 || (i == 9 && byte > 1) {
            return Err(Candidate::Not);
        }
        len |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            if len > max {
                return Err(Candidate::Not);
            }
            let start = i + 1;
            // `len <= max`, far below usize::MAX.
            let end = start + len as usize;
            return if data.len() < end {
                Err(Candidate::NeedMore)
            } else {
                Ok((&data[start..end], &data[end..]))
            };
        }
    }
    Err(Candidate::NeedMore)
}

/// The module info as `runtime/debug.ParseBuildInfo` reads it: tab-separated lines
/// `path P`, `mod PATH VERSION [SUM]`, `dep PATH VERSION [SUM]`, and `=> PATH [VERSION
/// SUM]` replacing the module of the line before. Lines it does not know (`go`,
/// `build`) or cannot read are passed over.
fn parse_modinfo(version: &str, framed: &[u8]) -> BuildInfo {
    let mut info = BuildInfo {
        go_version: version.to_string(),
        path: None,
        main: None,
        deps: Vec::new(),
    };
    // debug/buildinfo: the info is only taken with both sentinels and a final newline
    // before the closing one.
    if framed.len() < 2 * SENTINEL + 1 || framed[framed.len() - SENTINEL - 1] != b'\n' {
        return info;
    }
    let text = String::from_utf8_lossy(&framed[SENTINEL..framed.len() - SENTINEL]);
    // The module on the line before, which a `=>` line replaces (Go's `last`).
    let mut last = Last::Nothing;
    for line in text.lines() {
        match line.split('\t').collect::<Vec<_>>().as_slice() {
            ["path", p] => info.path = Some(p.to_string()),
            ["mod", path, version, ..] => {
                info.main = Some(module(path, version));
                last = Last::Main;
            }
            ["dep", path, version, ..] => {
                info.deps.push(module(path, version));
                last = Last::Dep;
            }
            ["=>", path, rest @ ..] => {
                let replaced = match last {
                    Last::Main => info.main.as_mut(),
                    Last::Dep => info.deps.last_mut(),
                    Last::Nothing => None,
                };
                if let Some(m) = replaced {
                    replace(m, path, rest.first().copied());
                }
                last = Last::Nothing;
            }
            _ => {}
        }
    }
    info
}

enum Last {
    Nothing,
    Main,
    Dep,
}

fn module(path: &str, version: &str) -> Module {
    Module {
        path: path.to_string(),
        version: version.to_string(),
    }
}

/// Applies a `=>` line. A module replacement (with a version) is what was linked, as
/// syft reports it. A directory replacement (`=> ../fork`, no version) is the module's
/// code from a checkout: the module keeps its path, at version `(devel)` as Go calls
/// such code.
fn replace(m: &mut Module, path: &str, version: Option<&str>) {
    match version.filter(|v| !v.is_empty()) {
        Some(v) => *m = module(path, v),
        None => m.version = "(devel)".to_string(),
    }
}
