//! `results/<cpu-slug>/precision.md`: the rendering half of `benches/precision.rs`. The
//! bench measures and fills a [`PrecisionReport`]; this module turns it into markdown, so
//! that the text can change (and be tested) without re-running a measurement.

use std::fmt::Write as _;

use kernels::{LayerKind, Precision};

use crate::machine::Provenance;

/// The kernel set measured everywhere: the fastest one (see results/<cpu-slug>/x86_64-*.md).
pub const SET: &str = "direct";

/// The reduced precisions, in table order.
pub const REDUCED: [Precision; 2] = [Precision::F16, Precision::Bf16];

/// End-to-end targets: max over images of `max_i |l_p - l_f32| / max_i |l_f32|`.
pub const TARGET_F16: f64 = 2e-3;
pub const TARGET_BF16: f64 = 1e-2;

/// Target for the mean top-5 overlap with f32, in percent.
pub const TARGET_TOP5: f64 = 99.0;

/// One distinct layer shape at one precision against the oracle.
pub struct ShapeRow {
    pub precision: Precision,
    pub kind: LayerKind,
    /// The layers that have this shape (dw7..dw11 share one).
    pub layers: Vec<String>,
    pub op: String,
    /// The NHWC input of one image, `HxWxC`.
    pub input: String,
    pub algorithm: &'static str,
    pub storage: String,
    /// `agreement`: error relative to `|bias| + sum |w||x|`.
    pub max_rel: f64,
    pub mean_rel: f64,
    /// `max |got - want| / max |want|`.
    pub rel_to_max: f64,
    pub tolerance: f64,
}

/// `max` that keeps a NaN (a non-finite output must show in the report, not vanish).
pub fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// The distinct values of `items` joined by `/`, in first-seen order.
fn distinct<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for i in items {
        if !seen.contains(&i) {
            seen.push(i);
        }
    }
    seen.join(" / ")
}

/// One precision's logits against f32 over all images.
pub struct E2eRow {
    pub precision: Precision,
    pub max_rel: f64,
    pub mean_rel: f64,
    /// Max over images of `max_i |l_p - l_f32| / max_i (|b_i| + sum_j |w_ij| x_j)`: the fc
    /// layer's own error scale (the features `x` are ReLU6 outputs, so nonnegative).
    pub max_rel_scale: f64,
    pub top1: f64,
    pub top5: f64,
    pub storage: String,
}

/// Section 2's full-size model: one row per reduced precision.
pub struct E2e {
    pub images: usize,
    pub rows: Vec<E2eRow>,
    /// Mean over images of the f32 gap between the largest and second largest logit,
    /// relative to the largest |logit|: how close the top-1 decisions are.
    pub mean_top_gap: f64,
}

/// Small models as model/tests/precision.rs draws them: the worst and mean per-image logit
/// error relative to the logit scale, and the draw that gave the worst.
pub struct SmallRow {
    pub precision: Precision,
    pub max_rel_scale: f64,
    pub mean_rel_scale: f64,
    pub worst: String,
}

/// Section 3: one float precision on the ONNX Runtime fixture.
pub struct FixtureRow {
    pub precision: Precision,
    pub file_bytes: usize,
    /// `max |ours - ort| / max |ort|`.
    pub vs_ort: f64,
    pub top1_ort: f64,
    pub top5_ort: f64,
    /// `max |ours - ours at f32| / max |ours at f32|`.
    pub vs_f32: f64,
    pub top1_f32: f64,
    pub top5_f32: f64,
}

/// One layer's times (seconds) at every float precision, in [`Precision::FLOATS`] order.
pub struct LayerSpeed {
    pub name: String,
    pub op: String,
    pub kind: LayerKind,
    pub algorithm: [&'static str; 3],
    /// `native`, `native (avx512-bf16)`, `widened`.
    pub path: [String; 3],
    pub median_s: [f64; 3],
}

/// Section 4 at one thread count.
pub struct Speed {
    pub threads: usize,
    pub layers: Vec<LayerSpeed>,
    /// End to end: median over rounds, and the min and max of the round medians.
    pub e2e: [(f64, f64, f64); 3],
}

/// A predicate picking a group of layers for the speed summary.
type LayerFilter = dyn Fn(&LayerSpeed) -> bool;

/// The layers whose time is the bytes they move, not their arithmetic.
fn memory_bound(l: &LayerSpeed) -> bool {
    matches!(l.kind, LayerKind::Depthwise | LayerKind::FullyConnected) || l.name == "pw12" || l.name == "pw13"
}

/// A target's verdict cell.
fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

/// Everything one precision run measured, in the order of the file's sections.
pub struct PrecisionReport {
    pub provenance: Provenance,
    /// Images per forward in section 2.
    pub batch: usize,
    /// How many random small models section 2 drew.
    pub small_draws: usize,
    pub shapes: Vec<ShapeRow>,
    pub e2e: E2e,
    pub small: Vec<SmallRow>,
    pub fixture: Vec<FixtureRow>,
    /// One per thread count.
    pub speed: Vec<Speed>,
}

impl PrecisionReport {
    /// The text of `precision.md`.
    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# Reduced precision (f16, bf16): accuracy and speed\n\n\
         <!-- generated by bench-harness (benches/precision.rs); do not edit -->\n"
        );
        o.push_str(&self.provenance.markdown());
        let _ = writeln!(
            o,
            "\nMethod. At f16 or bf16 the activations between layers and every layer's weights and bias \
         (batch norm folded in f64 first) are stored in that type; every layer accumulates in f32 and \
         rounds each output once. Section 1 runs each distinct full-size MobileNetV1 layer shape \
         (batch 1, uniform random input, weights and bias in [-1, 1), ReLU6 except fc) under the \
         algorithm the `{SET}` kernel set chooses, against the naive convolution accumulated in f64 on \
         the *same rounded* inputs, so it measures the kernel's own error (f32 accumulation plus one \
         output rounding), not the rounding of the inputs. Sections 2 and 3 measure the whole effect \
         on the logits: every layer's input rounding compounded through 28 layers, against the f32 \
         model on the same weights and images, and against ONNX Runtime. Section 4 times the three \
         storage types of the `{SET}` set in one process, interleaved round by round; a ratio is the \
         time over the f32 time (below 1 is faster). `native` layers read and write the narrow type \
         in the kernel; `widened` ones run the f32 kernel between a widening and a narrowing pass.\n"
        );

        self.layer_section(&mut o);
        self.end_to_end_section(&mut o);
        self.fixture_section(&mut o);
        self.speed_section(&mut o);
        o
    }

    /// Section 1. Per layer kind against the f64 oracle, the worst shape per kind, then every shape.
    fn layer_section(&self, o: &mut String) {
        o.push_str("## 1. Per layer kind against the f64 oracle (kernel set `direct`)\n\n");
        o.push_str(
            "Worst over the kind's distinct shapes. *max / mean rel* is `|got - want| / (|bias| + sum |w||x|)` \
             (the `kernels::testing::agreement` metric the tests use); *rel to max |want|* is \
             `max |got - want| / max |want|`; *tolerance* is `precision_tolerance` (the algorithm's f32 \
             tolerance plus the unit roundoff u = 2^-11 for f16, 2^-8 for bf16); *margin* is tolerance \
             over max rel.\n\n",
        );
        o.push_str(
            "| precision | kind | layers (distinct shapes) | algorithm | storage | max rel | mean rel | rel to max \\|want\\| | tolerance | margin |\n\
             |---|---|---|---|---|---:|---:|---:|---:|---:|\n",
        );
        for p in REDUCED {
            for kind in LayerKind::ALL {
                let rows: Vec<&ShapeRow> =
                    self.shapes.iter().filter(|r| r.precision == p && r.kind == kind).collect();
                if rows.is_empty() {
                    continue;
                }
                let fold = |f: fn(&ShapeRow) -> f64| rows.iter().map(|r| f(r)).fold(0.0, nan_max);
                let (max_rel, tol) =
                    (fold(|r| r.max_rel), rows.iter().map(|r| r.tolerance).fold(f64::INFINITY, f64::min));
                let n_layers: usize = rows.iter().map(|r| r.layers.len()).sum();
                let _ = writeln!(
                    o,
                    "| {p} | {kind} | {n_layers} ({}) | {} | {} | {:.2e} | {:.2e} | {:.2e} | {:.1e} | {:.2}x |",
                    rows.len(),
                    distinct(rows.iter().map(|r| r.algorithm)),
                    distinct(rows.iter().map(|r| r.storage.as_str())),
                    max_rel,
                    fold(|r| r.mean_rel),
                    fold(|r| r.rel_to_max),
                    tol,
                    tol / max_rel.max(f64::MIN_POSITIVE)
                );
            }
        }
        o.push_str("\n<details><summary>Per shape</summary>\n\n");
        o.push_str(
            "| precision | layers | op | input | algorithm | storage | max rel | mean rel | rel to max \\|want\\| |\n\
             |---|---|---|---|---|---|---:|---:|---:|\n",
        );
        for r in &self.shapes {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {:.2e} | {:.2e} | {:.2e} |",
                r.precision,
                r.layers.join(" "),
                r.op,
                r.input,
                r.algorithm,
                r.storage,
                r.max_rel,
                r.mean_rel,
                r.rel_to_max
            );
        }
        o.push_str("\n</details>\n\n");
    }

    /// Section 2. The full-size model and the small models against f32.
    fn end_to_end_section(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "## 2. End to end against f32 (MobileNetV1 1.0-224, 1000 classes)\n\n\
             Weights `Weights::random(&cfg, 1)` with `randomize_batchnorm(2)`; {} deterministic smooth images \
             (per channel the sum of three random plane waves, amplitude 0.3..0.8 and 0.5..4 cycles per image, \
             plus uniform noise +-0.1, clamped to [-2, 2]: the range of normalised photographs); batches of {}, \
             2 threads, kernel set `{SET}`. Per image, *rel err* = `max_i |l_p - l_f32| / max_i |l_f32|`; \
             *rel to logit scale* divides by `max_i (|b_i| + sum_j |w_ij| x_j)` instead (the fc layer's own \
             error scale; the model tests use it because it does not vanish when a few logits cancel). \
             Top-5 overlap is the mean of `|top5_p ∩ top5_f32| / 5`. \
             The random model's decisions are close: the mean f32 gap between the first and second logit \
             is {:.2}% of the largest |logit|, so top-1 agreement is a harsh test here.\n",
            self.e2e.images,
            self.batch,
            100.0 * self.e2e.mean_top_gap
        );
        o.push_str(
            "| precision | storage | max rel err | mean rel err | max rel to logit scale | top-1 agree | top-5 overlap | target | rel err | top-5 |\n\
             |---|---|---:|---:|---:|---:|---:|---|---|---|\n",
        );
        for r in &self.e2e.rows {
            let target = if r.precision == Precision::F16 { TARGET_F16 } else { TARGET_BF16 };
            let _ = writeln!(
                o,
                "| {} | {} | {:.2e} | {:.2e} | {:.2e} ({:.2}u) | {:.1}% | {:.2}% | rel err <= {:.0e}, top-5 >= {TARGET_TOP5}% | {} | {} |",
                r.precision,
                r.storage,
                r.max_rel,
                r.mean_rel,
                r.max_rel_scale,
                r.max_rel_scale / r.precision.unit_roundoff(),
                r.top1,
                r.top5,
                target,
                met(r.max_rel <= target),
                met(r.top5 >= TARGET_TOP5)
            );
        }

        let _ = writeln!(
            o,
            "\nSmall models as the model tests draw them (`model/tests/precision.rs`): {} random draws of \
             width 0.25 or 0.5, resolution 32 or 64, 1..=20 classes, batch 1..=2, seeded weights with random \
             batch norm, input uniform in [-2, 2), kernel set `{SET}`, 1 thread; per image error relative to \
             the logit scale, in units of the unit roundoff u. Narrow, shallow-pooled models (0.25-64) err \
             most: fewer terms per sum average out less of each layer's rounding.\n",
            self.small_draws
        );
        o.push_str(
            "| precision | max rel to logit scale | in u | mean | worst draw |\n|---|---:|---:|---:|---|\n",
        );
        for r in &self.small {
            let _ = writeln!(
                o,
                "| {} | {:.2e} | {:.2}u | {:.2e} | {} |",
                r.precision,
                r.max_rel_scale,
                r.max_rel_scale / r.precision.unit_roundoff(),
                r.mean_rel_scale,
                r.worst
            );
        }
    }

    /// Section 3. The ONNX Runtime fixture at every float precision.
    fn fixture_section(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "\n## 3. ONNX Runtime fixture (model/tests/fixtures: 0.25-64, 10 classes, batch 2)\n\n\
             The fixture's f32 weights written as f32 / f16 / bf16 safetensors (`Weights::to_safetensors_as`, \
             as `mobilenet convert` does), read back (`Weights::from_safetensors`) and run at that precision \
             with kernel set `{SET}`, 1 thread. Errors are `max |ours - ref| / max |ref|` over the batch's \
             logits; top-5 is the mean overlap of the top 5 of 10.\n"
        );
        o.push_str(
            "| precision | file bytes | vs ORT | top-1 vs ORT | top-5 vs ORT | vs our f32 | top-1 vs f32 | top-5 vs f32 |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for r in &self.fixture {
            let _ = writeln!(
                o,
                "| {} | {} | {:.2e} | {:.0}% | {:.0}% | {:.2e} | {:.0}% | {:.0}% |",
                r.precision, r.file_bytes, r.vs_ort, r.top1_ort, r.top5_ort, r.vs_f32, r.top1_f32, r.top5_f32
            );
        }
    }

    /// Section 4. Speed: per group of layers and end to end, then per layer.
    fn speed_section(&self, o: &mut String) {
        o.push_str("\n## 4. Speed (kernel set `direct`, batch 1)\n\n");
        o.push_str(
            "Memory-bound layers: every depthwise layer, pw12, pw13 and fc (pool + fc); the rest (conv0, \
             pw1..pw11) are compute-bound. Group times are sums of per-layer medians; end to end is timed \
             around `forward_profiled` (min-max = spread of the round medians).\n\n",
        );
        o.push_str(
            "| threads | part | f32 ms | f16 ms | f16/f32 | bf16 ms | bf16/f32 |\n|---:|---|---:|---:|---:|---:|---:|\n",
        );
        for sp in &self.speed {
            let sum = |pred: &LayerFilter, p: usize| {
                sp.layers.iter().filter(|l| pred(l)).map(|l| l.median_s[p]).sum::<f64>()
            };
            let groups: [(&str, &LayerFilter); 4] = [
                ("memory-bound: depthwise (13)", &|l| l.kind == LayerKind::Depthwise),
                ("memory-bound: pw12, pw13, fc", &|l| memory_bound(l) && l.kind != LayerKind::Depthwise),
                ("memory-bound: all 16", &memory_bound),
                ("compute-bound: conv0, pw1..pw11", &|l| !memory_bound(l)),
            ];
            for (label, pred) in groups {
                let t = [0, 1, 2].map(|p| sum(pred, p));
                let _ = writeln!(
                    o,
                    "| {} | {label} | {:.3} | {:.3} | {:.2} | {:.3} | {:.2} |",
                    sp.threads,
                    t[0] * 1e3,
                    t[1] * 1e3,
                    t[1] / t[0],
                    t[2] * 1e3,
                    t[2] / t[0]
                );
            }
            let e = &sp.e2e;
            let _ = writeln!(
                o,
                "| {} | **end to end** (min-max) | {:.3} ({:.3}-{:.3}) | {:.3} ({:.3}-{:.3}) | {:.2} | {:.3} ({:.3}-{:.3}) | {:.2} |",
                sp.threads,
                e[0].0 * 1e3,
                e[0].1 * 1e3,
                e[0].2 * 1e3,
                e[1].0 * 1e3,
                e[1].1 * 1e3,
                e[1].2 * 1e3,
                e[1].0 / e[0].0,
                e[2].0 * 1e3,
                e[2].1 * 1e3,
                e[2].2 * 1e3,
                e[2].0 / e[0].0
            );
        }
        for sp in &self.speed {
            let _ = writeln!(o, "\n### Per layer, {} thread(s)\n", sp.threads);
            o.push_str(
                "| layer | op | algorithm | bound | f32 ms | f16 ms | f16 path | f16/f32 | bf16 ms | bf16 path | bf16/f32 |\n\
                 |---|---|---|---|---:|---:|---|---:|---:|---|---:|\n",
            );
            for l in &sp.layers {
                let t = l.median_s;
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {:.3} | {:.3} | {} | {:.2} | {:.3} | {} | {:.2} |",
                    l.name,
                    l.op,
                    distinct(l.algorithm.iter().copied()),
                    if memory_bound(l) { "memory" } else { "compute" },
                    t[0] * 1e3,
                    t[1] * 1e3,
                    l.path[1],
                    t[1] / t[0],
                    t[2] * 1e3,
                    l.path[2],
                    t[2] / t[0]
                );
            }
        }
    }
}
