//! Where a result came from: CPU, flags, cores, compiler, commit, date, command; and the
//! CPU slug that names the folder a machine's results go to.
//!
//! # The CPU slug
//!
//! Results are kept per CPU under `results/<slug>/`, so files measured on different machines
//! sit side by side instead of overwriting each other. The slug is read from `/proc/cpuinfo`:
//!
//! - x86-64: `<vendor>-<name>-<family>-<model>`: vendor `intel` (GenuineIntel) or `amd`
//!   (AuthenticAMD), else the vendor id lower-cased; name is the first word of `model name`
//!   after dropping `(R)`, `(TM)` and the vendor's own word, lower-cased (`xeon`, `epyc`,
//!   `core`, `ryzen`); family and model are the decimal `cpu family` and `model` fields.
//!   Examples: `intel-xeon-6-167`, `intel-xeon-6-207`, `amd-epyc-25-1`, `amd-epyc-25-17`.
//! - aarch64: `aarch64-<implementer>-<part>` from `CPU implementer` and `CPU part` (hex
//!   without `0x`, e.g. `aarch64-41-d0c` for a Neoverse V1); `aarch64-qemu` when
//!   `/proc/cpuinfo` has no `CPU implementer` (qemu user mode shows the host's file).
//! - anything else, or a field missing: `<arch>-unknown`.
//!
//! `tools/onnx-reference/peers.py` (`cpu_slug()`) applies the same rule; the tests below and
//! that function's docstring keep the examples in step.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The value of the first `/proc/cpuinfo` line whose key (before `:`) is exactly `name`.
pub fn cpuinfo_field(cpuinfo: &str, name: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == name).then(|| v.trim().to_string())
    })
}

/// The CPU slug (module docs) of the machine whose `/proc/cpuinfo` is `cpuinfo`, for `arch`
/// (`std::env::consts::ARCH`).
pub fn slug_from(cpuinfo: &str, arch: &str) -> String {
    let unknown = || format!("{arch}-unknown");
    match arch {
        "x86_64" | "x86" => {
            let (Some(vendor_id), Some(name), Some(family), Some(model)) = (
                cpuinfo_field(cpuinfo, "vendor_id"),
                cpuinfo_field(cpuinfo, "model name"),
                cpuinfo_field(cpuinfo, "cpu family"),
                cpuinfo_field(cpuinfo, "model"),
            ) else {
                return unknown();
            };
            let vendor = match vendor_id.as_str() {
                "GenuineIntel" => "intel".to_string(),
                "AuthenticAMD" => "amd".to_string(),
                v => clean(v),
            };
            let short = name
                .replace("(R)", " ")
                .replace("(TM)", " ")
                .replace("(tm)", " ")
                .split_whitespace()
                .map(clean)
                .find(|w| !w.is_empty() && *w != vendor)
                .unwrap_or_else(|| "cpu".into());
            format!("{vendor}-{short}-{}-{}", clean(&family), clean(&model))
        }
        "aarch64" => match (cpuinfo_field(cpuinfo, "CPU implementer"), cpuinfo_field(cpuinfo, "CPU part")) {
            (Some(imp), Some(part)) => {
                let hex = |s: &str| clean(s.trim_start_matches("0x"));
                format!("aarch64-{}-{}", hex(&imp), hex(&part))
            }
            _ => "aarch64-qemu".into(),
        },
        _ => unknown(),
    }
}

/// Lower-case ASCII letters and digits of `s` (everything else dropped).
fn clean(s: &str) -> String {
    s.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

/// This machine's CPU slug (module docs).
pub fn cpu_slug() -> String {
    slug_from(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default(), std::env::consts::ARCH)
}

/// The workspace's `results/` folder.
pub fn results_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("results");
    root.canonicalize().unwrap_or(root)
}

/// The folder this machine's results go to: `results/<cpu slug>/`.
pub fn results_dir() -> PathBuf {
    results_root().join(cpu_slug())
}

/// The provenance block every results file opens with.
#[derive(Debug, Clone)]
pub struct Provenance {
    pub arch: &'static str,
    /// The ISA ceiling the run used (`KERNELS_ISA` or the best detected).
    pub isa: String,
    pub cpu: String,
    /// `family F model M` (x86) or `implementer I part P` (aarch64), empty where unknown.
    pub cpu_id: String,
    /// The folder name of this machine's results (module docs).
    pub slug: String,
    /// The SIMD-relevant CPU flags.
    pub flags: String,
    pub cores: usize,
    pub rustc: String,
    pub commit: String,
    pub date: String,
    pub command: String,
    pub settings: String,
}

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl Provenance {
    /// Collects the provenance of a `cargo bench -p bench-harness` run; `settings` describes
    /// the statistic used.
    pub fn collect(settings: String) -> Provenance {
        Self::collect_for("cargo bench -p bench-harness", settings)
    }

    /// As [`collect`](Self::collect) for a run started by `command` (the arguments are added).
    pub fn collect_for(command: &str, settings: String) -> Provenance {
        // The one CPU reader (kernels::cpu) and its one flag list.
        let info = kernels::cpu::this_cpu();
        let cpu_id = info.id();
        let cpu =
            if info.model_name.is_empty() { "unknown CPU".to_string() } else { info.model_name.clone() };
        let flags = &info.flags;
        // results/ is what the reports write: a rerun over the last run's files measures the
        // same code.
        let dirty = run(
            "git",
            &["status", "--porcelain", "--untracked-files=no", "--", ":/", ":(top,exclude)results"],
        )
        .is_some_and(|s| !s.is_empty());
        let commit = run("git", &["rev-parse", "--short=12", "HEAD"])
            .map(|c| if dirty { format!("{c} (with uncommitted changes)") } else { c })
            .unwrap_or_else(|| "unknown".into());
        let isa = kernels::isa::ceiling()
            .map(|i| i.name().to_string())
            .unwrap_or_else(|e| format!("invalid ({e})"));
        let forced = std::env::var("KERNELS_ISA").map(|v| format!("KERNELS_ISA={v} ")).unwrap_or_default();
        let quick = std::env::var("BENCH_QUICK").map(|v| format!("BENCH_QUICK={v} ")).unwrap_or_default();
        let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
        Provenance {
            arch: std::env::consts::ARCH,
            isa,
            cpu,
            cpu_id,
            slug: cpu_slug(),
            flags: flags.join(" "),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            rustc: run("rustc", &["-V"]).unwrap_or_else(|| "unknown".into()),
            commit,
            date: run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(|| "unknown".into()),
            command: format!("{forced}{quick}{command} {}", args.join(" ")).trim().to_string(),
            settings,
        }
    }

    /// The provenance as a markdown list.
    pub fn markdown(&self) -> String {
        let id = if self.cpu_id.is_empty() { String::new() } else { format!(", {}", self.cpu_id) };
        format!(
            "- CPU: {}{id} ({} logical cores), flags: {}\n- results folder: {}\n- ISA ceiling: {} on {}\n- rustc: {}\n- commit: {}\n- date: {}\n- command: `{}`\n- statistic: {}\n",
            self.cpu, self.cores, self.flags, self.slug, self.isa, self.arch, self.rustc, self.commit, self.date, self.command, self.settings
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x86(vendor: &str, name: &str, family: u32, model: u32) -> String {
        format!(
            "processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\nmodel name\t: {name}\nflags\t\t: fpu avx2\n"
        )
    }

    #[test]
    fn slugs_of_the_machines_seen() {
        let cases = [
            (x86("GenuineIntel", "Intel(R) Xeon(R) Processor", 6, 167), "intel-xeon-6-167"),
            (x86("GenuineIntel", "INTEL(R) XEON(R) PLATINUM 8592+", 6, 207), "intel-xeon-6-207"),
            (x86("AuthenticAMD", "AMD EPYC 7B13", 25, 1), "amd-epyc-25-1"),
            (x86("AuthenticAMD", "AMD EPYC 9R14 96-Core Processor", 25, 17), "amd-epyc-25-17"),
            (x86("GenuineIntel", "Intel(R) Core(TM) i7-10700K CPU @ 3.80GHz", 6, 165), "intel-core-6-165"),
        ];
        for (info, want) in cases {
            assert_eq!(slug_from(&info, "x86_64"), want, "{info}");
        }
    }

    #[test]
    fn aarch64_slugs_and_fallbacks() {
        let arm = "processor\t: 0\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\nCPU part\t: 0xd40\n";
        assert_eq!(slug_from(arm, "aarch64"), "aarch64-41-d40");
        // qemu-aarch64 user mode: the x86 host's file.
        assert_eq!(
            slug_from(&x86("GenuineIntel", "Intel(R) Xeon(R) Processor", 6, 167), "aarch64"),
            "aarch64-qemu"
        );
        assert_eq!(slug_from("", "x86_64"), "x86_64-unknown");
        assert_eq!(slug_from("", "riscv64"), "riscv64-unknown");
    }

    #[test]
    fn model_is_not_model_name() {
        // `model` must not match the `model name` line, whichever comes first.
        let info = "model name\t: AMD EPYC 7B13\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n";
        assert_eq!(slug_from(info, "x86_64"), "amd-epyc-25-1");
    }
}
