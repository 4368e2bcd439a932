//! The one reader of the CPU's identity and features (`/proc/cpuinfo`), read once: the
//! wisdom key (`model::wisdom`), the results' provenance and slug (`bench-harness`'s
//! `machine.rs`) and the CLI all take it from here, with one flag list.
//!
//! Kernels never decide from this text: they detect features with `is_x86_feature_detected!`
//! (`crate::isa`). This is the machine's description, for keys and reports.

use std::sync::OnceLock;

/// The flags reports and keys list, where the CPU has them, in this order: the ones that
/// change which kernels run (x86: AVX2/FMA/F16C, the AVX-512 subsets, VNNI, BF16, FP16, AMX;
/// Arm: ASIMD, half precision, dot product, BF16, I8MM).
pub const FLAGS: [&str; 22] = [
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512vl",
    "avx512bw",
    "avx512dq",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "neon",
    "fphp",
    "asimdhp",
    "asimddp",
    "bf16",
    "i8mm",
    "sve",
];

/// What `/proc/cpuinfo` says of the first processor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuInfo {
    /// `model name` (x86), empty where the file has none (qemu user mode, most Arm kernels).
    pub model_name: String,
    /// `vendor_id` (x86).
    pub vendor: String,
    /// `cpu family`, `model`, `stepping` (x86).
    pub family: String,
    pub model: String,
    pub stepping: String,
    /// `CPU implementer`, `CPU part` (Arm).
    pub implementer: String,
    pub part: String,
    /// The [`FLAGS`] this CPU has, in that order.
    pub flags: Vec<&'static str>,
}

impl CpuInfo {
    /// Parses `/proc/cpuinfo` text (the first value of each field).
    pub fn parse(text: &str) -> CpuInfo {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    (k.trim() == name).then(|| v.trim().to_string())
                })
                .unwrap_or_default()
        };
        let all = format!("{} {}", field("flags"), field("Features"));
        let have: Vec<&str> = all.split_whitespace().collect();
        CpuInfo {
            model_name: field("model name"),
            vendor: field("vendor_id"),
            family: field("cpu family"),
            model: field("model"),
            stepping: field("stepping"),
            implementer: field("CPU implementer"),
            part: field("CPU part"),
            flags: FLAGS.iter().copied().filter(|f| have.contains(f)).collect(),
        }
    }

    /// `family F model M` (x86), `implementer I part P` (Arm), or empty.
    pub fn id(&self) -> String {
        if !self.family.is_empty() {
            format!("family {} model {}", self.family, self.model)
        } else if !self.implementer.is_empty() {
            format!("implementer {} part {}", self.implementer, self.part)
        } else {
            String::new()
        }
    }

    /// `family/model/stepping` (x86) or `implementer/part` (Arm): the wisdom key's signature.
    pub fn signature(&self) -> String {
        if self.family.is_empty() {
            format!("{}/{}", self.implementer, self.part)
        } else {
            format!("{}/{}/{}", self.family, self.model, self.stepping)
        }
    }
}

/// This machine's [`CpuInfo`], read once.
pub fn this_cpu() -> &'static CpuInfo {
    static INFO: OnceLock<CpuInfo> = OnceLock::new();
    INFO.get_or_init(|| CpuInfo::parse(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_x86_and_arm() {
        let x86 = "processor: 0\nvendor_id: GenuineIntel\ncpu family: 6\nmodel: 167\nmodel name: Intel(R) Xeon(R)\n\
                   stepping: 1\nflags: fpu avx2 fma avx512f amx_tile\n";
        let c = CpuInfo::parse(x86);
        assert_eq!(c.id(), "family 6 model 167");
        assert_eq!(c.signature(), "6/167/1");
        assert_eq!(c.flags, ["avx2", "fma", "avx512f", "amx_tile"]);
        let arm = "processor: 0\nFeatures: fp asimd asimddp\nCPU implementer: 0x41\nCPU part: 0xd0c\n";
        let a = CpuInfo::parse(arm);
        assert_eq!(a.id(), "implementer 0x41 part 0xd0c");
        assert_eq!(a.flags, ["asimd", "asimddp"]);
        assert_eq!(CpuInfo::parse(""), CpuInfo::default());
    }
}
