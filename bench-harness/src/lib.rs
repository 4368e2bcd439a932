//! The benchmark harness: measures every MobileNetV1 layer under every algorithm in the
//! registry and every kernel set end to end, then writes `results/` (tables, CSV, plots).
//!
//! `cargo bench -p bench-harness` runs `benches/harness.rs`, which drives criterion and calls
//! [`report::write`]. `BENCH_QUICK=1` selects the quick mode (under 3 minutes). The focused
//! benches (`gemm`, `depthwise`, `winograd`) need `--features focused-benches`.

pub mod machine;
pub mod peak;
pub mod plots;
pub mod report;

pub use peak::fma_peak_gflops;
