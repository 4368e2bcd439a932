//! Where a result came from: CPU, flags, cores, compiler, commit, date, command.

use std::process::Command;

/// The provenance block every results file opens with.
#[derive(Debug, Clone)]
pub struct Provenance {
    pub arch: &'static str,
    /// The ISA ceiling the run used (`KERNELS_ISA` or the best detected).
    pub isa: String,
    pub cpu: String,
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
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        };
        let cpu = field("model name").unwrap_or_else(|| "unknown CPU".into());
        let all_flags = field("flags").or_else(|| field("Features")).unwrap_or_default();
        let wanted = [
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512vl",
            "avx512bw",
            "avx512dq",
            "avx512_bf16",
            "avx512_vnni",
            "avx512_fp16",
            "amx_tile",
            "amx_bf16",
            "asimd",
            "neon",
        ];
        let flags: Vec<&str> = all_flags.split_whitespace().filter(|f| wanted.contains(f)).collect();
        let dirty =
            run("git", &["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
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
        format!(
            "- CPU: {} ({} logical cores), flags: {}\n- ISA ceiling: {} on {}\n- rustc: {}\n- commit: {}\n- date: {}\n- command: `{}`\n- statistic: {}\n",
            self.cpu, self.cores, self.flags, self.isa, self.arch, self.rustc, self.commit, self.date, self.command, self.settings
        )
    }
}
