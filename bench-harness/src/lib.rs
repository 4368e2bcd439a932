//! The benchmark harness: measures every MobileNetV1 layer under every algorithm in the
//! registry and every kernel set end to end, then writes `results/` (tables, CSV, plots).
//!
//! `cargo bench -p bench-harness` runs `benches/harness.rs`, which drives criterion and calls
//! [`write_results`] into `results/<cpu-slug>/` ([`machine::results_dir`]), then rebuilds the
//! index `results/README.md` ([`index`]). `BENCH_QUICK=1` selects the quick mode (under 4
//! minutes). The focused benches (`gemm`, `depthwise`, `winograd`) need
//! `--features focused-benches`.

pub mod child;
pub mod index;
pub mod machine;
/// The measured peaks live in `kernels` (the CLI quotes them too).
pub use kernels::peak;
pub mod plots;
pub mod precision_report;
pub mod report;
#[cfg(feature = "winograd")]
pub mod winograd_accuracy;

pub use peak::fma_peak_gflops;

use std::io;
use std::path::{Path, PathBuf};

use report::Report;

/// Writes a report's `<stem>.md`, `<stem>.csv`, `<stem>-layers.svg` and
/// `<stem>-roofline.svg` into `dir`. It lives here so that the imports go one way: `plots`
/// reads a [`Report`], `report` knows nothing of `plots`.
pub fn write_results(dir: &Path, report: &Report) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let stem = report.stem();
    let md = dir.join(format!("{stem}.md"));
    let csv = dir.join(format!("{stem}.csv"));
    std::fs::write(&md, report.markdown())?;
    std::fs::write(&csv, report.csv()?)?;
    let layers_svg = dir.join(format!("{stem}-layers.svg"));
    let roofline_svg = dir.join(format!("{stem}-roofline.svg"));
    plots::layer_times(&layers_svg, report).map_err(io::Error::other)?;
    plots::roofline(&roofline_svg, report).map_err(io::Error::other)?;
    Ok(vec![md, csv, layers_svg, roofline_svg])
}
