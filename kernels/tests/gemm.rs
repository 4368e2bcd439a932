//! The packed SGEMM against a plain f64 triple loop around every microkernel's tile, and the
//! `gemm-*` / `im2col-*` algorithms against the naive oracle, every flavour in turn.

use kernels::gemm::{self, Operands, PackedB, Tile};
use kernels::testing::{check, random_values, Case};
use kernels::Backend;
use kernels::{registry, Activation, ConvAlgorithm, ConvSpec, Dims, Padding, Par};
use proptest::prelude::*;

/// Backends runnable here; the others are reported loudly.
fn backends() -> Vec<Backend> {
    Backend::compiled_in()
        .filter(|b| {
            let ok = b.available();
            if !ok {
                eprintln!("SKIPPED: backend {b} cannot run on this CPU / under KERNELS_ISA");
            }
            ok
        })
        .collect()
}

/// Every (backend, tile) runnable here.
fn tiles() -> Vec<(Backend, &'static Tile)> {
    backends().into_iter().flat_map(|b| gemm::tiles(b).unwrap().iter().map(move |t| (b, t))).collect()
}

fn algos(family: &str) -> Vec<&'static dyn ConvAlgorithm> {
    let runnable = registry::algorithms().expect("KERNELS_ISA must be valid");
    for a in registry::compiled().iter().filter(|a| a.family().name() == family) {
        if !runnable.iter().any(|b| b.name() == a.name()) {
            eprintln!("SKIPPED: {} cannot run on this CPU / under KERNELS_ISA", a.name());
        }
    }
    runnable.into_iter().filter(|a| a.family().name() == family).collect()
}

/// Runs `tile` on a random `m x n x k` product with strides `lda >= k`, `ldc >= n` and
/// checks every output (and that C's padding columns are untouched).
#[allow(clippy::too_many_arguments)] // the reference GEMM takes every operand as a BLAS call would
fn check_tile(
    tile: &Tile,
    m: usize,
    n: usize,
    k: usize,
    pad: usize,
    act: Activation,
    threads: usize,
    seed: u64,
) {
    let (lda, ldc) = (k + pad, n + pad);
    let a = random_values(m * lda, seed);
    let bm = random_values(k * n, seed ^ 7);
    let bias = random_values(n, seed ^ 9);
    let packed = PackedB::new(k, n, tile.nr, |p, j| bm[p * n + j]).unwrap();
    let sentinel = 1234.5;
    let mut c = vec![sentinel; m * ldc];
    let ops = Operands { a: &a, lda, b: &packed, bias: &bias, activation: act, ldc };
    // SAFETY: `tiles()` only yields tiles of backends that run on this CPU.
    unsafe { gemm::sgemm_tile(tile, m, &ops, &mut c, Par::global(threads)) }.unwrap();
    for i in 0..m {
        for j in 0..ldc {
            let got = c[i * ldc + j];
            if j >= n {
                assert_eq!(got, sentinel, "{} wrote C padding at ({i},{j})", tile.name());
                continue;
            }
            let (mut want, mut scale) = (bias[j] as f64, bias[j].abs() as f64);
            for p in 0..k {
                let x = a[i * lda + p] as f64 * bm[p * n + j] as f64;
                want += x;
                scale += x.abs();
            }
            let want = act.apply(want as f32) as f64;
            let err = (got as f64 - want).abs() / (scale + 1e-30);
            assert!(
                err <= 1e-5,
                "{} m={m} n={n} k={k} pad={pad} {act:?} threads={threads}: C[{i}][{j}] = {got}, want {want} (rel err {err:.2e})",
                tile.name()
            );
        }
    }
}

const ACTS: [Activation; 4] =
    [Activation::None, Activation::Relu, Activation::Relu6, Activation::Clamp { min: -0.5, max: 0.25 }];

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    /// m, n, k in 0..3 tiles (k crossing the KC = 256 block boundary too), any strides.
    #[test]
    fn every_tile_agrees_with_the_triple_loop(
        mt in 0.0f64..3.0, nt in 0.0f64..3.0, k in prop_oneof![1usize..40, 250usize..520],
        pad in 0usize..3, act in 0usize..4, threads in 1usize..=3, seed in any::<u64>(),
    ) {
        for (_, tile) in tiles() {
            let m = (mt * tile.mr as f64) as usize;
            let n = ((nt * tile.nr as f64) as usize).max(1);
            check_tile(tile, m, n, k, pad, ACTS[act], threads, seed);
        }
    }
}

#[test]
fn tile_edges_primes_and_k1() {
    for (_, tile) in tiles() {
        let (mr, nr) = (tile.mr, tile.nr);
        for (m, n, k) in [
            (mr, nr, 1),
            (mr - 1, nr - 1, 1),
            (mr + 1, nr + 1, 7),
            (2 * mr, 2 * nr, 13),
            (3 * mr, 3 * nr, 31),
            (17, 257, 3),
            (1, 1, 1),
            (0, 5, 5),
            (49, 37, 257),
            (13, 2 * nr + 3, 769),
        ] {
            for threads in [1, 2] {
                check_tile(tile, m, n, k, 1, Activation::Relu6, threads, (m * 31 + n * 7 + k) as u64);
            }
        }
    }
}

#[test]
fn nan_and_bad_lengths() {
    for f in backends() {
        let packed = PackedB::new(4, 3, gemm::nr_for(gemm::tiles(f).unwrap(), 4, 3), |_, _| 1.0).unwrap();
        let mut a = vec![1.0; 8];
        a[0] = f32::NAN;
        let mut c = vec![0.0; 6];
        let ops = |a, lda, bias, activation| Operands { a, lda, b: &packed, bias, activation, ldc: 3 };
        gemm::sgemm(f, 2, &ops(&a, 4, &[0.0; 3], Activation::Relu6), &mut c, Par::SERIAL).unwrap();
        assert_eq!(&c, &[0.0, 0.0, 0.0, 4.0, 4.0, 4.0], "{f}: ReLU6 maps NaN to 0");
        gemm::sgemm(f, 2, &ops(&a, 4, &[0.0; 3], Activation::None), &mut c, Par::SERIAL).unwrap();
        assert!(c[0].is_nan(), "{f}: no activation passes NaN through");
        assert!(
            gemm::sgemm(f, 2, &ops(&a[..7], 4, &[0.0; 3], Activation::None), &mut c, Par::SERIAL).is_err()
        );
        assert!(
            gemm::sgemm(f, 2, &ops(&a, 4, &[0.0; 3], Activation::None), &mut c[..5], Par::SERIAL).is_err()
        );
        assert!(gemm::sgemm(f, 2, &ops(&a, 4, &[0.0; 2], Activation::None), &mut c, Par::SERIAL).is_err());
        assert!(gemm::sgemm(f, 2, &ops(&a, 3, &[0.0; 3], Activation::None), &mut c, Par::SERIAL).is_err());
    }
}

#[test]
fn tile_choice_fits_the_7x7_layers() {
    if let Ok(tiles) = gemm::tiles(Backend::Avx512) {
        assert_eq!(gemm::choose_tile(tiles, 49, 32).unwrap().mr, 7);
        assert_eq!(gemm::choose_tile(tiles, 3136, 32).unwrap().mr, 14);
        assert_eq!(gemm::nr_for(tiles, 32, 64), 64);
        assert_eq!(gemm::nr_for(tiles, 512, 512), 32);
        assert_eq!(gemm::nr_for(tiles, 32, 1000), 32);
    }
}

/// A fully connected layer at small batch takes the tile with the fewest rows `>= m` (one
/// pass over B), in every flavour; larger `m` never takes a tile that pads a whole pass.
#[test]
fn tile_choice_for_small_m_streams_b_once() {
    for f in backends() {
        let tiles = gemm::tiles(f).unwrap();
        let nr = gemm::nr_for(tiles, 1024, 1000);
        let max_mr = tiles.iter().filter(|t| t.nr == nr).map(|t| t.mr).max().unwrap();
        assert_eq!(gemm::choose_tile(tiles, 1, nr).unwrap().mr, 1, "{f}: a 1-row tile for M = 1");
        for m in 1..=max_mr {
            let t = gemm::choose_tile(tiles, m, nr).unwrap();
            assert!(t.mr >= m, "{f}: M = {m} took {}", t.name());
            assert!(
                tiles.iter().filter(|u| u.nr == nr && u.mr >= m).all(|u| u.mr >= t.mr),
                "{f}: M = {m} took {}, a smaller tile covers it",
                t.name()
            );
        }
    }
}

fn check_algo(algo: &dyn ConvAlgorithm, case: &Case) {
    assert!(algo.supports(&case.spec), "{} must support {}", algo.name(), case.spec);
    for threads in [1, 2] {
        if let Err(msg) = check(algo, case, threads).expect("a valid case must run") {
            panic!("{msg}");
        }
    }
}

/// MobileNetV1's pointwise layers (and the FC layer) at 1/4 of their spatial size, and the
/// last two at full size.
#[test]
fn gemm_on_mobilenet_pointwise_shapes() {
    let layers = [
        (28, 32, 64),
        (14, 64, 128),
        (14, 128, 128),
        (7, 128, 256),
        (7, 256, 256),
        (4, 256, 512),
        (4, 512, 512),
        (2, 512, 1024),
        (2, 1024, 1024),
        (1, 1024, 1000),
        // pw12 and pw13 at full size: 49 rows, B of 2 and 4 MiB (at f32 more than half of
        // most L2s: the 2-thread split cuts the columns first, `Order::ColumnsFirst`).
        (7, 512, 1024),
        (7, 1024, 1024),
    ];
    for algo in algos("gemm") {
        for (i, &(hw, cin, cout)) in layers.iter().enumerate() {
            let case = Case::random(
                ConvSpec::pointwise(cin, cout),
                Dims::new(1, hw, hw, cin),
                Activation::Relu6,
                i as u64,
            )
            .unwrap();
            check_algo(algo, &case);
        }
        assert!(!algo.supports(&ConvSpec::dense(8, 8, 3, 1, 1)));
        assert!(!algo.supports(&ConvSpec::depthwise(8, 3, 1, 1)));
    }
}

#[test]
fn im2col_on_dense_and_grouped_specs() {
    let pad = Padding { top: 0, left: 2, bottom: 1, right: 0 };
    let cases = [
        // conv0 of MobileNetV1 at 1/4 resolution: 3 -> 32, 3x3 s2 p1.
        (ConvSpec::dense(3, 32, 3, 2, 1), Dims::new(1, 56, 56, 3)),
        (ConvSpec::dense(3, 32, 3, 2, 1), Dims::new(2, 17, 9, 3)),
        (ConvSpec::dense(5, 7, 3, 1, 0), Dims::new(1, 9, 11, 5)),
        (ConvSpec::dense(4, 33, 5, 3, 2), Dims::new(1, 13, 14, 4)),
        (ConvSpec::dense(6, 17, 3, 1, 1).with_dilation(2), Dims::new(1, 10, 8, 6)),
        (ConvSpec::dense(8, 16, 3, 2, 0).with_padding(pad), Dims::new(1, 9, 9, 8)),
        (ConvSpec::dense(12, 18, 3, 1, 1).with_groups(3), Dims::new(1, 8, 8, 12)),
        (ConvSpec::dense(3, 6, 11, 4, 0).with_groups(3), Dims::new(1, 35, 35, 3)),
        (ConvSpec::dense(16, 32, 1, 1, 0).with_groups(4), Dims::new(1, 6, 6, 16)),
        (ConvSpec::dense(16, 32, 1, 2, 1), Dims::new(1, 6, 7, 16)),
        (ConvSpec::depthwise(24, 3, 2, 1), Dims::new(1, 9, 9, 24)),
        (ConvSpec::pointwise(40, 70), Dims::new(1, 5, 5, 40)),
    ];
    for algo in algos("im2col") {
        for (i, &(spec, dims)) in cases.iter().enumerate() {
            let act = ACTS[i % 4];
            check_algo(algo, &Case::random(spec, dims, act, i as u64).unwrap());
        }
    }
}

#[test]
fn im2col_scratch_too_small_is_an_error() {
    // Grouped: the column matrix is materialised (the fused path needs one group).
    let spec = ConvSpec::dense(4, 8, 3, 2, 1).with_groups(2);
    let dims = Dims::new(1, 8, 8, 4);
    for algo in algos("im2col") {
        let p = algo.prepare(&spec, &vec![0.0; spec.weights_len().unwrap()], None, Activation::None).unwrap();
        let need = p.scratch_len(dims).unwrap();
        assert_eq!(need, 4 * 4 * 18);
        let mut out = vec![0.0; 4 * 4 * 8];
        let mut scratch = vec![0.0; need - 1];
        assert!(p.run(&[0.0; 256], dims, &mut out, &mut scratch, Par::SERIAL).is_err(), "{}", algo.name());
    }
}

/// Dense with small K reads the input in place (the fused path): no scratch.
#[test]
fn im2col_fused_needs_no_scratch() {
    let spec = ConvSpec::dense(3, 32, 3, 2, 1);
    for algo in algos("im2col") {
        let p = algo.prepare(&spec, &vec![0.0; spec.weights_len().unwrap()], None, Activation::None).unwrap();
        assert_eq!(p.scratch_len(Dims::new(1, 224, 224, 3)).unwrap(), 0, "{}", algo.name());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    /// The fused im2col path (one group, K <= 256): output widths around every tile's MR
    /// (below, equal, multiples, above, primes, 1), channels around NR, any padding per side
    /// (edge tiles gathered, kernel rows above/below the image skipped), strides, vertical
    /// dilation, batches.
    #[test]
    fn im2col_fused_agrees_with_naive(
        cin in 1usize..=6, cout in prop_oneof![1usize..=4, 15usize..=18, 31usize..=34, 63usize..=66],
        kh in 1usize..=5, kw in 1usize..=5, stride in 1usize..=3, dil_h in 1usize..=2,
        pads in (0usize..5, 0usize..5, 0usize..5, 0usize..5),
        ow in prop_oneof![1usize..=8, 12usize..=16, 27usize..=30, Just(43usize)],
        h in 1usize..=7, n in 1usize..=2, act in 0usize..4, seed in any::<u64>(),
    ) {
        let padding = Padding {
            top: pads.0 % kh, left: pads.1 % kw, bottom: pads.2 % kh, right: pads.3 % kw,
        };
        let mut spec = ConvSpec::dense(cin, cout, 1, stride, 0).with_padding(padding);
        spec.kernel_h = kh;
        spec.kernel_w = kw;
        spec.dilation_h = dil_h;
        // Input width giving `ow` output columns (at least the kernel's width).
        let w = ((ow - 1) * stride + kw).saturating_sub(padding.left + padding.right).max(1);
        let hh = (h + (kh - 1) * dil_h).saturating_sub(padding.top + padding.bottom).max(1);
        let dims = Dims::new(n, hh, w, cin);
        prop_assume!(spec.output_dims(dims).is_ok());
        for algo in algos("im2col") {
            check_algo(algo, &Case::random(spec, dims, ACTS[act], seed).unwrap());
        }
    }
}
