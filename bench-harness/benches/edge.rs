//! MobileNetV1's two edge layers, batch 1, one thread, bias + activation fused:
//!
//! - `conv0` (3x3 s2 p1, 3 -> 32, 224x224 -> 112x112; K = 27): every runnable `im2col-*`
//!   flavour, which takes the fused path (the microkernel reads A straight from the NHWC
//!   input, see `kernels::im2col`).
//! - `fc` (1024 -> 1000 on the pooled vector, M = batch rows): every runnable `gemm-*`
//!   flavour, which takes the small-M tiles (see `kernels::gemm::choose_tile`). The 4 MB of
//!   weights do not fit L2, so it is bandwidth-bound: the summary gives GB/s with the
//!   weights warm (L3) and cold (after a 64 MiB sweep evicts them, as the 17 MB of other
//!   layers' weights do in the model), next to the measured single-core DRAM read stream.
//!
//! Bench ids: `conv0/im2col-avx512/t1`, `fc/gemm-avx512/m1`. A markdown summary (median of
//! 200 runs) is printed first. `cargo bench -p bench-harness --features focused-benches
//! --bench edge` (about 1 minute).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kernels::testing::random_values;
use kernels::{registry, Activation, ConvAlgorithm, ConvSpec, Dims, Par, PreparedConv};

fn algos(family: &str) -> Vec<&'static dyn ConvAlgorithm> {
    let runnable = registry::algorithms().expect("KERNELS_ISA must be valid");
    for a in registry::compiled().iter().filter(|a| a.family().name() == family) {
        if !runnable.iter().any(|b| b.name() == a.name()) {
            eprintln!("SKIPPED: {} cannot run on this CPU / under KERNELS_ISA", a.name());
        }
    }
    runnable.into_iter().filter(|a| a.family().name() == family).collect()
}

/// One prepared layer with its buffers.
struct Layer {
    conv: Box<dyn PreparedConv>,
    dims: Dims,
    input: Vec<f32>,
    output: Vec<f32>,
    scratch: Vec<f32>,
    flops: f64,
    weight_bytes: f64,
}

impl Layer {
    fn new(algo: &dyn ConvAlgorithm, spec: ConvSpec, dims: Dims) -> Layer {
        let out = spec.output_dims(dims).unwrap();
        let w = random_values(spec.weights_len().unwrap(), 1);
        let conv =
            algo.prepare(&spec, &w, Some(&random_values(spec.out_channels, 2)), Activation::Relu6).unwrap();
        let scratch = vec![0.0; conv.scratch_len(dims).unwrap()];
        let macs = out.len().unwrap() * spec.in_channels * spec.kernel_h * spec.kernel_w;
        Layer {
            conv,
            dims,
            input: random_values(dims.len().unwrap(), 3),
            output: vec![0.0; out.len().unwrap()],
            scratch,
            flops: 2.0 * macs as f64,
            weight_bytes: 4.0 * w.len() as f64,
        }
    }
    fn run(&mut self) {
        self.conv.run(&self.input, self.dims, &mut self.output, &mut self.scratch, Par::SERIAL).unwrap();
    }
    /// Median seconds of `reps` runs, each after `before()` (untimed).
    fn median(&mut self, reps: usize, mut before: impl FnMut()) -> f64 {
        let ts: Vec<f64> = (0..reps)
            .map(|_| {
                before();
                let t = Instant::now();
                self.run();
                t.elapsed().as_secs_f64()
            })
            .collect();
        model::stats::median(&ts).unwrap_or(f64::NAN)
    }
}

const CONV0: ConvSpec = ConvSpec::dense(3, 32, 3, 2, 1);
const FC: ConvSpec = ConvSpec::pointwise(1024, 1000);
const FC_BATCHES: [usize; 3] = [1, 2, 4];

fn conv0_dims() -> Dims {
    Dims::new(1, 224, 224, 3)
}

fn summary() {
    let mut sweep = vec![0.0f32; 16 << 20];
    let mut evict = || {
        for x in sweep.iter_mut().step_by(16) {
            *x += 1.0;
        }
        std::hint::black_box(&sweep);
    };
    println!("| layer | algorithm | ms | GFLOP/s | weights GB/s |");
    println!("|---|---|---:|---:|---:|");
    for algo in algos("im2col") {
        let mut l = Layer::new(algo, CONV0, conv0_dims());
        let s = l.median(200, || {});
        println!("| conv0 | {} | {:.4} | {:.1} | - |", algo.name(), s * 1e3, l.flops / s / 1e9);
    }
    for algo in algos("gemm") {
        for m in FC_BATCHES {
            let mut l = Layer::new(algo, FC, Dims::new(m, 1, 1, 1024));
            let warm = l.median(200, || {});
            let cold = l.median(100, &mut evict);
            println!(
                "| fc M={m} warm | {} | {:.4} | {:.1} | {:.1} |",
                algo.name(),
                warm * 1e3,
                l.flops / warm / 1e9,
                l.weight_bytes / warm / 1e9
            );
            println!(
                "| fc M={m} cold | {} | {:.4} | {:.1} | {:.1} |",
                algo.name(),
                cold * 1e3,
                l.flops / cold / 1e9,
                l.weight_bytes / cold / 1e9
            );
        }
    }
    println!("\nsingle-core DRAM read stream: {:.1} GB/s\n", bench_harness::peak::read_bandwidth_gbs(2));
}

fn bench(c: &mut Criterion) {
    summary();
    let mut g = c.benchmark_group("conv0");
    g.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(1));
    for algo in algos("im2col") {
        let mut l = Layer::new(algo, CONV0, conv0_dims());
        g.throughput(Throughput::Elements(l.flops as u64));
        g.bench_function(BenchmarkId::new(algo.name(), "t1"), |b| b.iter(|| l.run()));
    }
    g.finish();
    let mut g = c.benchmark_group("fc");
    g.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(1));
    for algo in algos("gemm") {
        for m in FC_BATCHES {
            let mut l = Layer::new(algo, FC, Dims::new(m, 1, 1, 1024));
            g.throughput(Throughput::Bytes(l.weight_bytes as u64));
            g.bench_function(BenchmarkId::new(algo.name(), format!("m{m}")), |b| b.iter(|| l.run()));
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
