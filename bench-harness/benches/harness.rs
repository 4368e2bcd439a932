//! `cargo bench -p bench-harness`: every MobileNetV1 layer under every algorithm in the
//! registry, the whole network under every kernel set at 1 thread and at all threads, and the
//! machine's roofs; then the best-flavour kernel sets end to end at every lower ISA ceiling of
//! the CPU; then writes `results/<cpu-slug>/<arch>-<isa>.{md,csv}`, the SVG plots and the
//! index `results/README.md`.
//!
//! The ISA ceiling is read once per process (`kernels::isa::ceiling`), so each lower ceiling
//! runs in a child: this same binary with `KERNELS_ISA=<ceiling>` and
//! `BENCH_CEILING_CHILD=<file>`, which benches only the whole-model runs of the best-flavour
//! sets and writes them to `<file>` as JSON (`bench_harness::child::ChildReport`).
//! `BENCH_CEILINGS=avx2,avx512` picks the ceilings (`none` for none); the default is every
//! ceiling the CPU has below the run's own except the bf16-only levels (`avx512bf16`, `amx`:
//! they change no f32 kernel). Scalar is included: its forwards take 40-130 ms on the Xeon
//! here (`direct` 39 ms, `im2col` 124 ms), so its child costs seconds in the quick run and
//! well under a minute in the full one (the whole quick run with three children: 1.5 minutes).
//!
//! `BENCH_QUICK=1` is the quick mode (under 4 minutes on 2 cores); the full run takes about 20.
//! A criterion filter (`cargo bench -p bench-harness -- pw13`) runs a subset and leaves
//! `results/` alone. Statistic: the median over criterion's samples of the mean time per
//! iteration (flat sampling), recorded from the same samples criterion analyses.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bench_harness::child::ChildReport;
use bench_harness::machine::{results_dir, results_root, Provenance};
use bench_harness::peak;
use bench_harness::report::{CeilingResult, LayerResult, ModelResult, Report, Roofs};
use criterion::{Criterion, SamplingMode};
use kernels::testing::random_values;
use kernels::{Activation, Dims, Isa, KernelSet, LayerKind, Par};
use model::{Config, MobileNet, Weights};

/// Per benchmark id, the mean seconds per iteration of every call criterion made (warm-up
/// first, then the measured samples).
static SAMPLES: Mutex<BTreeMap<String, Vec<f64>>> = Mutex::new(BTreeMap::new());

fn record(id: &str, elapsed: Duration, iters: u64) {
    let mut map = SAMPLES.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(id.to_string()).or_default().push(elapsed.as_secs_f64() / iters.max(1) as f64);
}

/// The median of the last `n` recorded samples of `id` (the measured ones).
fn median_of(id: &str, n: usize) -> Option<f64> {
    let map = SAMPLES.lock().unwrap_or_else(|e| e.into_inner());
    let v = map.get(id)?;
    model::stats::median(&v[v.len().saturating_sub(n)..])
}

struct Settings {
    quick: bool,
    warm_up: Duration,
    measure: Duration,
    samples: usize,
}

impl Settings {
    fn from_env() -> Settings {
        let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        if quick {
            Settings {
                quick,
                warm_up: Duration::from_millis(100),
                measure: Duration::from_millis(250),
                samples: 10,
            }
        } else {
            Settings {
                quick,
                warm_up: Duration::from_millis(500),
                measure: Duration::from_millis(1500),
                samples: 20,
            }
        }
    }

    fn describe(&self) -> String {
        format!(
            "median over {} criterion samples (flat sampling) of the mean time per iteration; warm-up {} ms, measurement {} ms per benchmark{}",
            self.samples,
            self.warm_up.as_millis(),
            self.measure.as_millis(),
            if self.quick {
                "; quick mode (BENCH_QUICK=1): only naive and the algorithms of the best-flavour kernel sets"
            } else {
                ""
            }
        )
    }
}

fn main() {
    let settings = Settings::from_env();
    let mut c = Criterion::default()
        .warm_up_time(settings.warm_up)
        .measurement_time(settings.measure)
        .sample_size(settings.samples)
        .without_plots()
        .configure_from_args();
    let (mut algos, mut sets) = match (kernels::algorithms(), kernels::kernel_sets()) {
        (Ok(a), Ok(s)) => (a, s),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    if let Ok(out) = std::env::var("BENCH_CEILING_CHILD") {
        ceiling_child(&mut c, &sets, &settings, Path::new(&out));
        return;
    }
    if settings.quick {
        // The best-flavour sets (`direct`, not `direct-avx2`) and the algorithms they run.
        sets.retain(|s| !s.name().contains('-'));
        algos.retain(|a| {
            a.name() == "naive"
                || sets
                    .iter()
                    .any(|s| LayerKind::ALL.iter().any(|&k| s.chain(k).iter().any(|b| b.name() == a.name())))
        });
    }
    for a in kernels::registry::compiled() {
        if !kernels::isa::available(a.isa()) {
            eprintln!("SKIPPED: {} is compiled in but cannot run here", a.name());
        }
    }

    eprintln!("measuring the roofs (FMA peak, read bandwidth)...");
    let peak_avx2 = peak::fma_peak_avx2_gflops();
    let peak_avx512 = peak::fma_peak_avx512_gflops();
    let peak_gflops = kernels::isa::ceiling().ok().and_then(peak::fma_peak_gflops_at);
    let roofs =
        Roofs { peak_gflops, peak_avx2, peak_avx512, bandwidth_gbs: Some(peak::read_bandwidth_gbs(3)) };

    let config = Config::default();
    let infos = config.layers().expect("the default configuration is valid");
    let mut expected_layers = Vec::new();
    for (index, info) in infos.iter().enumerate() {
        let mut group = c.benchmark_group(&info.name);
        group.sampling_mode(SamplingMode::Flat);
        let in_hw = if info.kind == LayerKind::FullyConnected { (1, 1) } else { info.input_hw };
        let in_dims = Dims::new(1, in_hw.0, in_hw.1, info.spec.in_channels);
        let out_dims = info.spec.output_dims(in_dims).expect("layer shapes are valid");
        let input = random_values(in_dims.len().unwrap_or(0), index as u64);
        let weights = random_values(info.spec.weights_len().unwrap_or(0), 7 + index as u64);
        let bias = random_values(info.spec.out_channels, 9);
        let activation =
            if info.kind == LayerKind::FullyConnected { Activation::None } else { Activation::Relu6 };
        let bytes = 4.0 * (in_dims.len().unwrap_or(0) + out_dims.len().unwrap_or(0) + weights.len()) as f64;
        for algo in algos.iter().filter(|a| a.supports(&info.spec)) {
            let prepared = match algo.prepare(&info.spec, &weights, Some(&bias), activation) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("SKIPPED: {} on {}: {e}", algo.name(), info.name);
                    continue;
                }
            };
            let mut out = vec![0.0f32; out_dims.len().unwrap_or(0)];
            let mut scratch = vec![0.0f32; prepared.scratch_len(in_dims).unwrap_or(0)];
            let id = format!("{}/{}", info.name, algo.name());
            group.bench_function(algo.name(), |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        prepared
                            .run(black_box(&input), in_dims, &mut out, &mut scratch, Par::SERIAL)
                            .expect("valid run");
                    }
                    let elapsed = start.elapsed();
                    record(&id, elapsed, iters);
                    elapsed
                })
            });
            expected_layers.push((
                id,
                LayerResult {
                    index,
                    layer: info.name.clone(),
                    kind: info.kind,
                    op: info.op(),
                    algorithm: algo.name().to_string(),
                    family: algo.family().to_string(),
                    median_s: 0.0,
                    flops: info.cost.flops as f64,
                    bytes,
                },
            ));
        }
        group.finish();
    }

    let expected_models = bench_models(&mut c, &sets, "model");
    c.final_summary();
    let layers: Vec<LayerResult> = expected_layers
        .into_iter()
        .filter_map(|(id, r)| median_of(&id, settings.samples).map(|m| LayerResult { median_s: m, ..r }))
        .collect();
    let models: Vec<ModelResult> = expected_models
        .iter()
        .filter_map(|(id, r)| {
            median_of(id, settings.samples).map(|m| ModelResult { median_s: m, ..r.clone() })
        })
        .collect();
    if models.len() < expected_models.len() || layers.is_empty() {
        eprintln!("a filtered or partial run: results/ left unchanged");
        return;
    }
    let provenance = Provenance::collect(settings.describe());
    let mut ceilings = Vec::new();
    for isa in lower_ceilings() {
        ceilings.extend(run_ceiling_child(isa));
    }
    ceilings.extend(
        models
            .iter()
            .filter(|m| is_best_flavour(&m.kernel_set))
            .map(|m| CeilingResult { isa: provenance.isa.clone(), model: m.clone() }),
    );
    let report = Report { provenance, roofs, layers, models, ceilings };
    let dir = results_dir();
    match bench_harness::write_results(&dir, &report) {
        Ok(paths) => {
            for p in paths {
                eprintln!("wrote {}", p.display());
            }
        }
        Err(e) => {
            eprintln!("error: cannot write results: {e}");
            std::process::exit(1);
        }
    }
    if settings.quick {
        eprintln!("quick mode: results/winograd-accuracy.md left unchanged");
    } else {
        // Machine-independent arithmetic: it stays at the top of results/.
        write_winograd_accuracy(&results_root(), &report.provenance);
    }
    match bench_harness::index::write_index(&results_root()) {
        Ok(path) => eprintln!("wrote {}", path.display()),
        Err(e) => eprintln!("error: cannot write the results index: {e}"),
    }
}

/// Benches every set of `sets` end to end at 1 and all threads under the criterion group
/// `group_name`; returns each benchmark id with its result (median still 0).
fn bench_models(c: &mut Criterion, sets: &[KernelSet], group_name: &str) -> Vec<(String, ModelResult)> {
    let config = Config::default();
    let all_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut thread_counts = vec![1];
    if all_threads > 1 {
        thread_counts.push(all_threads);
    }
    let weights = Weights::random(&config, 0).expect("seeded weights");
    let image = random_values(3 * config.resolution * config.resolution, 1);
    let flops = config.total_cost().map(|c| c.flops as f64).unwrap_or(0.0);
    let mut expected_models = Vec::new();
    let mut group = c.benchmark_group(group_name);
    group.sampling_mode(SamplingMode::Flat);
    for set in sets {
        for &threads in &thread_counts {
            let mut net = match MobileNet::new(config, &weights, set, 1, threads) {
                Ok(n) => n,
                Err(e) => {
                    eprintln!("SKIPPED: kernel set {} at {threads} threads: {e}", set.name());
                    continue;
                }
            };
            let id = format!("{group_name}/{}/t{threads}", set.name());
            group.bench_function(format!("{}/t{threads}", set.name()), |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(net.forward(black_box(&image)).expect("valid input"));
                    }
                    let elapsed = start.elapsed();
                    record(&id, elapsed, iters);
                    elapsed
                })
            });
            expected_models.push((
                id,
                ModelResult { kernel_set: set.name().to_string(), threads, median_s: 0.0, flops },
            ));
        }
    }
    group.finish();
    expected_models
}

/// The sets measured at every ceiling: the best-flavour ones (`direct`, not `direct-avx2`),
/// without `naive` (the same code at every ceiling).
fn is_best_flavour(set: &str) -> bool {
    !set.contains('-') && set != "naive"
}

/// The ceilings the child runs cover: `BENCH_CEILINGS` (comma-separated names, `none`), or
/// every f32 level this CPU has below the run's own ceiling (module docs).
fn lower_ceilings() -> Vec<Isa> {
    let Ok(own) = kernels::isa::ceiling() else { return Vec::new() };
    if let Ok(list) = std::env::var("BENCH_CEILINGS") {
        return list
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty() && *n != "none")
            .filter_map(|n| match Isa::parse(n) {
                Ok(isa) if isa.detected() && isa != own => Some(isa),
                Ok(isa) => {
                    eprintln!("SKIPPED: ceiling {}: not detected here, or the run's own", isa.name());
                    None
                }
                Err(e) => {
                    eprintln!("SKIPPED: ceiling {n}: {e}");
                    None
                }
            })
            .collect();
    }
    // The f32 levels of the ISA table (the bf16-only ones run the AVX-512 f32 kernels).
    Isa::ALL
        .into_iter()
        .filter(|&isa| isa.f32_level() == isa && isa.detected() && isa != own && isa.within(own))
        .collect()
}

/// Runs this binary again with `KERNELS_ISA=<isa>` in ceiling-child mode and reads back its
/// report ([`ChildReport`]); a failed child, or one whose report cannot be read, is reported
/// and yields nothing.
fn run_ceiling_child(isa: Isa) -> Vec<CeilingResult> {
    let out = std::env::temp_dir().join(format!(
        "bench-harness-ceiling-{}-{}.json",
        isa.name(),
        std::process::id()
    ));
    eprintln!("ISA ceiling {}: the best-flavour sets end to end in a child process...", isa.name());
    let status = std::env::current_exe().and_then(|exe| {
        std::process::Command::new(exe)
            .arg("--bench")
            .env("KERNELS_ISA", isa.name())
            .env("BENCH_CEILING_CHILD", &out)
            .status()
    });
    let report = match status {
        Ok(s) if s.success() => match ChildReport::read(&out, isa.name()) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("SKIPPED: ceiling {}: {e}", isa.name());
                None
            }
        },
        Ok(s) => {
            eprintln!("SKIPPED: ceiling {}: the child exited with {s}", isa.name());
            None
        }
        Err(e) => {
            eprintln!("SKIPPED: ceiling {}: cannot start the child: {e}", isa.name());
            None
        }
    };
    let _ = std::fs::remove_file(&out);
    report
        .into_iter()
        .flat_map(|r| r.models)
        .map(|model| CeilingResult { isa: isa.name().to_string(), model })
        .collect()
}

/// Ceiling-child mode: the best-flavour sets end to end under this process's ceiling, written
/// to `out` as a JSON [`ChildReport`].
fn ceiling_child(c: &mut Criterion, sets: &[KernelSet], settings: &Settings, out: &Path) {
    let isa = kernels::isa::ceiling().map(|i| i.name()).unwrap_or("invalid");
    let sets: Vec<KernelSet> = sets.iter().filter(|s| is_best_flavour(s.name())).cloned().collect();
    let expected = bench_models(c, &sets, &format!("model-{isa}"));
    let models = expected
        .into_iter()
        .filter_map(|(id, r)| median_of(&id, settings.samples).map(|m| ModelResult { median_s: m, ..r }))
        .collect();
    if let Err(e) = ChildReport::new(isa, models).write(out) {
        eprintln!("error: cannot write the child report: {e}");
        std::process::exit(1);
    }
}

/// `results/winograd-accuracy.md`: the error of every Winograd tile size against the f64
/// oracle (`bench_harness::winograd_accuracy`), with the tolerances the tests enforce.
#[cfg(feature = "winograd")]
fn write_winograd_accuracy(dir: &Path, provenance: &Provenance) {
    let rows = match bench_harness::winograd_accuracy::accuracy() {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("SKIPPED: winograd accuracy: {e}");
            return;
        }
    };
    let text = format!(
        "# Winograd accuracy per tile size\n\n<!-- generated by bench-harness (benches/harness.rs); do not edit -->\n\n{}\n\
         Error relative to `|bias| + sum |w||x|` against the f64-accumulating naive oracle, 4 seeds per row, \
         worst runnable flavour per tile size. Why the error grows with the tile: docs/winograd.md.\n\n{}",
        provenance.markdown(),
        bench_harness::winograd_accuracy::accuracy_table(&rows)
    );
    let path = dir.join("winograd-accuracy.md");
    match std::fs::write(&path, text) {
        Ok(()) => eprintln!("wrote {}", path.display()),
        Err(e) => eprintln!("error: cannot write {}: {e}", path.display()),
    }
}

#[cfg(not(feature = "winograd"))]
fn write_winograd_accuracy(_: &Path, _: &Provenance) {}
