//! The binfmt_misc magic/mask table (`qemu/binfmt.conf`), compiled into the binary.

use super::EmulationError;

const TABLE: &str = include_str!("../../qemu/binfmt.conf");

/// How the kernel recognises one foreign architecture's ELF files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinfmtEntry {
    /// QEMU's name for the architecture (`aarch64`), as in `qemu-aarch64-static`.
    pub name: String,
    pub magic: Vec<u8>,
    pub mask: Vec<u8>,
}

impl BinfmtEntry {
    /// Whether a file starting with `header` is claimed by this entry, using the kernel's
    /// rule (fs/binfmt_misc.c, check_file): `(header ^ magic) & mask == 0` for every byte.
    pub fn matches(&self, header: &[u8]) -> bool {
        header.len() >= self.magic.len()
            && self
                .magic
                .iter()
                .zip(&self.mask)
                .zip(header)
                .all(|((m, k), h)| (h ^ m) & k == 0)
    }

    /// The line written to binfmt_misc's `register` file. Every magic and mask byte is
    /// hex-escaped so a `:` byte can never end a field early.
    pub fn register_line(&self, entry_name: &str, interpreter: &str, flags: &str) -> String {
        format!(
            ":{entry_name}:M:0:{}:{}:{interpreter}:{flags}",
            escape(&self.magic),
            escape(&self.mask)
        )
    }
}

fn escape(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\x{b:02x}")).collect()
}

/// Decodes `\xHH` sequences; other characters stand for themselves.
fn unescape(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = text.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'\\' {
            let (hex, after) = tail.split_at_checked(3)?;
            if hex[0] != b'x' {
                return None;
            }
            let s = std::str::from_utf8(&hex[1..]).ok()?;
            out.push(u8::from_str_radix(s, 16).ok()?);
            rest = after;
        } else {
            out.push(first);
            rest = tail;
        }
    }
    Some(out)
}

/// Parses the table text. Separate from [`table`] so malformed input is testable.
pub fn parse(text: &str) -> Result<Vec<BinfmtEntry>, EmulationError> {
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| EmulationError::Table {
            line: number + 1,
            reason: why.to_string(),
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, magic, mask] = fields[..] else {
            return Err(bad("expected NAME MAGIC MASK"));
        };
        let magic = unescape(magic).ok_or_else(|| bad("bad escape in magic"))?;
        let mask = unescape(mask).ok_or_else(|| bad("bad escape in mask"))?;
        if magic.len() != mask.len() {
            return Err(bad("magic and mask differ in length"));
        }
        entries.push(BinfmtEntry {
            name: name.to_string(),
            magic,
            mask,
        });
    }
    Ok(entries)
}

/// The entry for QEMU name `name` (`aarch64`), from the compiled-in table.
pub fn entry_for(name: &str) -> Result<BinfmtEntry, EmulationError> {
    parse(TABLE)?
        .into_iter()
        .find(|e| e.name == name)
        .ok_or_else(|| EmulationError::NoTableEntry {
            name: name.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Platform;

    /// An ELF header prefix: class, data (endianness), version, OS/ABI, type, machine.
    fn elf_header(class64: bool, big_endian: bool, e_type: u16, machine: u16) -> Vec<u8> {
        let mut h = vec![0x7f, b'E', b'L', b'F'];
        h.push(if class64 { 2 } else { 1 });
        h.push(if big_endian { 2 } else { 1 });
        h.push(1);
        h.extend_from_slice(&[0; 9]);
        let (t, m) = if big_endian {
            (e_type.to_be_bytes(), machine.to_be_bytes())
        } else {
            (e_type.to_le_bytes(), machine.to_le_bytes())
        };
        h.extend_from_slice(&t);
        h.extend_from_slice(&m);
        h
    }

    #[test]
    fn every_supported_platform_has_an_entry_matching_its_elf_files() {
        // (platform, 64-bit, big-endian, e_machine) from the ELF specification.
        let cases = [
            ("amd64", true, false, 62),
            ("386", false, false, 3),
            ("arm", false, false, 40),
            ("arm64", true, false, 183),
            ("ppc64le", true, false, 21),
            ("s390x", true, true, 22),
            ("riscv64", true, false, 243),
        ];
        for (name, c64, be, machine) in cases {
            let platform: Platform = name.parse().unwrap();
            let entry = entry_for(platform.qemu_name()).unwrap();
            for e_type in [2u16, 3] {
                let header = elf_header(c64, be, e_type, machine);
                assert!(entry.matches(&header), "{name} type {e_type}");
            }
            // A relocatable object (type 1) or a core file (4) is not executed.
            assert!(!entry.matches(&elf_header(c64, be, 4, machine)), "{name}");
            // No other entry claims this architecture's executables.
            for other in parse(TABLE).unwrap() {
                if other.name != entry.name {
                    let header = elf_header(c64, be, 2, machine);
                    assert!(!other.matches(&header), "{} claims {name}", other.name);
                }
            }
        }
    }

    #[test]
    fn the_real_qemu_table_matches_debian_busybox_style_headers() {
        // First 20 bytes of Debian's arm64 busybox-static.
        let header = [
            0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0xb7, 0,
        ];
        assert!(entry_for("aarch64").unwrap().matches(&header));
        assert!(!entry_for("arm").unwrap().matches(&header));
    }

    #[test]
    fn register_line_escapes_every_byte() {
        let entry = BinfmtEntry {
            name: "x".into(),
            magic: vec![b':', 0x7f],
            mask: vec![0xff, 0xff],
        };
        assert_eq!(
            entry.register_line("qemu-x", "/usr/bin/qemu-x-static", "POCF"),
            ":qemu-x:M:0:\\x3a\\x7f:\\xff\\xff:/usr/bin/qemu-x-static:POCF"
        );
    }

    #[test]
    fn malformed_tables_are_rejected_with_the_line() {
        let err = parse("# c\nfoo \\x7f\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(parse("foo \\x7f \\xff\\xff\n").is_err());
        assert!(parse("foo \\q7f \\xff\n").is_err());
        assert!(entry_for("m68k").is_err());
    }
}
