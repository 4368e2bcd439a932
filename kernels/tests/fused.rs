//! Fused depthwise -> pointwise blocks (`kernels::fused`) against the same two layers run
//! one after the other: around band edges (band heights that do and do not divide the
//! rows, one row, more rows than the output), strides 1 and 2, bands that span two
//! images, channel counts off the vector width, and 1-3 threads; plus the errors.
//!
//! Tolerance: the depthwise rows are computed by the same kernel either way, so only the
//! pointwise GEMM can differ (its tile depends on the number of rows it gets). The error of
//! each output relative to `|bias| + sum |w| |mid|` must stay within the pointwise
//! algorithm's own tolerance against naive (`ConvAlgorithm::tolerance`).

use kernels::fused::FusedBlock;
use kernels::simd::Element;
use kernels::testing::random_values;
use kernels::{registry, Activation, ConvAlgorithm, ConvSpec, Dims, KernelError, Par, ThreadPool};
use kernels::{Layer, Storage};
use proptest::prelude::*;

/// The fusable depthwise kernels and the pointwise kernels runnable here.
fn pairs() -> Vec<(&'static dyn ConvAlgorithm, &'static dyn ConvAlgorithm)> {
    let algos = registry::algorithms().unwrap();
    let dws: Vec<_> = algos.iter().copied().filter(|a| a.family() == kernels::Family::Direct).collect();
    let pws: Vec<_> = algos.iter().copied().filter(|a| a.family() == kernels::Family::Gemm).collect();
    assert!(!dws.is_empty() && !pws.is_empty(), "no direct or gemm algorithm compiled");
    // Every dw with the best pw, and the best dw with every pw: each kernel at least once.
    let mut v: Vec<_> = dws.iter().map(|&d| (d, pws[0])).collect();
    v.extend(pws.iter().skip(1).map(|&p| (dws[0], p)));
    v
}

struct Shape {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    cout: usize,
    stride: usize,
}

fn check_as<E: Element + Storage<Quant = ()>>(
    dw_algo: &dyn ConvAlgorithm,
    pw_algo: &dyn ConvAlgorithm,
    s: &Shape,
    band_rows: usize,
    threads: usize,
    pool: &ThreadPool,
) {
    let dw_spec = ConvSpec::depthwise(s.c, 3, s.stride, 1);
    let pw_spec = ConvSpec::pointwise(s.c, s.cout);
    let in_dims = Dims::new(s.n, s.h, s.w, s.c);
    let mid_dims = dw_spec.output_dims(in_dims).unwrap();
    let out_dims = pw_spec.output_dims(mid_dims).unwrap();
    let seed = (s.h * 31 + s.w * 7 + s.c) as u64;
    let (wd, bd) = (random_values(dw_spec.weights_len().unwrap(), seed), random_values(s.c, seed + 1));
    let (wp, bp) = (random_values(pw_spec.weights_len().unwrap(), seed + 2), random_values(s.cout, seed + 3));
    let dw = kernels::prepare::<E>(dw_algo, &Layer::new(&dw_spec, &wd, Some(&bd), Activation::Relu6), &())
        .unwrap();
    let pw = kernels::prepare::<E>(pw_algo, &Layer::new(&pw_spec, &wp, Some(&bp), Activation::Relu6), &())
        .unwrap();
    let input: Vec<E> =
        random_values(in_dims.len().unwrap(), seed + 4).into_iter().map(E::from_f32).collect();

    // Unfused: the two layers one after the other.
    let mut mid = vec![E::from_f32(0.0); mid_dims.len().unwrap()];
    let mut want = vec![E::from_f32(0.0); out_dims.len().unwrap()];
    let mut scratch = vec![0.0f32; pw.scratch_len(mid_dims).unwrap().max(dw.scratch_len(in_dims).unwrap())];
    dw.run(&input, in_dims, &mut mid, &mut scratch, Par::SERIAL).unwrap();
    pw.run(&mid, mid_dims, &mut want, &mut scratch, Par::SERIAL).unwrap();

    let block = FusedBlock::new(&*dw, &*pw, band_rows).unwrap();
    let mut got = vec![E::from_f32(f32::NAN); out_dims.len().unwrap()];
    let mut scratch = vec![f32::NAN; block.scratch_len(in_dims, threads).unwrap()];
    block.run(&input, in_dims, &mut got, &mut scratch, Par::on(pool, threads)).unwrap();

    let tol = pw_algo.tolerance().max(E::PRECISION.unit_roundoff() * 2.0);
    for px in 0..mid_dims.n * mid_dims.h * mid_dims.w {
        let m = &mid[px * s.c..(px + 1) * s.c];
        for o in 0..s.cout {
            let scale: f64 = bp[o].abs() as f64
                + m.iter().enumerate().map(|(k, x)| (wp[o * s.c + k] * x.to_f32()).abs() as f64).sum::<f64>();
            let (g, w) = (got[px * s.cout + o].to_f32(), want[px * s.cout + o].to_f32());
            let err = (g as f64 - w as f64).abs() / (scale + 1e-30);
            assert!(
                err <= tol,
                "{}+{} at {:?}: n{} h{} w{} c{} cout{} s{} band {band_rows} threads {threads}: pixel {px} \
                 channel {o}: fused {g} unfused {w} (error {err:.2e} > {tol:.2e})",
                dw_algo.name(),
                pw_algo.name(),
                E::PRECISION,
                s.n,
                s.h,
                s.w,
                s.c,
                s.cout,
                s.stride
            );
        }
    }
}

fn check(dw: &dyn ConvAlgorithm, pw: &dyn ConvAlgorithm, s: &Shape, band_rows: usize, threads: usize) {
    let pool = ThreadPool::new(3).unwrap();
    check_as::<f32>(dw, pw, s, band_rows, threads, &pool);
}

#[test]
fn band_edges_strides_and_threads() {
    for (dw, pw) in pairs() {
        for stride in [1, 2] {
            // 9 rows in (5 out at stride 2): bands of 1, 2 (uneven), 4, 9 (one band) and 50.
            let s = Shape { n: 1, h: 9, w: 11, c: 19, cout: 21, stride };
            for band in [1, 2, 4, 9, 50] {
                for threads in [1, 2, 3] {
                    check(dw, pw, &s, band, threads);
                }
            }
        }
    }
}

#[test]
fn bands_span_images_in_a_batch() {
    for (dw, pw) in pairs() {
        // 3 images of 5 rows: 4-row bands start mid-image.
        let s = Shape { n: 3, h: 5, w: 6, c: 16, cout: 40, stride: 1 };
        for threads in [1, 2] {
            check(dw, pw, &s, 4, threads);
        }
    }
}

#[test]
fn mobilenet_block_shapes() {
    let (dw, pw) = pairs()[0];
    // dw2+pw2 of MobileNetV1 0.25-64 and a 112-wide first block cut to 6 rows.
    check(dw, pw, &Shape { n: 1, h: 32, w: 32, c: 16, cout: 32, stride: 2 }, 4, 2);
    check(dw, pw, &Shape { n: 1, h: 6, w: 112, c: 32, cout: 64, stride: 1 }, 2, 2);
}

#[test]
fn reduced_precision_blocks() {
    let pool = ThreadPool::new(2).unwrap();
    for (dw, pw) in pairs() {
        let s = Shape { n: 2, h: 7, w: 9, c: 24, cout: 33, stride: 1 };
        check_as::<half::f16>(dw, pw, &s, 3, 2, &pool);
        check_as::<half::bf16>(dw, pw, &s, 3, 2, &pool);
    }
}

#[test]
fn bad_blocks_are_errors() {
    let algos = registry::algorithms().unwrap();
    let find = |family: &str| algos.iter().copied().find(|a| a.family().name() == family).unwrap();
    let (direct, gemm) = (find("direct"), find("gemm"));
    let dw_spec = ConvSpec::depthwise(8, 3, 1, 1);
    let dw = direct.prepare(&dw_spec, &random_values(72, 1), None, Activation::None).unwrap();
    let pw = gemm.prepare(&ConvSpec::pointwise(8, 4), &random_values(32, 2), None, Activation::None).unwrap();
    let wrong_c =
        gemm.prepare(&ConvSpec::pointwise(6, 4), &random_values(24, 3), None, Activation::None).unwrap();
    let naive = find("naive").prepare(&dw_spec, &random_values(72, 1), None, Activation::None).unwrap();
    assert!(matches!(FusedBlock::new(&*dw, &*pw, 0), Err(KernelError::ZeroSize { .. })));
    assert!(matches!(FusedBlock::new(&*naive, &*pw, 2), Err(KernelError::Unsupported { .. })));
    assert!(matches!(FusedBlock::new(&*dw, &*wrong_c, 2), Err(KernelError::ShapeMismatch { .. })));
    assert!(matches!(FusedBlock::new(&*dw, &*dw, 2), Err(KernelError::ShapeMismatch { .. })));

    let block = FusedBlock::new(&*dw, &*pw, 2).unwrap();
    let d = Dims::new(1, 5, 5, 8);
    let need = block.scratch_len(d, 1).unwrap();
    let (input, mut out, mut scratch) = (vec![0.0; 200], vec![0.0; 100], vec![0.0; need]);
    assert!(block.run(&input[..199], d, &mut out, &mut scratch, Par::SERIAL).is_err());
    assert!(block.run(&input, d, &mut out[..99], &mut scratch, Par::SERIAL).is_err());
    assert!(block.run(&input, d, &mut out, &mut scratch[..need - 1], Par::SERIAL).is_err());
    assert!(block.run(&input, Dims { c: 7, ..d }, &mut out, &mut scratch, Par::SERIAL).is_err());
    block.run(&input, d, &mut out, &mut scratch, Par::SERIAL).unwrap();
    // A band kernel asked for rows past the end, or a partial row, says so.
    let mut band = vec![0.0; 80];
    assert!(dw.run_rows(&input, d, 4, &mut band).is_err());
    assert!(dw.run_rows(&input, d, 0, &mut band[..39]).is_err());
    dw.run_rows(&input, d, 3, &mut band).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn fused_matches_unfused(
        n in 1usize..3, h in 1usize..14, w in 1usize..14, c in 1usize..40, cout in 1usize..40,
        stride in 1usize..3, band in 1usize..9, threads in 1usize..4, pair in 0usize..64,
    ) {
        let p = pairs();
        let (dw, pw) = p[pair % p.len()];
        check(dw, pw, &Shape { n, h, w, c, cout, stride }, band, threads);
    }
}
