//! MobileNetV1's pointwise layers (pw1..pw13) as SGEMM: `M = H*W` output pixels, `K = Cin`,
//! `N = Cout`, with bias + ReLU6 fused. Every microkernel of every flavour runnable here,
//! each flavour's per-shape tile choice (`gemm-<flavour>`, what the model runs), and the
//! `matrixmultiply` and `gemm` crates on the same shapes in the same run, at 1 and 2
//! threads. GFLOP/s are given next to the measured FMA peak.
//!
//! First a summary table (median of repeated runs, printed as markdown; ~1 minute), then the
//! criterion groups `pw<i>/<impl>/t<threads>` (`cargo bench -p bench-harness --bench gemm
//! -- pw3/` filters them; `GEMM_SUMMARY_ONLY=1` skips them).

use std::time::{Duration, Instant};

use bench_harness::peak;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kernels::gemm::{self, Operands, PackedB, Tile};
use kernels::testing::random_values;
use kernels::Backend;
use kernels::{Activation, LayerKind, Par};
use model::Config;

/// (name, M = H*W, K = Cin, N = Cout) of pw1..pw13, from the model's own layer table.
fn layers() -> Vec<(String, usize, usize, usize)> {
    let infos = Config::default().layers().expect("the default config is valid");
    infos
        .into_iter()
        .filter(|l| l.kind == LayerKind::Pointwise)
        .map(|l| (l.name, l.output_hw.0 * l.output_hw.1, l.spec.in_channels, l.spec.out_channels))
        .collect()
}

/// One layer's data.
struct Data {
    m: usize,
    k: usize,
    n: usize,
    a: Vec<f32>,
    /// B row-major `k x n` (the crates' best case).
    b: Vec<f32>,
    bias: Vec<f32>,
    c: Vec<f32>,
}

impl Data {
    fn new(m: usize, k: usize, n: usize) -> Self {
        Data {
            m,
            k,
            n,
            a: random_values(m * k, 1),
            b: random_values(k * n, 2),
            bias: random_values(n, 3),
            c: vec![0.0; m * n],
        }
    }
    fn flops(&self) -> f64 {
        2.0 * (self.m * self.n * self.k) as f64
    }
}

/// The operands of `C = relu6(A B + bias)` with A `lda` and C `ldc` apart.
fn relu6<'a>(a: &'a [f32], lda: usize, b: &'a PackedB, bias: &'a [f32], ldc: usize) -> Operands<'a> {
    Operands { a, lda, b, bias, activation: Activation::Relu6, ldc }
}

/// What is benched: a name and how to prepare it for a layer (weights packed outside the
/// timed closure, as at prepare time).
enum Impl {
    /// One microkernel of a backend, at the level the backend runs at here.
    Tile(Backend, &'static Tile),
    Backend(Backend),
    MatrixMultiply,
    GemmCrate,
}

impl Impl {
    fn name(&self) -> String {
        match self {
            Impl::Tile(_, t) => t.name(),
            Impl::Backend(b) => format!("gemm-{b}"),
            Impl::MatrixMultiply => "matrixmultiply".into(),
            Impl::GemmCrate => "gemm-crate".into(),
        }
    }

    /// Returns the timed closure for `d` at `threads`.
    fn prepare<'a>(&'a self, d: &'a mut Data, threads: usize) -> Box<dyn FnMut() + 'a> {
        let (m, k, n) = (d.m, d.k, d.n);
        match self {
            Impl::Tile(_, t) => {
                let b = d.b.clone();
                let packed = PackedB::new(k, n, t.nr, move |p, j| b[p * n + j]).unwrap();
                Box::new(move || {
                    // SAFETY: only tiles of backends that run here are listed (see `impls`).
                    unsafe {
                        gemm::sgemm_tile(
                            t,
                            m,
                            &relu6(&d.a, k, &packed, &d.bias, n),
                            &mut d.c,
                            Par::global(threads),
                        )
                    }
                    .unwrap()
                })
            }
            Impl::Backend(f) => {
                let f = *f;
                let b = d.b.clone();
                let nr = gemm::nr_for(gemm::tiles(f).unwrap(), k, n);
                let packed = PackedB::new(k, n, nr, move |p, j| b[p * n + j]).unwrap();
                Box::new(move || {
                    gemm::sgemm(f, m, &relu6(&d.a, k, &packed, &d.bias, n), &mut d.c, Par::global(threads))
                        .unwrap()
                })
            }
            Impl::MatrixMultiply => Box::new(move || {
                // SAFETY: the pointers and strides describe the Data buffers exactly.
                unsafe {
                    matrixmultiply::sgemm(
                        m,
                        k,
                        n,
                        1.0,
                        d.a.as_ptr(),
                        k as isize,
                        1,
                        d.b.as_ptr(),
                        n as isize,
                        1,
                        0.0,
                        d.c.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                }
            }),
            Impl::GemmCrate => Box::new(move || {
                let par =
                    if threads > 1 { ::gemm::Parallelism::Rayon(threads) } else { ::gemm::Parallelism::None };
                // SAFETY: the pointers and strides describe the Data buffers exactly.
                unsafe {
                    ::gemm::gemm(
                        m,
                        n,
                        k,
                        d.c.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        d.a.as_ptr(),
                        1,
                        k as isize,
                        d.b.as_ptr(),
                        1,
                        n as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        par,
                    )
                }
            }),
        }
    }

    /// matrixmultiply is built without its threading feature: one thread only.
    /// The FMA peak this implementation's ISA can reach (AVX2 tiles against the AVX2 peak,
    /// everything else against the best).
    fn peak(&self, avx2: f64, best: f64) -> f64 {
        let isa = match self {
            Impl::Tile(b, _) | Impl::Backend(b) => b.level(),
            _ => None,
        };
        if isa == Some(kernels::Isa::Avx2) && avx2 > 0.0 {
            avx2
        } else {
            best
        }
    }

    fn threads(&self) -> &'static [usize] {
        match self {
            Impl::MatrixMultiply => &[1],
            _ => &[1, 2],
        }
    }
}

fn impls() -> Vec<Impl> {
    let mut v = Vec::new();
    for f in Backend::compiled_in() {
        let Ok(tiles) = gemm::tiles(f) else {
            eprintln!("SKIPPED: backend {f} cannot run on this CPU / under KERNELS_ISA");
            continue;
        };
        v.push(Impl::Backend(f));
        if tiles.len() > 1 {
            v.extend(tiles.iter().map(|t| Impl::Tile(f, t)));
        }
    }
    v.push(Impl::MatrixMultiply);
    v.push(Impl::GemmCrate);
    v
}

/// The `gemm` crate's 2-thread runs use rayon's global pool, sized to 2 workers once; ours
/// run on `kernels`' own global pool (`Par::global`).
fn init_pool() {
    let _ = rayon::ThreadPoolBuilder::new().num_threads(2).build_global();
}

/// Median seconds of `f` over enough runs to fill ~`budget`.
fn median_secs(f: &mut dyn FnMut(), budget: Duration) -> f64 {
    f();
    let t = Instant::now();
    f();
    let one = t.elapsed().as_secs_f64().max(1e-7);
    let reps = ((budget.as_secs_f64() / one) as usize).clamp(5, 200);
    let v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    model::stats::median(&v).unwrap_or(f64::NAN)
}

fn summary(_c: &mut Criterion) {
    let avx2 = peak::fma_peak_avx2_gflops().unwrap_or(0.0);
    let avx512 = peak::fma_peak_avx512_gflops().unwrap_or(0.0);
    let best = avx2.max(avx512);
    println!("\n## SGEMM on MobileNetV1's pointwise shapes (median; bias + ReLU6 fused in ours)\n");
    println!(
        "FMA peak (one core, best of 7): {best:.1} GFLOP/s; AVX2 {avx2:.1}, AVX-512 {avx512:.1}. \
         AVX2 flavours are given as % of the AVX2 peak, the rest as % of the best.\n"
    );
    let impls = impls();
    for threads in [1, 2] {
        init_pool();
        let cols: Vec<&Impl> = impls.iter().filter(|i| i.threads().contains(&threads)).collect();
        println!(
            "### {threads} thread(s): GFLOP/s (% of one core's peak{})\n",
            if threads > 1 { " x threads" } else { "" }
        );
        let header: Vec<String> = cols.iter().map(|i| i.name()).collect();
        println!("| layer | M x K x N | {} |", header.join(" | "));
        println!("|---|---|{}", "---:|".repeat(cols.len()));
        let mut total = vec![0.0; cols.len()];
        for (name, m, k, n) in layers() {
            let mut cells = Vec::new();
            for (ci, imp) in cols.iter().enumerate() {
                let mut d = Data::new(m, k, n);
                let flops = d.flops();
                let mut f = imp.prepare(&mut d, threads);
                let s = median_secs(&mut f, Duration::from_millis(150));
                total[ci] += s;
                let g = flops / s / 1e9;
                let peak = imp.peak(avx2, best) * threads as f64;
                cells.push(format!("{g:.1} ({:.0}%)", 100.0 * g / peak));
            }
            println!("| {name} | {m}x{k}x{n} | {} |", cells.join(" | "));
        }
        let t: Vec<String> = total.iter().map(|s| format!("**{:.2} ms**", s * 1e3)).collect();
        println!("| all 13 | sum of medians | {} |\n", t.join(" | "));
    }
}

fn criterion_groups(c: &mut Criterion) {
    if std::env::var_os("GEMM_SUMMARY_ONLY").is_some() {
        return;
    }
    let impls = impls();
    for (name, m, k, n) in layers() {
        let mut g = c.benchmark_group(name);
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_millis(700));
        g.throughput(Throughput::Elements((2 * m * k * n) as u64));
        for imp in &impls {
            for &threads in imp.threads() {
                init_pool();
                let mut d = Data::new(m, k, n);
                let mut f = imp.prepare(&mut d, threads);
                g.bench_function(BenchmarkId::new(imp.name(), format!("t{threads}")), |bch| bch.iter(&mut f));
            }
        }
        g.finish();
    }
}

criterion_group!(benches, summary, criterion_groups);
criterion_main!(benches);
