//! Winograd F(2), F(4), F(6) against the other families on MobileNetV1's stride-1 depthwise
//! layers and on the dense 3x3 stride-1 shapes where Winograd is known to win; 1 thread.
//!
//! Every registered algorithm of the compared families that supports a shape is benched
//! (the registry is the one list), so flavours and new families appear automatically.
//! Throughput is in FLOP/s of the direct convolution (2 x MACs), so the numbers compare
//! across algorithms; Winograd's "effective" GFLOP/s can exceed the FMA peak.
//! `cargo bench -p bench-harness --bench winograd [-- filter]`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kernels::cost::conv_cost;
use kernels::testing::random_values;
use kernels::{registry, Activation, ConvSpec, Dims, Par};

/// The families compared (direct and im2col appear once their branches are merged).
const FAMILIES: [&str; 4] = ["naive", "direct", "im2col", "winograd"];

/// (bench id prefix, spec, NHWC input). dw8..dw11 have dw7's shape and are not repeated.
fn layers() -> Vec<(&'static str, ConvSpec, Dims)> {
    vec![
        ("dw1", ConvSpec::depthwise(32, 3, 1, 1), Dims::new(1, 112, 112, 32)),
        ("dw3", ConvSpec::depthwise(128, 3, 1, 1), Dims::new(1, 56, 56, 128)),
        ("dw5", ConvSpec::depthwise(256, 3, 1, 1), Dims::new(1, 28, 28, 256)),
        ("dw7", ConvSpec::depthwise(512, 3, 1, 1), Dims::new(1, 14, 14, 512)),
        ("dw13", ConvSpec::depthwise(1024, 3, 1, 1), Dims::new(1, 7, 7, 1024)),
        ("conv56x56x64", ConvSpec::dense(64, 64, 3, 1, 1), Dims::new(1, 56, 56, 64)),
        ("conv28x28x128", ConvSpec::dense(128, 128, 3, 1, 1), Dims::new(1, 28, 28, 128)),
        ("conv14x14x256", ConvSpec::dense(256, 256, 3, 1, 1), Dims::new(1, 14, 14, 256)),
        ("conv7x7x512", ConvSpec::dense(512, 512, 3, 1, 1), Dims::new(1, 7, 7, 512)),
    ]
}

fn bench(c: &mut Criterion) {
    let algos = registry::algorithms().expect("KERNELS_ISA must be valid");
    for (id, spec, dims) in layers() {
        let mut group = c.benchmark_group(id);
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        let flops = conv_cost(&spec, dims.h, dims.w, true).expect("valid layer").flops;
        group.throughput(Throughput::Elements(flops));
        let input = random_values(dims.len().unwrap(), 1);
        let weights = random_values(spec.weights_len().unwrap(), 2);
        let bias = random_values(spec.out_channels, 3);
        let out_len = spec.output_dims(dims).unwrap().len().unwrap();
        for algo in algos.iter().filter(|a| FAMILIES.contains(&a.family().name()) && a.supports(&spec)) {
            let prepared = algo.prepare(&spec, &weights, Some(&bias), Activation::Relu6).unwrap();
            let mut scratch = vec![0.0f32; prepared.scratch_len(dims).unwrap()];
            let mut out = vec![0.0f32; out_len];
            group.bench_function(BenchmarkId::from_parameter(algo.name()), |b| {
                b.iter(|| prepared.run(&input, dims, &mut out, &mut scratch, Par::SERIAL).unwrap())
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
