//! `results/README.md`: the index of the per-CPU results folders, regenerated from the
//! provenance lines of the files themselves (never by hand) by every writer in this crate and
//! by `cargo run --release -p bench-harness --bin results-index` (which the Python tools run).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

/// What one results file says about itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileInfo {
    pub name: String,
    /// The first `# ` heading of a markdown file, or what a CSV or SVG file belongs to.
    pub title: String,
    /// The `- CPU:` provenance line, up to its flags.
    pub cpu: Option<String>,
    pub flags: Option<String>,
    pub date: Option<String>,
}

/// Reads the heading and the `- CPU:` / `- date:` provenance lines of a markdown file.
pub fn parse_markdown(name: &str, text: &str) -> FileInfo {
    let mut info = FileInfo { name: name.to_string(), ..FileInfo::default() };
    for line in text.lines().take(40) {
        if info.title.is_empty() {
            if let Some(t) = line.strip_prefix("# ") {
                info.title = t.trim().to_string();
            }
        }
        if let Some(c) = line.strip_prefix("- CPU:") {
            if info.cpu.is_none() {
                let (cpu, flags) = match c.split_once("flags:") {
                    Some((cpu, flags)) => (cpu, Some(flags.trim().to_string())),
                    None => (c, None),
                };
                info.cpu = Some(cpu.trim().trim_end_matches([',', ';']).trim().to_string());
                info.flags = flags;
            }
        }
        if let Some(d) = line.strip_prefix("- date:") {
            info.date.get_or_insert_with(|| d.trim().to_string());
        }
    }
    info
}

/// The files of `dir` (not recursing), sorted by name, with what each says about itself.
fn scan(dir: &Path) -> io::Result<Vec<FileInfo>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n != "README.md" && !n.starts_with('.'))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in &names {
        let info = if let Some(stem) = name.strip_suffix(".md") {
            let mut info = parse_markdown(name, &std::fs::read_to_string(dir.join(name))?);
            if info.title.is_empty() {
                info.title = stem.to_string();
            }
            info
        } else {
            // `x86_64-avx512.csv`, `x86_64-avx512-layers.svg`: the data and plots of a run.
            let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
            let owner = names
                .iter()
                .filter_map(|n| n.strip_suffix(".md"))
                .filter(|md| stem == *md || stem.starts_with(&format!("{md}-")))
                .max_by_key(|md| md.len());
            let what = match ext {
                "csv" => "every measurement as CSV",
                "svg" if stem.ends_with("-layers") => "plot: per-layer time",
                "svg" if stem.ends_with("-roofline") => "plot: roofline",
                "svg" => "plot",
                _ => "data",
            };
            let title = match owner {
                Some(md) => format!("{what}, of the run in `{md}.md`"),
                None => what.to_string(),
            };
            FileInfo { name: name.clone(), title, ..FileInfo::default() }
        };
        out.push(info);
    }
    Ok(out)
}

const PREAMBLE: &str = "\
Everything here is **generated** and never edited by hand, this index included: it is rebuilt
from the files' own provenance lines by every writer (`cargo bench -p bench-harness`, the
`verify` binary, `tools/onnx-reference/peers.py` and `precision_peers.py`), or alone with
`cargo run --release -p bench-harness --bin results-index`.

Results are kept **per CPU**: each machine writes into `results/<cpu-slug>/`, so runs on
different machines sit side by side. The slug is `<vendor>-<name>-<family>-<model>` from
`/proc/cpuinfo` on x86-64 (`intel-xeon-6-167`, `amd-epyc-25-1`), `aarch64-<implementer>-<part>`
on aarch64, and `aarch64-qemu` under qemu user mode (the rule: `bench-harness/src/machine.rs`).

The kinds of file, in any folder:

- `<arch>-<isa>.md` / `.csv`: per-layer medians under every algorithm, the best algorithm per
  layer, the whole network per kernel set at 1 and all threads, and the best-flavour sets end
  to end at every ISA ceiling of the CPU; `cargo bench -p bench-harness` (`<isa>` is the
  highest ceiling, or the one `KERNELS_ISA` forces). `-layers.svg`, `-roofline.svg`: its plots.
- `verify-<arch>-<isa>.md` (`aarch64-neon.md` from before the verify mode had a name of its
  own): correctness without timings, e.g. the NEON kernels under qemu-aarch64, from
  `cargo run --release -p bench-harness --bin verify --target aarch64-unknown-linux-gnu`.
- `peers.md`: our kernel sets against ONNX Runtime, OpenVINO, ncnn and PyTorch in interleaved
  rounds; `layers-vs-ort.md`: per layer against ONNX Runtime's profiler
  (`tools/onnx-reference/peers.py [--layers]`).
- `precision.md`: f16 and bf16 against f32 and the f64 oracle, and their speed
  (`cargo bench -p bench-harness`, or `--bench precision` alone).
- `precision-peers.md`: our f32, f16 and bf16 models against ONNX Runtime fp32
  (`tools/onnx-reference/precision_peers.py`).
";

/// The text of `results/README.md` for the results folder `root`.
pub fn render(root: &Path) -> io::Result<String> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    let mut s =
        String::from("# results/\n\n<!-- generated by bench-harness (src/index.rs); do not edit -->\n\n");
    s.push_str(PREAMBLE);
    for dir in &dirs {
        let files = scan(dir)?;
        if files.is_empty() {
            continue;
        }
        let slug = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let _ = writeln!(s, "\n## {slug}\n");
        // The CPU and the flags as the newest file that states them says (older files may
        // lack the flags or the family and model; the folder name has those).
        let mut dated: Vec<&FileInfo> = files.iter().filter(|f| f.cpu.is_some()).collect();
        dated.sort_by(|a, b| a.date.cmp(&b.date));
        if let Some(newest) = dated.last() {
            let _ = writeln!(s, "- CPU: {}", newest.cpu.as_deref().unwrap_or("-"));
            let with_flags = dated.iter().rev().find_map(|f| f.flags.as_deref().filter(|f| !f.is_empty()));
            let flags: BTreeMap<&str, ()> = with_flags
                .unwrap_or("")
                .split_whitespace()
                .map(|f| (f.trim_end_matches([',', ';']), ()))
                .collect();
            let flags: Vec<&str> = flags.into_keys().collect();
            let _ = writeln!(s, "- flags: {}", if flags.is_empty() { "-".into() } else { flags.join(" ") });
        }
        let dates: Vec<&str> = files.iter().filter_map(|f| f.date.as_deref()).collect();
        if let (Some(first), Some(last)) = (dates.iter().min(), dates.iter().max()) {
            if first == last {
                let _ = writeln!(s, "- files dated {first}");
            } else {
                let _ = writeln!(s, "- files dated {first} .. {last}");
            }
        }
        s.push('\n');
        for f in &files {
            let date = f.date.as_deref().map(|d| format!(" ({d})")).unwrap_or_default();
            let _ = writeln!(s, "- [`{}`]({slug}/{}): {}{date}", f.name, f.name, f.title);
        }
    }
    let top = scan(root)?;
    if !top.is_empty() {
        s.push_str("\n## Not tied to one machine\n\n");
        for f in &top {
            let _ = writeln!(s, "- [`{}`]({}): {}", f.name, f.name, f.title);
        }
    }
    Ok(s)
}

/// Rewrites `root/README.md` from the files under `root`; returns its path.
pub fn write_index(root: &Path) -> io::Result<PathBuf> {
    let path = root.join("README.md");
    std::fs::write(&path, render(root)?)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_provenance_lines() {
        let text = "# Peers: ours\n\n<!-- generated -->\n\n- CPU: Intel(R) Xeon(R) Processor, family 6 model 167 (2 logical cores), flags: avx2 fma\n- date: 2026-11-29 14:25 UTC\n";
        let f = parse_markdown("peers.md", text);
        assert_eq!(f.title, "Peers: ours");
        assert_eq!(
            f.cpu.as_deref(),
            Some("Intel(R) Xeon(R) Processor, family 6 model 167 (2 logical cores)")
        );
        assert_eq!(f.flags.as_deref(), Some("avx2 fma"));
        assert_eq!(f.date.as_deref(), Some("2026-11-29 14:25 UTC"));
    }

    #[test]
    fn indexes_folders_and_companions() {
        let root = std::env::temp_dir().join(format!("results-index-test-{}", std::process::id()));
        let dir = root.join("intel-xeon-6-167");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("x86_64-avx2.md"),
            "# Kernels\n- CPU: Xeon, flags: fma avx2\n- date: 2026-01-02 00:00 UTC\n",
        )
        .unwrap();
        std::fs::write(dir.join("x86_64-avx2.csv"), "a,b\n").unwrap();
        // A newer file without flags: the CPU line comes from it, the flags from the older one.
        std::fs::write(dir.join("peers.md"), "# Peers\n- CPU: Xeon 2\n- date: 2026-01-03 00:00 UTC\n")
            .unwrap();
        std::fs::write(dir.join("x86_64-avx2-layers.svg"), "<svg/>").unwrap();
        std::fs::write(root.join("winograd-accuracy.md"), "# Winograd\n").unwrap();
        let text = render(&root).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        assert!(
            text.contains(
                "## intel-xeon-6-167\n\n- CPU: Xeon 2\n- flags: avx2 fma\n- files dated 2026-01-02 00:00 UTC .. 2026-01-03 00:00 UTC\n"
            ),
            "{text}"
        );
        assert!(text.contains("- [`x86_64-avx2.csv`](intel-xeon-6-167/x86_64-avx2.csv): every measurement as CSV, of the run in `x86_64-avx2.md`"), "{text}");
        assert!(text.contains("plot: per-layer time, of the run in `x86_64-avx2.md`"), "{text}");
        assert!(
            text.contains(
                "## Not tied to one machine\n\n- [`winograd-accuracy.md`](winograd-accuracy.md): Winograd"
            ),
            "{text}"
        );
    }
}
