//! One type owns every spelling of a target platform: the names users type (`arm`,
//! `armhf`, `aarch64`, `linux/arm64/v8`), the OCI platform fields, Debian's architecture
//! name, Go's GOARCH/GOARM, QEMU's emulator name and CPU model, and what `uname -m` says.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    Amd64,
    I386,
    Arm,
    Arm64,
    Ppc64le,
    S390x,
    Riscv64,
}

/// 32-bit ARM instruction-set levels, the only variants the OCI image index uses in
/// practice. arm64's `v8` is the default and is normalised away (as containerd does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ArmVariant {
    V5,
    V6,
    V7,
}

/// A linux target platform. The OS is always linux: xbake runs steps on a Linux kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    arch: Arch,
    variant: Option<ArmVariant>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlatformError {
    #[error("unknown platform {name:?}; accepted: {accepted}", accepted = ACCEPTED_NAMES)]
    Unknown { name: String },
    #[error("platform {name:?}: only linux is supported, not {os:?}")]
    UnsupportedOs { name: String, os: String },
    #[error("platform {name:?}: {arch} has no variant {variant:?}; accepted: {accepted}")]
    BadVariant {
        name: String,
        arch: &'static str,
        variant: String,
        accepted: &'static str,
    },
    #[error("empty platform list")]
    Empty,
}

/// What `--arch` accepts, shown in errors.
pub const ACCEPTED_NAMES: &str = "amd64 (x86_64), 386 (i386, i686), arm (= arm/v7), arm/v5, \
arm/v6, arm/v7, armhf (= arm/v7), armel (= arm/v5), arm64 (aarch64, arm64/v8), ppc64le (ppc64el), \
s390x, riscv64, and linux/ARCH[/VARIANT] forms of these";

impl Platform {
    pub const fn new(arch: Arch) -> Platform {
        let variant = match arch {
            Arch::Arm => Some(ArmVariant::V7),
            _ => None,
        };
        Platform { arch, variant }
    }

    pub const fn arm(variant: ArmVariant) -> Platform {
        Platform {
            arch: Arch::Arm,
            variant: Some(variant),
        }
    }

    /// The platform this xbake binary was compiled for (and so runs on).
    pub fn host() -> Platform {
        match std::env::consts::ARCH {
            "x86" => Platform::new(Arch::I386),
            "arm" => Platform::arm(ArmVariant::V7),
            "aarch64" => Platform::new(Arch::Arm64),
            "powerpc64" => Platform::new(Arch::Ppc64le),
            "s390x" => Platform::new(Arch::S390x),
            "riscv64" => Platform::new(Arch::Riscv64),
            _ => Platform::new(Arch::Amd64),
        }
    }

    pub fn arch(&self) -> Arch {
        self.arch
    }

    pub fn os(&self) -> &'static str {
        "linux"
    }

    /// The OCI / GOARCH architecture name.
    pub fn oci_arch(&self) -> &'static str {
        match self.arch {
            Arch::Amd64 => "amd64",
            Arch::I386 => "386",
            Arch::Arm => "arm",
            Arch::Arm64 => "arm64",
            Arch::Ppc64le => "ppc64le",
            Arch::S390x => "s390x",
            Arch::Riscv64 => "riscv64",
        }
    }

    /// The OCI platform variant (`v7`), if any.
    pub fn oci_variant(&self) -> Option<&'static str> {
        self.variant.map(|v| match v {
            ArmVariant::V5 => "v5",
            ArmVariant::V6 => "v6",
            ArmVariant::V7 => "v7",
        })
    }

    pub fn arm_variant(&self) -> Option<ArmVariant> {
        self.variant
    }

    /// `arm64`, `arm/v7`: the compact name used in progress lines and file names.
    pub fn short_name(&self) -> String {
        match self.oci_variant() {
            Some(v) => format!("{}/{}", self.oci_arch(), v),
            None => self.oci_arch().to_string(),
        }
    }

    /// Debian's name for the architecture (`armhf`, `ppc64el`, …).
    pub fn debian_arch(&self) -> &'static str {
        match (self.arch, self.variant) {
            (Arch::Amd64, _) => "amd64",
            (Arch::I386, _) => "i386",
            (Arch::Arm, Some(ArmVariant::V7)) => "armhf",
            (Arch::Arm, _) => "armel",
            (Arch::Arm64, _) => "arm64",
            (Arch::Ppc64le, _) => "ppc64el",
            (Arch::S390x, _) => "s390x",
            (Arch::Riscv64, _) => "riscv64",
        }
    }

    pub fn goarch(&self) -> &'static str {
        self.oci_arch()
    }

    /// GOARM for 32-bit ARM (`5`, `6`, `7`), empty elsewhere.
    pub fn goarm(&self) -> &'static str {
        match self.variant {
            Some(ArmVariant::V5) => "5",
            Some(ArmVariant::V6) => "6",
            Some(ArmVariant::V7) => "7",
            None => "",
        }
    }

    /// Suffix of QEMU's user-mode emulator (`qemu-<name>-static`) and binfmt entry.
    pub fn qemu_name(&self) -> &'static str {
        match self.arch {
            Arch::Amd64 => "x86_64",
            Arch::I386 => "i386",
            Arch::Arm => "arm",
            Arch::Arm64 => "aarch64",
            Arch::Ppc64le => "ppc64le",
            Arch::S390x => "s390x",
            Arch::Riscv64 => "riscv64",
        }
    }

    /// The CPU model QEMU must emulate (`QEMU_CPU`) so the variant is faithful: an arm/v6
    /// image runs on an ARM1176 (Raspberry Pi 1), where v7-only instructions fault.
    /// QEMU's default for qemu-arm is `max`, an ARMv8 core in AArch32 mode, which would
    /// accept instructions no v7 board has; Cortex-A7 is the Raspberry Pi 2's core.
    pub fn qemu_cpu(&self) -> Option<&'static str> {
        match self.variant {
            Some(ArmVariant::V5) => Some("arm926"),
            Some(ArmVariant::V6) => Some("arm1176"),
            Some(ArmVariant::V7) => Some("cortex-a7"),
            None => None,
        }
    }

    /// What `uname -m` reports inside a step for this platform.
    pub fn uname_machine(&self) -> &'static str {
        match (self.arch, self.variant) {
            (Arch::Amd64, _) => "x86_64",
            (Arch::I386, _) => "i686",
            (Arch::Arm, Some(ArmVariant::V5)) => "armv5tel",
            (Arch::Arm, Some(ArmVariant::V6)) => "armv6l",
            (Arch::Arm, _) => "armv7l",
            (Arch::Arm64, _) => "aarch64",
            (Arch::Ppc64le, _) => "ppc64le",
            (Arch::S390x, _) => "s390x",
            (Arch::Riscv64, _) => "riscv64",
        }
    }

    /// Whether a `host` kernel executes this platform's binaries without emulation.
    /// i386 on amd64 relies on the kernel's IA32 compat layer, on in every distribution
    /// kernel that ships it; steps then run under the `linux32` personality. An older
    /// ARM variant is emulated even on a newer ARM host, so that it runs on a CPU of its
    /// own level (a v7 core would accept v7 instructions in a v6 image).
    pub fn runs_natively_on(&self, host: &Platform) -> bool {
        (self.arch == host.arch && self.variant == host.variant)
            || (self.arch == Arch::I386 && host.arch == Arch::Amd64)
    }

    /// BuildKit's TARGET* variables, in a fixed order.
    pub fn target_vars(&self) -> [(&'static str, String); 4] {
        [
            ("TARGETPLATFORM", self.to_string()),
            ("TARGETOS", self.os().to_string()),
            ("TARGETARCH", self.oci_arch().to_string()),
            (
                "TARGETVARIANT",
                self.oci_variant().unwrap_or("").to_string(),
            ),
        ]
    }

    /// Parses a comma-separated list (`--arch arm,arm64`), keeping order, dropping
    /// duplicates (the index lists each platform once).
    pub fn parse_list(list: &str) -> Result<Vec<Platform>, PlatformError> {
        let mut out = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let p: Platform = name.parse()?;
            if !out.contains(&p) {
                out.push(p);
            }
        }
        if out.is_empty() {
            return Err(PlatformError::Empty);
        }
        Ok(out)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "linux/{}", self.short_name())
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let lower = name.trim().to_ascii_lowercase();
        let mut parts: Vec<&str> = lower.split('/').collect();
        if parts.len() >= 2 && !is_arch_name(parts[0]) {
            let os = parts.remove(0);
            if os != "linux" {
                return Err(PlatformError::UnsupportedOs {
                    name: name.to_string(),
                    os: os.to_string(),
                });
            }
        }
        let unknown = || PlatformError::Unknown {
            name: name.to_string(),
        };
        let (arch, variant) = match parts.as_slice() {
            [arch] => (*arch, None),
            [arch, variant] => (*arch, Some(*variant)),
            _ => return Err(unknown()),
        };
        let base = match arch {
            "amd64" | "x86_64" | "x86-64" => Platform::new(Arch::Amd64),
            "386" | "i386" | "i686" | "x86" => Platform::new(Arch::I386),
            "arm" | "armhf" | "armv7" | "armv7l" => Platform::arm(ArmVariant::V7),
            "armv6" | "armv6l" => Platform::arm(ArmVariant::V6),
            "armel" | "armv5" | "armv5tel" => Platform::arm(ArmVariant::V5),
            "arm64" | "aarch64" => Platform::new(Arch::Arm64),
            "ppc64le" | "ppc64el" => Platform::new(Arch::Ppc64le),
            "s390x" => Platform::new(Arch::S390x),
            "riscv64" => Platform::new(Arch::Riscv64),
            _ => return Err(unknown()),
        };
        let Some(variant) = variant else {
            return Ok(base);
        };
        let bad_variant = |accepted| PlatformError::BadVariant {
            name: name.to_string(),
            arch: base.oci_arch(),
            variant: variant.to_string(),
            accepted,
        };
        match (base.arch, variant) {
            // Only the plain `arm` spelling takes a variant; `armhf/v6` is contradictory.
            (Arch::Arm, v) if arch == "arm" => match v {
                "v5" | "5" => Ok(Platform::arm(ArmVariant::V5)),
                "v6" | "6" => Ok(Platform::arm(ArmVariant::V6)),
                "v7" | "7" => Ok(Platform::arm(ArmVariant::V7)),
                _ => Err(bad_variant("v5, v6, v7")),
            },
            (Arch::Arm64, "v8" | "8") => Ok(base),
            (Arch::Arm64, _) => Err(bad_variant("v8")),
            _ => Err(bad_variant("none")),
        }
    }
}

fn is_arch_name(s: &str) -> bool {
    s.parse::<Platform>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn every_spelling_maps_to_the_expected_platform() {
        let cases = [
            ("arm", "linux/arm/v7"),
            ("arm/v6", "linux/arm/v6"),
            ("arm/v7", "linux/arm/v7"),
            ("arm/v5", "linux/arm/v5"),
            ("armhf", "linux/arm/v7"),
            ("armel", "linux/arm/v5"),
            ("arm64", "linux/arm64"),
            ("aarch64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("arm64/v8", "linux/arm64"),
            ("ppc64le", "linux/ppc64le"),
            ("ppc64el", "linux/ppc64le"),
            ("s390x", "linux/s390x"),
            ("riscv64", "linux/riscv64"),
            ("386", "linux/386"),
            ("i386", "linux/386"),
            ("amd64", "linux/amd64"),
            ("x86_64", "linux/amd64"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/v6", "linux/arm/v6"),
            ("linux/amd64", "linux/amd64"),
            ("LINUX/ARM64", "linux/arm64"),
        ];
        for (input, want) in cases {
            assert_eq!(p(input).to_string(), want, "parsing {input}");
        }
    }

    #[test]
    fn display_round_trips_for_every_platform() {
        let all = [
            Platform::new(Arch::Amd64),
            Platform::new(Arch::I386),
            Platform::arm(ArmVariant::V5),
            Platform::arm(ArmVariant::V6),
            Platform::arm(ArmVariant::V7),
            Platform::new(Arch::Arm64),
            Platform::new(Arch::Ppc64le),
            Platform::new(Arch::S390x),
            Platform::new(Arch::Riscv64),
        ];
        for plat in all {
            assert_eq!(p(&plat.to_string()), plat);
            assert_eq!(p(&plat.short_name()), plat);
        }
    }

    #[test]
    fn unknown_names_are_named_and_the_accepted_ones_listed() {
        let err = "mips".parse::<Platform>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"mips\""), "{msg}");
        assert!(msg.contains("ppc64le") && msg.contains("arm/v6"), "{msg}");
        assert!(matches!(
            "windows/amd64".parse::<Platform>(),
            Err(PlatformError::UnsupportedOs { .. })
        ));
        assert!(matches!(
            "arm/v9".parse::<Platform>(),
            Err(PlatformError::BadVariant { .. })
        ));
        assert!(matches!(
            "ppc64le/v2".parse::<Platform>(),
            Err(PlatformError::BadVariant { .. })
        ));
        assert!("linux/arm/v7/x".parse::<Platform>().is_err());
    }

    #[test]
    fn list_keeps_order_and_drops_duplicates() {
        let list = Platform::parse_list("arm64, arm,armhf,ppc64le").unwrap();
        let names: Vec<String> = list.iter().map(|p| p.to_string()).collect();
        assert_eq!(names, ["linux/arm64", "linux/arm/v7", "linux/ppc64le"]);
        assert_eq!(Platform::parse_list(" , "), Err(PlatformError::Empty));
        assert!(Platform::parse_list("arm64,nope").is_err());
    }

    #[test]
    fn tool_specific_names() {
        let v6 = p("arm/v6");
        assert_eq!(
            (v6.debian_arch(), v6.qemu_name(), v6.goarm()),
            ("armel", "arm", "6")
        );
        assert_eq!(v6.qemu_cpu(), Some("arm1176"));
        assert_eq!(v6.uname_machine(), "armv6l");
        let arm64 = p("aarch64");
        assert_eq!(arm64.oci_variant(), None);
        assert_eq!(arm64.target_vars()[3], ("TARGETVARIANT", String::new()));
        assert_eq!(p("ppc64le").debian_arch(), "ppc64el");
        assert_eq!(p("arm").target_vars()[0].1, "linux/arm/v7");
    }

    #[test]
    fn native_execution() {
        let amd64 = Platform::new(Arch::Amd64);
        assert!(amd64.runs_natively_on(&amd64));
        assert!(p("386").runs_natively_on(&amd64));
        assert!(!p("arm64").runs_natively_on(&amd64));
        assert!(!p("arm/v6").runs_natively_on(&p("arm/v7")));
        assert!(p("arm/v7").runs_natively_on(&p("arm/v7")));
    }
}
