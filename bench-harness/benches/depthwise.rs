//! MobileNetV1's 13 depthwise layers (1.0-224, batch 1, ReLU6 fused) for every registered
//! `direct-*` flavour and the naive oracle, on 1 and 2 threads.
//!
//! Bench ids: `dw7/direct-avx2/t1`. Throughput is reported as FLOP/s (criterion's
//! elements = FLOPs, `2 * 9` per output plus nothing for the bias, which seeds the sum);
//! after the run a summary table with ms, GFLOP/s, GB/s (input + output + weights + bias
//! bytes over the median time) and the 13-layer sums is printed and written to
//! `<criterion dir>/depthwise-summary.md`.
//!
//! `cargo bench -p bench-harness --bench depthwise` (about 3 minutes; filter with a regex
//! as usual, e.g. `-- 'direct-avx2/t1'`).

use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use kernels::testing::random_values;
use kernels::{registry, Activation, ConvAlgorithm, Dims, LayerKind, Par, Tensor};
use model::config::{Config, LayerInfo};

/// Measured one-core FMA peak of this machine class (DESIGN.md), for the % column.
const PEAK_GFLOPS: f64 = 116.0;

fn layers() -> Vec<LayerInfo> {
    Config::default()
        .layers()
        .expect("the default config is valid")
        .into_iter()
        .filter(|l| l.kind == LayerKind::Depthwise)
        .collect()
}

/// The algorithms to bench: naive and every runnable direct flavour, from the registry.
fn algorithms() -> Vec<&'static dyn ConvAlgorithm> {
    let runnable = registry::algorithms().expect("KERNELS_ISA must be valid");
    for a in registry::compiled().iter().filter(|a| a.family() == kernels::Family::Direct) {
        if !runnable.iter().any(|b| b.name() == a.name()) {
            eprintln!("SKIPPED: {} cannot run on this CPU / under KERNELS_ISA", a.name());
        }
    }
    runnable
        .into_iter()
        .filter(|a| a.family() == kernels::Family::Direct || a.family() == kernels::Family::Naive)
        .collect()
}

fn thread_counts(algo: &dyn ConvAlgorithm) -> &'static [usize] {
    // Naive ignores the thread count.
    if algo.family() == kernels::Family::Naive {
        &[1]
    } else {
        &[1, 2]
    }
}

/// Bytes one run must move at least once: input, output, weights and bias.
fn bytes(l: &LayerInfo) -> u64 {
    let c = l.spec.in_channels;
    let elems = l.input_hw.0 * l.input_hw.1 * c + l.output_hw.0 * l.output_hw.1 * c + 10 * c;
    4 * elems as u64
}

fn criterion_dir() -> PathBuf {
    std::env::var_os("CRITERION_HOME").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| PathBuf::from("target"), PathBuf::from)
            .join("criterion")
    })
}

fn bench(c: &mut Criterion) {
    for l in layers() {
        let in_dims = Dims::new(1, l.input_hw.0, l.input_hw.1, l.spec.in_channels);
        let out_dims = l.spec.output_dims(in_dims).expect("valid layer");
        let input = Tensor::from_nhwc(in_dims, &random_values(in_dims.len().unwrap(), 1)).unwrap();
        let weights = random_values(l.spec.weights_len().unwrap(), 2);
        let bias = random_values(l.spec.out_channels, 3);
        let mut output = Tensor::zeros(out_dims).unwrap();
        let mut group = c.benchmark_group(&l.name);
        group.throughput(Throughput::Elements(l.cost.flops));
        for algo in algorithms() {
            let prepared = algo.prepare(&l.spec, &weights, Some(&bias), Activation::Relu6).unwrap();
            let mut scratch = vec![0.0; prepared.scratch_len(in_dims).unwrap()];
            for &t in thread_counts(algo) {
                group.bench_function(BenchmarkId::new(algo.name(), format!("t{t}")), |b| {
                    b.iter(|| {
                        prepared
                            .run(
                                input.as_slice(),
                                in_dims,
                                output.as_mut_slice(),
                                &mut scratch,
                                Par::global(t),
                            )
                            .unwrap()
                    })
                });
            }
        }
        // The bytes-moved roofline of this layer: touch every input cache line once and write
        // every output line once, with no arithmetic ("how fast could any kernel be here").
        group.bench_function(BenchmarkId::new("stream", "t1"), |b| {
            b.iter(|| {
                let s: f32 = input.as_slice().iter().step_by(16).sum();
                output.as_mut_slice().fill(std::hint::black_box(s));
            })
        });
        group.finish();
    }
}

/// The median time in ns of one bench id, from criterion's estimates (None if not run).
fn median_ns(layer: &str, algo: &str, t: usize) -> Option<f64> {
    let path = criterion_dir().join(layer).join(algo).join(format!("t{t}")).join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn summary() -> String {
    use std::fmt::Write;
    let layers = layers();
    let mut s = String::new();
    let _ = writeln!(s, "# Depthwise layers, MobileNetV1 1.0-224, batch 1 (criterion medians)\n");
    let mut sums = Vec::new();
    let names: Vec<(&str, &[usize])> = algorithms()
        .into_iter()
        .map(|a| (a.name(), thread_counts(a)))
        .chain(std::iter::once(("stream", &[1usize][..])))
        .collect();
    for (name, threads) in names {
        for &t in threads {
            let rows: Vec<_> =
                layers.iter().filter_map(|l| median_ns(&l.name, name, t).map(|ns| (l, ns))).collect();
            if rows.is_empty() {
                continue;
            }
            let _ = writeln!(s, "## {name} threads={t}\n");
            let _ = writeln!(
                s,
                "| layer | op | in HxW | ms | GFLOP/s | % peak | GB/s |\n|---|---|---|---:|---:|---:|---:|"
            );
            let (mut total_ns, mut flops, mut by) = (0.0, 0u64, 0u64);
            for (l, ns) in &rows {
                let gflops = l.cost.flops as f64 / ns;
                let _ = writeln!(
                    s,
                    "| {} | {} | {}x{} | {:.4} | {:.1} | {:.0}% | {:.1} |",
                    l.name,
                    l.op(),
                    l.input_hw.0,
                    l.input_hw.1,
                    ns / 1e6,
                    gflops,
                    100.0 * gflops / PEAK_GFLOPS / t as f64,
                    bytes(l) as f64 / ns
                );
                total_ns += ns;
                flops += l.cost.flops;
                by += bytes(l);
            }
            let complete = rows.len() == layers.len();
            let _ = writeln!(
                s,
                "| **sum{}** | | | **{:.3}** | {:.1} | | {:.1} |\n",
                if complete { "" } else { " (partial)" },
                total_ns / 1e6,
                flops as f64 / total_ns,
                by as f64 / total_ns
            );
            sums.push((name, t, total_ns / 1e6, complete));
        }
    }
    let _ = writeln!(s, "## 13-layer sums\n\n| algorithm | threads | ms |\n|---|---:|---:|");
    for (name, t, ms, complete) in sums {
        let _ = writeln!(s, "| {name} | {t} | {ms:.3}{} |", if complete { "" } else { " (partial)" });
    }
    s
}

fn main() {
    // 2-thread runs use `kernels`' global pool (`Par::global`), whose workers stay awake
    // between calls, as the model's do between layers.
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
        .output_directory(&criterion_dir())
        .configure_from_args();
    bench(&mut c);
    c.final_summary();
    let s = summary();
    println!("{s}");
    let path = criterion_dir().join("depthwise-summary.md");
    if let Err(e) = std::fs::write(&path, &s) {
        eprintln!("could not write {}: {e}", path.display());
    }
}
