//! `cargo bench -p bench-harness --bench precision`: what f16 and bf16 storage cost in
//! accuracy and buy in speed on MobileNetV1, written to `results/<cpu-slug>/precision.md`.
//!
//! 1. Per layer kind: every distinct full-size layer shape under the algorithm the `direct`
//!    kernel set chooses, at f16 and bf16, against the f64 naive oracle on the same rounded
//!    inputs (`kernels::testing`), next to the tolerance the tests enforce.
//! 2. End to end: the seeded 1.0-224 model on deterministic smooth images, f16 and bf16
//!    logits against the f32 logits of the same model and images.
//! 3. The ONNX Runtime fixture with its weights converted to f16 / bf16 safetensors.
//! 4. Speed: per layer and end to end at 1 and 2 threads, the precisions interleaved in
//!    rounds within one process.
//!
//! This file measures; `bench_harness::precision_report` writes the markdown.
//!
//! `BENCH_QUICK=1` runs fewer images, rounds and forwards (under a minute on 2 cores) and
//! says so in the file. The full run takes a few minutes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bench_harness::machine::Provenance;
use bench_harness::precision_report::{
    nan_max, E2e, E2eRow, FixtureRow, LayerSpeed, PrecisionReport, ShapeRow, SmallRow, Speed, REDUCED, SET,
};
use half::{bf16, f16};
use kernels::simd::Element;
use kernels::testing::{agreement, precision_tolerance, random_values, Case};
use kernels::{Activation, ConvAlgorithm, Dims, KernelSet, LayerKind, Precision};
use kernels::{Layer, Storage, StoragePath};
use model::{npy, stats, top_k, Config, LayerInfo, MobileNet, Weights};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

struct Settings {
    quick: bool,
    /// End-to-end images (a multiple of `batch`).
    images: usize,
    batch: usize,
    /// Random small models drawn as model/tests/precision.rs draws them.
    small: usize,
    /// Speed: interleaved rounds, and forwards per precision per round.
    rounds: usize,
    forwards: usize,
    threads: [usize; 2],
}

impl Settings {
    fn from_env() -> Settings {
        let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let (images, small, rounds, forwards) = if quick { (32, 32, 2, 8) } else { (256, 256, 5, 30) };
        Settings { quick, images, batch: 16, small, rounds, forwards, threads: [1, 2] }
    }

    fn describe(&self) -> String {
        format!(
            "speed: median over {} interleaved rounds of the per-round median of {} forwards \
             (batch 1, per layer from forward_profiled, end to end timed around the call), after 3 \
             warm-up forwards per model; accuracy: {} end-to-end images, {} small models{}",
            self.rounds,
            self.forwards,
            self.images,
            self.small,
            if self.quick { "; quick mode (BENCH_QUICK=1)" } else { "" }
        )
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Res<()> {
    // `cargo bench -p bench-harness -- pw13` passes the criterion filter `pw13` to every bench
    // target: a filter that does not name this bench skips it, so a filtered run of the
    // harness leaves results/ alone.
    if let Some(filter) = std::env::args().skip(1).find(|a| !a.starts_with('-')) {
        if !"precision".contains(filter.as_str()) {
            eprintln!("precision: skipped by the filter `{filter}`; results/ left unchanged");
            return Ok(());
        }
    }
    let settings = Settings::from_env();
    let set = kernels::kernel_set(SET)?;
    let config = Config::default();
    let infos = config.layers()?;

    eprintln!("1/4 per layer kind against the f64 oracle...");
    let shapes = layer_accuracy(&set, &infos)?;
    eprintln!("2/4 end to end on {} images...", settings.images);
    let e2e = end_to_end(&set, config, &settings)?;
    eprintln!("   and {} small models...", settings.small);
    let small = small_models(&set, settings.small)?;
    eprintln!("3/4 ONNX Runtime fixture...");
    let fixture = fixture_rows(&set)?;
    eprintln!("4/4 speed...");
    let mut speed = Vec::new();
    for threads in settings.threads {
        speed.push(speed_at(&set, config, threads, &settings)?);
    }

    let provenance =
        Provenance::collect_for("cargo bench -p bench-harness --bench precision", settings.describe());
    let report = PrecisionReport {
        provenance,
        batch: settings.batch,
        small_draws: settings.small,
        shapes,
        e2e,
        small,
        fixture,
        speed,
    };
    let text = report.markdown();
    let dir = bench_harness::machine::results_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join("precision.md");
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("wrote {}", path.display());
    let index = bench_harness::index::write_index(&bench_harness::machine::results_root())?;
    eprintln!("wrote {}", index.display());
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 1. Per layer kind

/// The distinct shapes of `infos` in network order, with the names of the layers sharing each.
fn distinct_shapes(infos: &[LayerInfo]) -> Vec<(&LayerInfo, Vec<String>)> {
    let mut out: Vec<(&LayerInfo, Vec<String>)> = Vec::new();
    for info in infos {
        match out
            .iter_mut()
            .find(|(i, _)| i.kind == info.kind && i.spec == info.spec && i.input_hw == info.input_hw)
        {
            Some((_, names)) => names.push(info.name.clone()),
            None => out.push((info, vec![info.name.clone()])),
        }
    }
    out
}

/// Runs `case` (already rounded) with `algo` prepared for `E`; returns the widened output
/// and the storage path of the prepared layer (`native (level)` or `widened`).
fn run_stored<E: Element + Storage<Quant = ()>>(
    algo: &dyn ConvAlgorithm,
    case: &Case,
) -> Res<(Vec<f32>, String)> {
    let layer = Layer::new(&case.spec, &case.weights, Some(&case.bias), case.activation);
    let prepared = kernels::prepare::<E>(algo, &layer, &())?;
    let storage = match prepared.storage() {
        StoragePath::Native => format!("native ({})", prepared.level()),
        other => other.to_string(),
    };
    Ok((case.run_as::<E>(algo, 1)?, storage))
}

fn layer_accuracy(set: &KernelSet, infos: &[LayerInfo]) -> Res<Vec<ShapeRow>> {
    let mut rows = Vec::new();
    for precision in REDUCED {
        for (seed, (info, names)) in distinct_shapes(infos).into_iter().enumerate() {
            let fc = info.kind == LayerKind::FullyConnected;
            let hw = if fc { (1, 1) } else { info.input_hw };
            let dims = Dims::new(1, hw.0, hw.1, info.spec.in_channels);
            let act = if fc { Activation::None } else { Activation::Relu6 };
            let case = Case::random(info.spec, dims, act, 100 + seed as u64)?.rounded(precision);
            let algo = set.choose(info.kind, &info.spec);
            let (got, storage) = match precision {
                Precision::F16 => run_stored::<f16>(algo, &case)?,
                Precision::Bf16 => run_stored::<bf16>(algo, &case)?,
                Precision::F32 | Precision::Int8 => run_stored::<f32>(algo, &case)?,
            };
            let (want, scale) = case.reference()?;
            let a = agreement(&got, &want, &scale);
            let max_want = want.iter().fold(0.0f64, |m, &w| m.max(w.abs() as f64));
            let max_abs =
                got.iter().zip(&want).map(|(&g, &w)| (g as f64 - w as f64).abs()).fold(0.0, nan_max);
            eprintln!(
                "  {precision} {:<6} {:<22} {:<16} {storage:<8} max rel {:.2e}",
                info.name,
                info.op(),
                algo.name(),
                a.max_rel
            );
            rows.push(ShapeRow {
                precision,
                kind: info.kind,
                layers: names,
                op: info.op(),
                input: format!("{}x{}x{}", hw.0, hw.1, info.spec.in_channels),
                algorithm: algo.name(),
                storage,
                max_rel: a.max_rel,
                mean_rel: a.mean_rel,
                rel_to_max: max_abs / max_want.max(f64::MIN_POSITIVE),
                tolerance: precision_tolerance(algo, precision),
            });
        }
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------------------
// 2. End to end

/// `n` deterministic smooth NCHW images, roughly in `[-2, 2]` like normalised photographs:
/// per channel, the sum of three random plane waves (amplitude 0.3..0.8, 0.5..4 cycles per
/// image in each direction, random phase) plus uniform noise of +-0.1, clamped to `[-2, 2]`.
fn smooth_images(n: usize, r: usize, seed: u64) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * 3 * r * r);
    for image in 0..n {
        for channel in 0..3 {
            let s = seed.wrapping_mul(1_000_003).wrapping_add((image * 3 + channel) as u64);
            // random_values is uniform in [-1, 1): map to the ranges above.
            let p = random_values(12, s);
            let u = |i: usize| (p[i] as f64 + 1.0) / 2.0;
            let waves: Vec<(f64, f64, f64, f64)> = (0..3)
                .map(|k| {
                    let amp = 0.3 + 0.5 * u(4 * k);
                    let fx = (0.5 + 3.5 * u(4 * k + 1)) * if p[4 * k + 3] < 0.0 { -1.0 } else { 1.0 };
                    let fy = 0.5 + 3.5 * u(4 * k + 2);
                    let phase = std::f64::consts::TAU * u(4 * k + 3);
                    (amp, fx, fy, phase)
                })
                .collect();
            let noise = random_values(r * r, s ^ 0x5EED);
            for y in 0..r {
                for x in 0..r {
                    let (fxr, fyr) = (x as f64 / r as f64, y as f64 / r as f64);
                    let v: f64 = waves
                        .iter()
                        .map(|&(a, fx, fy, ph)| {
                            a * (std::f64::consts::TAU * (fx * fxr + fy * fyr) + ph).cos()
                        })
                        .sum();
                    out.push((v + 0.1 * noise[y * r + x] as f64).clamp(-2.0, 2.0) as f32);
                }
            }
        }
    }
    out
}

/// How many layers take each storage path, e.g. `27 native, 1 widened (conv0)`.
fn storage_counts(net: &MobileNet) -> String {
    let runs = net.layer_runs();
    let mut parts = Vec::new();
    for path in [StoragePath::Native, StoragePath::Widened] {
        let names: Vec<&str> =
            runs.iter().filter(|l| l.storage == path).map(|l| l.info.name.as_str()).collect();
        match names.len() {
            0 => {}
            1..=3 => parts.push(format!("{} {path} ({})", names.len(), names.join(", "))),
            n => parts.push(format!("{n} {path}")),
        }
    }
    parts.join(", ")
}

/// Runs `net` on every batch of images; returns all logits.
fn logits_of(net: &mut MobileNet, s: &Settings, r: usize) -> Res<Vec<f32>> {
    let mut all = Vec::new();
    for b in 0..s.images / s.batch {
        all.extend_from_slice(net.forward(&smooth_images(s.batch, r, 1000 + b as u64))?);
    }
    Ok(all)
}

/// Indices of the `k` largest logits of `row`.
fn top(row: &[f32], k: usize) -> Vec<usize> {
    top_k(row, k).into_iter().map(|(i, _)| i).collect()
}

/// The same weights with the fc layer's weights and bias replaced by their absolute values:
/// its logits are `|b| + |W| x`, the fc layer's error scale (the pooled features `x` are
/// ReLU6 outputs, so nonnegative).
fn abs_fc(weights: &Weights) -> Res<Weights> {
    let mut abs = weights.clone();
    for key in ["linear.weight", "linear.bias"] {
        let p = abs.get_mut(key).ok_or(format!("no {key}"))?;
        p.data.iter_mut().for_each(|v| *v = v.abs());
    }
    Ok(abs)
}

/// One image's logit error: `max_i |got - want| / max_i |want|` and
/// `max_i |got - want| / max_i scale`.
fn image_errors(got: &[f32], want: &[f32], scale: &[f32]) -> (f64, f64) {
    let err = got.iter().zip(want).map(|(&a, &b)| (a as f64 - b as f64).abs()).fold(0.0, nan_max);
    let max_w = want.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
    let max_sc = scale.iter().fold(0.0f64, |m, &v| m.max(v as f64));
    (err / max_w.max(f64::MIN_POSITIVE), err / max_sc.max(f64::MIN_POSITIVE))
}

fn end_to_end(set: &KernelSet, config: Config, s: &Settings) -> Res<E2e> {
    let mut weights = Weights::random(&config, 1)?;
    weights.randomize_batchnorm(2);
    let threads = 2;
    let r = config.resolution;
    let c = config.classes;
    let reference = logits_of(&mut MobileNet::new(config, &weights, set, s.batch, threads)?, s, r)?;
    let scale = logits_of(&mut MobileNet::new(config, &abs_fc(&weights)?, set, s.batch, threads)?, s, r)?;
    let mut rows = Vec::new();
    for precision in REDUCED {
        let mut net = MobileNet::with_precision(config, &weights, set, s.batch, threads, precision)?;
        let storage = storage_counts(&net);
        let got = logits_of(&mut net, s, r)?;
        let mut row = E2eRow {
            precision,
            max_rel: 0.0,
            mean_rel: 0.0,
            max_rel_scale: 0.0,
            top1: 0.0,
            top5: 0.0,
            storage,
        };
        for ((g, w), sc) in got.chunks_exact(c).zip(reference.chunks_exact(c)).zip(scale.chunks_exact(c)) {
            let (rel, rel_scale) = image_errors(g, w, sc);
            row.max_rel = nan_max(row.max_rel, rel);
            row.mean_rel += rel / s.images as f64;
            row.max_rel_scale = nan_max(row.max_rel_scale, rel_scale);
            row.top1 += f64::from(u8::from(top(g, 1) == top(w, 1))) * 100.0 / s.images as f64;
            let (tg, tw) = (top(g, 5), top(w, 5));
            let overlap = tg.iter().filter(|i| tw.contains(i)).count();
            row.top5 += overlap as f64 / 5.0 * 100.0 / s.images as f64;
        }
        eprintln!(
            "  {precision}: max rel {:.2e} mean {:.2e} top-1 {:.1}% top-5 {:.2}%",
            row.max_rel, row.mean_rel, row.top1, row.top5
        );
        rows.push(row);
    }
    let mean_top_gap = reference
        .chunks_exact(c)
        .map(|w| {
            let t = top_k(w, 2);
            let max_w = w.iter().fold(0.0f32, |m, &v| m.max(v.abs()));
            ((t[0].1 - t[1].1) / max_w) as f64
        })
        .sum::<f64>()
        / s.images as f64;
    Ok(E2e { images: s.images, rows, mean_top_gap })
}

/// `draws` random small models (width 0.25 or 0.5, resolution 32 or 64, 1..=20 classes,
/// batch 1..=2, seeded weights with random batch norm, input uniform in [-2, 2)), the same
/// draws at each precision, 1 thread.
fn small_models(set: &KernelSet, draws: usize) -> Res<Vec<SmallRow>> {
    let mut rows = Vec::new();
    for precision in REDUCED {
        let mut row = SmallRow { precision, max_rel_scale: 0.0, mean_rel_scale: 0.0, worst: String::new() };
        let mut images = 0;
        for d in 0..draws {
            let u = random_values(4, 0x5A11 + d as u64);
            let pick = |x: f32, n: usize| (((x + 1.0) / 2.0 * n as f32) as usize).min(n - 1);
            let width = [0.25, 0.5][pick(u[0], 2)];
            let resolution = [32, 64][pick(u[1], 2)];
            let classes = 1 + pick(u[2], 20);
            let batch = 1 + pick(u[3], 2);
            let seed = d as u64;
            let config = Config { width, resolution, classes };
            let mut weights = Weights::random(&config, seed)?;
            weights.randomize_batchnorm(seed ^ 1);
            let input: Vec<f32> =
                random_values(batch * 3 * resolution * resolution, seed).iter().map(|v| 2.0 * v).collect();
            let run = |w: &Weights, p: Precision| -> Res<Vec<f32>> {
                Ok(MobileNet::with_precision(config, w, set, batch, 1, p)?.forward(&input)?.to_vec())
            };
            let got = run(&weights, precision)?;
            let want = run(&weights, Precision::F32)?;
            let scale = run(&abs_fc(&weights)?, Precision::F32)?;
            for ((g, w), sc) in
                got.chunks_exact(classes).zip(want.chunks_exact(classes)).zip(scale.chunks_exact(classes))
            {
                let (_, rel_scale) = image_errors(g, w, sc);
                images += 1;
                row.mean_rel_scale += rel_scale;
                if rel_scale.is_nan() || rel_scale > row.max_rel_scale {
                    row.max_rel_scale = rel_scale;
                    row.worst =
                        format!("{width}-{resolution}, {classes} classes, batch {batch}, seed {seed}");
                }
            }
        }
        row.mean_rel_scale /= images.max(1) as f64;
        eprintln!("  {precision}: small models max {:.2e} ({})", row.max_rel_scale, row.worst);
        rows.push(row);
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------------------
// 3. ONNX Runtime fixture

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures")
}

/// Agreement of `got` with `want` (rows of `classes`): max abs error relative to max |want|,
/// top-1 agreement and mean top-5 overlap in percent.
fn compare(got: &[f32], want: &[f32], classes: usize) -> (f64, f64, f64) {
    let err = got.iter().zip(want).map(|(&a, &b)| (a as f64 - b as f64).abs()).fold(0.0, nan_max);
    let max_w = want.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
    let rows = want.len() / classes;
    let (mut top1, mut top5) = (0.0, 0.0);
    let k = classes.min(5);
    for (g, w) in got.chunks_exact(classes).zip(want.chunks_exact(classes)) {
        top1 += f64::from(u8::from(top(g, 1) == top(w, 1))) * 100.0 / rows as f64;
        let tw = top(w, k);
        top5 += top(g, k).iter().filter(|i| tw.contains(i)).count() as f64 / k as f64 * 100.0 / rows as f64;
    }
    (err / max_w.max(f64::MIN_POSITIVE), top1, top5)
}

fn fixture_rows(set: &KernelSet) -> Res<Vec<FixtureRow>> {
    let dir = fixture_dir();
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json"))?)?;
    let field = |k: &str| meta[k].as_f64().ok_or(format!("meta.json: no {k}"));
    let config = Config {
        width: field("width")?,
        resolution: field("resolution")? as usize,
        classes: field("classes")? as usize,
    };
    let weights = Weights::load(&dir.join("weights.safetensors"), &config)?;
    let input = npy::read(&dir.join("input.npy"))?;
    let ort = npy::read(&dir.join("logits.npy"))?;
    let batch = input.shape[0];
    let ours_f32 = MobileNet::new(config, &weights, set, batch, 1)?.forward(&input.data)?.to_vec();
    let mut rows = Vec::new();
    for precision in Precision::FLOATS {
        // The path a user takes: `mobilenet convert --precision p`, then load the file.
        let bytes = weights.to_safetensors_as(precision)?;
        let converted = Weights::from_safetensors(&bytes, &config)?;
        let mut net = MobileNet::with_precision(config, &converted, set, batch, 1, precision)?;
        let got = net.forward(&input.data)?;
        let (vs_ort, top1_ort, top5_ort) = compare(got, &ort.data, config.classes);
        let (vs_f32, top1_f32, top5_f32) = compare(got, &ours_f32, config.classes);
        eprintln!("  {precision}: vs ORT {vs_ort:.2e}, vs f32 {vs_f32:.2e}");
        rows.push(FixtureRow {
            precision,
            file_bytes: bytes.len(),
            vs_ort,
            top1_ort,
            top5_ort,
            vs_f32,
            top1_f32,
            top5_f32,
        });
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------------------
// 4. Speed

fn speed_at(set: &KernelSet, config: Config, threads: usize, s: &Settings) -> Res<Speed> {
    let mut weights = Weights::random(&config, 1)?;
    weights.randomize_batchnorm(2);
    let image = smooth_images(1, config.resolution, 7);
    let mut nets = Vec::new();
    for p in Precision::FLOATS {
        nets.push(MobileNet::with_precision(config, &weights, set, 1, threads, p)?);
    }
    let n_layers = nets[0].layer_runs().len();
    let mut times = vec![Duration::ZERO; n_layers];
    for net in nets.iter_mut() {
        for _ in 0..3 {
            net.forward_profiled(&image, &mut times)?;
        }
    }
    // [precision][layer][round] and [precision][round]
    let mut layer_rounds = vec![vec![Vec::new(); n_layers]; 3];
    let mut e2e_rounds = vec![Vec::new(); 3];
    for round in 0..s.rounds {
        // Rotate which precision goes first so none always runs on a just-warmed cache.
        for k in 0..3 {
            let pi = (round + k) % 3;
            let net = &mut nets[pi];
            let mut per_layer = vec![Vec::with_capacity(s.forwards); n_layers];
            let mut whole = Vec::with_capacity(s.forwards);
            for _ in 0..s.forwards {
                let start = Instant::now();
                std::hint::black_box(net.forward_profiled(std::hint::black_box(&image), &mut times)?);
                whole.push(start.elapsed().as_secs_f64());
                for (acc, t) in per_layer.iter_mut().zip(&times) {
                    acc.push(t.as_secs_f64());
                }
            }
            for (dst, src) in layer_rounds[pi].iter_mut().zip(per_layer) {
                dst.push(stats::median(&src).unwrap_or(f64::NAN));
            }
            e2e_rounds[pi].push(stats::median(&whole).unwrap_or(f64::NAN));
        }
    }
    let runs: Vec<_> = nets.iter().map(|n| n.layer_runs()).collect();
    let layers = (0..n_layers)
        .map(|i| {
            let info = runs[0][i].info;
            LayerSpeed {
                name: info.name.clone(),
                op: info.op(),
                kind: info.kind,
                algorithm: [0, 1, 2].map(|p| runs[p][i].algorithm),
                path: [0, 1, 2].map(|p| {
                    let l = &runs[p][i];
                    if Precision::FLOATS[p] == Precision::F32 {
                        "-".to_string()
                    } else if l.storage == StoragePath::Native {
                        format!("native ({})", l.level)
                    } else {
                        l.storage.to_string()
                    }
                }),
                median_s: [0, 1, 2].map(|p| stats::median(&layer_rounds[p][i]).unwrap_or(f64::NAN)),
            }
        })
        .collect();
    let e2e = [0, 1, 2].map(|p| {
        stats::Summary::of(&e2e_rounds[p])
            .map_or((f64::NAN, f64::NAN, f64::NAN), |s| (s.median, s.min, s.max))
    });
    eprintln!(
        "  {threads} thread(s): f32 {:.3} ms, f16 {:.3} ms, bf16 {:.3} ms",
        e2e[0].0 * 1e3,
        e2e[1].0 * 1e3,
        e2e[2].0 * 1e3
    );
    Ok(Speed { threads, layers, e2e })
}
