//! `mobilenet bench`: time every layer and the whole network, and the report it prints as a
//! table or as JSON ([`BenchReport`], the versioned schema that
//! `tools/onnx-reference/peers.py` reads).
//!
//! Statistic: after `min(3, iters)` untimed warm-up runs, `iters` profiled runs; each
//! layer's time and the end-to-end time are the [`crate::stats::median`] over those runs
//! (min and max are given end to end). A fused depthwise -> pointwise block is timed as
//! one: its time is on the depthwise layer and its pointwise layer reads 0.

use std::fmt::Write;
use std::time::{Duration, Instant};

use kernels::Precision;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::net::MobileNet;
use crate::stats::{median, Summary};

/// The version of [`BenchReport`]'s JSON; raised on any change that breaks a reader.
pub const SCHEMA_VERSION: u32 = 1;

/// One `mobilenet bench` run. `--json` prints it as one JSON object:
///
/// ```text
/// {
///   "schema_version": 1,          // this schema; readers check it
///   "kernels": "direct",          // the kernel set, or "auto"
///   "plan": "set direct",         // where the per-layer choices came from
///   "precision": "f32",           // f32 | f16 | bf16 | int8
///   "threads": 2, "iters": 50, "batch": 1,
///   "median_ms": 4.93,            // end to end, median over the iters runs
///   "min_ms": 4.81, "max_ms": 5.60,
///   "gflops": 115.4,              // end-to-end rate at the median (GOP/s at int8)
///   "peak": {                     // null when not measured or not available here
///     "what": "f32 FMA at avx512", "per_thread": 192.6, "unit": "GFLOP/s"
///   },
///   "layers": [                   // in execution order: conv0, dw1, pw1, ..., pw13, fc
///     {
///       "name": "dw1", "algorithm": "direct-avx512", "storage": "native" | "widened",
///       "level": "avx512",        // the instruction level its code runs at
///       "threads": 2,
///       "fused_band_rows": 8,     // null unless this layer leads a fused block
///       "in_fused_block": false,  // true: the previous layer's block ran it (0 ms here)
///       "median_ms": 0.21,
///       "gflops": 47.3,           // null inside a fused block; on a block's first layer
///                                 // the FLOPs of both layers over the block's time
///       "peak_percent": 12.3      // gflops / (peak.per_thread x threads) x 100, or null
///     }
///   ]
/// }
/// ```
///
/// Rates count FLOPs as [`kernels::cost`] does (2 x MACs with the bias add), times the
/// batch; at int8 the same count is operations (GOP/s), against the int8 dot-product peak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    pub schema_version: u32,
    pub kernels: String,
    pub plan: String,
    pub precision: String,
    pub threads: usize,
    pub iters: usize,
    pub batch: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub gflops: f64,
    pub peak: Option<Peak>,
    pub layers: Vec<LayerTime>,
}

/// One layer's row of a [`BenchReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerTime {
    pub name: String,
    pub algorithm: String,
    pub storage: String,
    pub level: String,
    pub threads: usize,
    pub fused_band_rows: Option<usize>,
    pub in_fused_block: bool,
    pub median_ms: f64,
    pub gflops: Option<f64>,
    pub peak_percent: Option<f64>,
}

/// A measured single-thread peak the layers' rates are compared with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Peak {
    /// Which instruction: `f32 FMA at avx512`, `int8 dot (vpdpbusd)`.
    pub what: String,
    /// GFLOP/s (or GOP/s) of one thread.
    pub per_thread: f64,
    /// `GFLOP/s`, or `GOP/s` at int8.
    pub unit: String,
}

impl Peak {
    /// Measures, once (about 0.1 s), the peak that layers at `precision` are held to: the
    /// int8 dot product (AVX512_VNNI `vpdpbusd`) at int8, else the f32 FMA at the ISA
    /// ceiling's f32 level (f16 and bf16 compute in f32 lanes). `None` where this CPU has
    /// no such instruction (scalar ceiling, no VNNI).
    pub fn measure(precision: Precision) -> Option<Peak> {
        if precision == Precision::Int8 {
            let gops = kernels::peak::dot_i8_peak_gops()?;
            return Some(Peak { what: "int8 dot (vpdpbusd)".into(), per_thread: gops, unit: "GOP/s".into() });
        }
        let ceiling = kernels::isa::ceiling().ok()?;
        let gflops = kernels::peak::fma_peak_gflops_at(ceiling).filter(|&g| g > 0.0)?;
        Some(Peak {
            what: format!("f32 FMA at {}", ceiling.f32_level()),
            per_thread: gflops,
            unit: "GFLOP/s".into(),
        })
    }
}

/// Runs `net` `iters` times (after `min(3, iters)` warm-up runs) on a constant input and
/// reports the medians (see the module docs). No peak: add one with
/// [`BenchReport::with_peak`].
pub fn measure(net: &mut MobileNet, iters: usize) -> Result<BenchReport> {
    let iters = iters.max(1);
    let config = *net.config();
    let batch = net.batch();
    let input = filled(batch * 3 * config.resolution * config.resolution, 0.5)?;
    let infos = config.layers()?;
    let mut times = vec![Duration::ZERO; infos.len()];
    let mut per_layer: Vec<Vec<f64>> = vec![Vec::with_capacity(iters); infos.len()];
    let mut totals = Vec::with_capacity(iters);
    for _ in 0..3.min(iters) {
        net.forward(&input)?;
    }
    for _ in 0..iters {
        let start = Instant::now();
        net.forward_profiled(&input, &mut times)?;
        totals.push(start.elapsed().as_secs_f64() * 1e3);
        for (acc, t) in per_layer.iter_mut().zip(&times) {
            acc.push(t.as_secs_f64() * 1e3);
        }
    }
    let total = Summary::of(&totals).ok_or_else(|| ModelError::Config("no timed runs".into()))?;
    let runs = net.layer_runs();
    let gflops = |flops: u64, ms: f64| (ms > 0.0).then(|| flops as f64 * batch as f64 / (ms * 1e-3) / 1e9);
    let layers = runs
        .iter()
        .enumerate()
        .zip(&per_layer)
        .map(|((i, l), ts)| {
            let ms = median(ts).unwrap_or(f64::NAN);
            // A block's time covers both of its layers, so its rate counts both.
            let flops =
                l.info.cost.flops + if l.fuse_band_rows.is_some() { infos[i + 1].cost.flops } else { 0 };
            LayerTime {
                name: l.info.name.clone(),
                algorithm: l.algorithm.to_string(),
                storage: l.storage.name().to_string(),
                level: l.level.to_string(),
                threads: l.threads,
                fused_band_rows: l.fuse_band_rows,
                in_fused_block: l.in_fused_block,
                median_ms: ms,
                gflops: if l.in_fused_block { None } else { gflops(flops, ms) },
                peak_percent: None,
            }
        })
        .collect();
    let total_flops: u64 = infos.iter().map(|l| l.cost.flops).sum();
    Ok(BenchReport {
        schema_version: SCHEMA_VERSION,
        kernels: net.kernel_set().to_string(),
        plan: net.plan_source().to_string(),
        precision: net.precision().name().to_string(),
        threads: net.threads(),
        iters,
        batch,
        median_ms: total.median,
        min_ms: total.min,
        max_ms: total.max,
        gflops: gflops(total_flops, total.median).unwrap_or(f64::NAN),
        peak: None,
        layers,
    })
}

/// `n` copies of `value`, or an error instead of an abort if they cannot be allocated.
fn filled(n: usize, value: f32) -> Result<Vec<f32>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| ModelError::Memory {
        what: "the benchmark's input".into(),
        needed: (n as u64).saturating_mul(4),
        available: 0,
        source: "the allocator refused it",
    })?;
    v.resize(n, value);
    Ok(v)
}

impl BenchReport {
    /// The report with `peak` and every layer's percentage of it (`threads x` the
    /// single-thread peak for a layer on `threads` threads).
    pub fn with_peak(mut self, peak: Option<Peak>) -> BenchReport {
        for l in &mut self.layers {
            l.peak_percent = match (&peak, l.gflops) {
                (Some(p), Some(g)) => Some(100.0 * g / (p.per_thread * l.threads as f64)),
                _ => None,
            };
        }
        self.peak = peak;
        self
    }

    /// The rate unit: GOP/s at int8, GFLOP/s otherwise.
    pub fn unit(&self) -> &'static str {
        if self.precision == Precision::Int8.name() {
            "GOP/s"
        } else {
            "GFLOP/s"
        }
    }

    /// The table `mobilenet bench` prints without `--json`.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let unit = self.unit();
        let _ = writeln!(
            s,
            "kernel set {} ({}), precision {}, {} thread(s), batch {}, {} iterations (medians)",
            self.kernels, self.plan, self.precision, self.threads, self.batch, self.iters
        );
        match &self.peak {
            Some(p) => {
                let _ = writeln!(
                    s,
                    "peak: {:.1} {} per thread ({}, measured now); % peak = the layer's rate over its threads x \
                     that peak",
                    p.per_thread, p.unit, p.what
                );
            }
            None => {
                let _ = writeln!(s, "peak: not measurable on this CPU (the % peak column is empty)");
            }
        }
        let _ = writeln!(
            s,
            "\n{:<6} {:<16} {:<8} {:<10} {:>7} {:>10} {unit:>9} {:>7}  notes",
            "layer", "algorithm", "storage", "level", "threads", "ms", "% peak"
        );
        for l in &self.layers {
            let note = match (l.fused_band_rows, l.in_fused_block) {
                (Some(r), _) => format!("fused with the next layer, {r} rows/band: time and {unit} of both"),
                (None, true) => "in the previous layer's fused block".to_string(),
                _ => String::new(),
            };
            let (ms, rate, pct) = if l.in_fused_block {
                ("-".to_string(), "-".to_string(), "-".to_string())
            } else {
                let opt = |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |x| format!("{x:.prec$}"));
                (format!("{:.4}", l.median_ms), opt(l.gflops, 2), opt(l.peak_percent, 1))
            };
            let row = format!(
                "{:<6} {:<16} {:<8} {:<10} {:>7} {ms:>10} {rate:>9} {pct:>7}  {note}",
                l.name, l.algorithm, l.storage, l.level, l.threads
            );
            let _ = writeln!(s, "{}", row.trim_end());
        }
        let _ = writeln!(
            s,
            "\nend to end: {:.3} ms median ({:.2} {unit}); min {:.3} ms, max {:.3} ms",
            self.median_ms, self.gflops, self.min_ms, self.max_ms
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Weights};

    fn small_report(precision: Precision) -> BenchReport {
        let config = Config { width: 0.25, resolution: 32, classes: 10 };
        let set = kernels::kernel_set("naive").unwrap();
        let w = Weights::random(&config, 0).unwrap();
        let mut net = MobileNet::with_precision(config, &w, &set, 2, 1, precision).unwrap();
        measure(&mut net, 4).unwrap()
    }

    #[test]
    fn report_round_trips_through_json_with_the_documented_names() {
        let r = small_report(Precision::F32);
        assert_eq!(r.schema_version, SCHEMA_VERSION);
        assert_eq!((r.iters, r.batch, r.threads, r.layers.len()), (4, 2, 1, 28));
        assert!(r.min_ms <= r.median_ms && r.median_ms <= r.max_ms, "{r:?}");
        let json = serde_json::to_string(&r).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        // What peers.py reads.
        for key in
            ["schema_version", "kernels", "plan", "precision", "threads", "iters", "batch", "median_ms"]
        {
            assert!(!v[key].is_null(), "{key}: {json}");
        }
        for key in
            ["name", "algorithm", "storage", "level", "threads", "in_fused_block", "median_ms", "gflops"]
        {
            assert!(!v["layers"][1][key].is_null(), "{key}: {json}");
        }
        assert!(v["layers"][1].get("fused_band_rows").is_some());
        // Back from JSON: the same report (floats to within serde_json's parsing, 1 ulp).
        let back: BenchReport = serde_json::from_str(&json).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * a.abs().max(b.abs());
        assert!(close(back.median_ms, r.median_ms) && close(back.max_ms, r.max_ms), "{back:?}");
        for (b, l) in back.layers.iter().zip(&r.layers) {
            assert_eq!(
                (&b.name, &b.algorithm, &b.storage, &b.level),
                (&l.name, &l.algorithm, &l.storage, &l.level)
            );
            assert!(close(b.median_ms, l.median_ms), "{b:?} vs {l:?}");
        }
        assert_eq!(back.layers.len(), r.layers.len());
    }

    #[test]
    fn peak_percentages_and_the_int8_unit() {
        let peak = Peak { what: "test".into(), per_thread: 10.0, unit: "GFLOP/s".into() };
        let r = small_report(Precision::F32).with_peak(Some(peak));
        for l in &r.layers {
            match (l.gflops, l.peak_percent) {
                (Some(g), Some(p)) => assert!((p - 10.0 * g).abs() <= 1e-9 * p.abs(), "{l:?}"),
                (None, None) => {}
                _ => panic!("a rate without a percentage or the reverse: {l:?}"),
            }
        }
        let table = r.table();
        assert!(
            table.contains("GFLOP/s") && table.contains("% peak") && table.contains("end to end: "),
            "{table}"
        );
        let mut q = small_report(Precision::F32);
        q.precision = "int8".into();
        assert!(q.table().contains("GOP/s") && !q.table().contains("GFLOP/s"), "{}", q.table());
    }
}
