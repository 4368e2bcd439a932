//! `cargo bench -p bench-harness`: every MobileNetV1 layer under every algorithm in the
//! registry, the whole network under every kernel set at 1 thread and at all threads, and the
//! machine's roofs; then writes `results/<arch>-<isa>.{md,csv}` and the SVG plots.
//!
//! `BENCH_QUICK=1` is the quick mode (under 3 minutes on 2 cores); the full run takes under 20.
//! A criterion filter (`cargo bench -p bench-harness -- pw13`) runs a subset and leaves
//! `results/` alone. Statistic: the median over criterion's samples of the mean time per
//! iteration (flat sampling), recorded from the same samples criterion analyses.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bench_harness::machine::Provenance;
use bench_harness::peak;
use bench_harness::report::{LayerResult, ModelResult, Report, Roofs};
use criterion::{Criterion, SamplingMode};
use kernels::testing::random_values;
use kernels::{Activation, Dims, LayerKind, Par};
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
    let mut last: Vec<f64> = v[v.len().saturating_sub(n)..].to_vec();
    last.sort_by(f64::total_cmp);
    (!last.is_empty()).then(|| last[last.len() / 2])
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
    let peak_gflops = match kernels::isa::ceiling() {
        Ok(kernels::Isa::Avx512 | kernels::Isa::Avx512Bf16 | kernels::Isa::Amx) => peak_avx512.or(peak_avx2),
        Ok(kernels::Isa::Avx2) => peak_avx2,
        _ => None,
    };
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

    let all_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut thread_counts = vec![1];
    if all_threads > 1 {
        thread_counts.push(all_threads);
    }
    let weights = Weights::random(&config, 0).expect("seeded weights");
    let image = random_values(3 * config.resolution * config.resolution, 1);
    let flops = config.total_cost().map(|c| c.flops as f64).unwrap_or(0.0);
    let mut expected_models = Vec::new();
    let mut group = c.benchmark_group("model");
    group.sampling_mode(SamplingMode::Flat);
    for set in &sets {
        for &threads in &thread_counts {
            let mut net = match MobileNet::new(config, &weights, set, 1, threads) {
                Ok(n) => n,
                Err(e) => {
                    eprintln!("SKIPPED: kernel set {} at {threads} threads: {e}", set.name());
                    continue;
                }
            };
            let id = format!("model/{}/t{threads}", set.name());
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
    let report = Report { provenance: Provenance::collect(settings.describe()), roofs, layers, models };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../results");
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
        write_winograd_accuracy(&dir, &report.provenance);
    }
}

/// `results/winograd-accuracy.md`: the error of every Winograd tile size against the f64
/// oracle (`kernels::winograd::accuracy`), with the tolerances the tests enforce.
#[cfg(feature = "winograd")]
fn write_winograd_accuracy(dir: &Path, provenance: &Provenance) {
    let rows = match kernels::winograd::accuracy() {
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
        kernels::winograd::accuracy_table(&rows)
    );
    let path = dir.join("winograd-accuracy.md");
    match std::fs::write(&path, text) {
        Ok(()) => eprintln!("wrote {}", path.display()),
        Err(e) => eprintln!("error: cannot write {}: {e}", path.display()),
    }
}

#[cfg(not(feature = "winograd"))]
fn write_winograd_accuracy(_: &Path, _: &Provenance) {}
