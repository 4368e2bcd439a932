//! Reduced precision (f16, bf16 storage): the converters of every backend against `half`,
//! and every algorithm of the registry at every storage type against the f64 oracle on the
//! rounded inputs, within its f32 tolerance plus one rounding of the output
//! ([`kernels::testing::precision_tolerance`]): on MobileNetV1's shapes, on shapes around
//! the register tiles, and on random shapes (proptest).

use half::{bf16, f16};
use kernels::simd::{Backend, ConvertOp, Element, Simd, SimdOp, MAX_LANES};
use kernels::testing::{check_as, Case};
use kernels::Storage;
use kernels::{registry, Activation, ConvAlgorithm, ConvSpec, Dims, Padding, Precision};
use proptest::prelude::*;

/// Widens every bit pattern of `E` and narrows a list of awkward f32s with the backend's
/// vector converters; both must give `half`'s bits (any NaN for a NaN).
struct Converters<E> {
    /// Every bit pattern of `E`.
    patterns: Vec<E>,
    values: Vec<f32>,
}

impl<E: Element> SimdOp for Converters<E> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let n = S::LANES;
        let same = |a: f32, b: f32| (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits();
        let mut wide = [0.0f32; MAX_LANES];
        for chunk in self.patterns.chunks_exact(n) {
            // SAFETY: `chunk` holds LANES elements, `wide` MAX_LANES f32s.
            unsafe { s.store(wide.as_mut_ptr(), E::load(s, chunk.as_ptr())) };
            for (w, e) in wide.iter().zip(chunk) {
                assert!(same(*w, e.to_f32()), "{} widen {:?}: {} vs {}", S::NAME, e, w, e.to_f32());
            }
        }
        let mut narrow = [E::default(); MAX_LANES];
        for chunk in self.values.chunks_exact(n) {
            // SAFETY: as above.
            unsafe { E::store(s, narrow.as_mut_ptr(), s.load(chunk.as_ptr())) };
            for (x, e) in chunk.iter().zip(&narrow) {
                assert!(same(e.to_f32(), E::from_f32(*x).to_f32()), "{} narrow {x:e}: {:?}", S::NAME, e);
            }
            // Partial stores touch exactly k elements.
            for k in 0..n {
                let mut dst = [E::from_f32(7.0); MAX_LANES];
                // SAFETY: `dst` holds MAX_LANES >= k elements.
                unsafe { E::store_partial(s, dst.as_mut_ptr(), s.load(chunk.as_ptr()), k) };
                for (i, d) in dst.iter().enumerate() {
                    let want = if i < k { E::from_f32(chunk[i]).to_f32() } else { 7.0 };
                    assert!(same(d.to_f32(), want), "{} store_partial {k}", S::NAME);
                }
            }
        }
    }
}

fn awkward_f32s() -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        1.0,
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7F80_0001), // signalling NaN with only low payload bits
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        f32::MIN_POSITIVE,
        1e-40,  // f32 subnormal
        6.0e-8, // f16 subnormal range
        65504.0,
        65520.0, // rounds to f16 infinity
        70000.0,
        1.0 + 2f32.powi(-11), // f16 tie -> even
        1.0 + 3.0 * 2f32.powi(-11),
        1.0 + 2f32.powi(-8), // bf16 tie -> even
        1.0 + 3.0 * 2f32.powi(-8),
        -3.999_999_8,
    ];
    v.extend(kernels::testing::random_values(4000, 11).iter().map(|x| x * 1000.0));
    v.extend(kernels::testing::random_values(4000, 12).iter().map(|x| x * 1e-3));
    while !v.len().is_multiple_of(MAX_LANES) {
        v.push(0.5);
    }
    v
}

#[test]
fn every_backend_converts_f16_and_bf16_as_half_does() {
    let values = awkward_f32s();
    for b in Backend::compiled_in() {
        let f16s = b.dispatch(Converters {
            patterns: (0..=u16::MAX).map(f16::from_bits).collect(),
            values: values.clone(),
        });
        let bf16s = b.dispatch(Converters {
            patterns: (0..=u16::MAX).map(bf16::from_bits).collect(),
            values: values.clone(),
        });
        if let (Err(e), _) | (_, Err(e)) = (f16s, bf16s) {
            eprintln!("SKIPPED: backend {b}: {e}");
        }
    }
}

/// The row converters the GEMM loop nest calls once per tile (`simd::Convert`): `rows`
/// strided rows of `n` values (whole vectors and tails of 1, 3, 5 and 15 values past them at
/// 16 lanes), convert as `half` does and leave the gaps between the rows untouched.
fn check_strided_rows<E: Element>(b: Backend) -> kernels::Result<()> {
    let convert = b.dispatch(ConvertOp::<E>::new())?;
    let awkward = awkward_f32s();
    for n in [1, 3, 15, 16, 17, 31, 32, 37, 64] {
        for rows in [1, 2, 7] {
            let (ls, ld) = (n + 5, n + 3);
            let src: Vec<f32> =
                (0..rows * ls).map(|i| awkward[i % awkward.len()] * (1 + i % 3) as f32).collect();
            let mut narrow = vec![E::from_f32(7.0); rows * ld];
            let mut wide = vec![-9.0f32; rows * ls];
            // SAFETY: `src` and `wide` hold `rows` rows of `n` values `ls` apart, `narrow`
            // `ld` apart; the functions came from a token of this backend.
            unsafe {
                (convert.narrow)(src.as_ptr(), ls, narrow.as_mut_ptr(), ld, rows, n);
                (convert.widen)(narrow.as_ptr(), ld, wide.as_mut_ptr(), ls, rows, n);
            }
            let same = |a: f32, b: f32| (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits();
            for r in 0..rows {
                for i in 0..ld {
                    let want = if i < n { E::from_f32(src[r * ls + i]).to_f32() } else { 7.0 };
                    assert!(
                        same(narrow[r * ld + i].to_f32(), want),
                        "{b} narrow n {n} rows {rows} at {r},{i}"
                    );
                }
                for i in 0..ls {
                    let want = if i < n { narrow[r * ld + i].to_f32() } else { -9.0 };
                    assert!(same(wide[r * ls + i], want), "{b} widen n {n} rows {rows} at {r},{i}");
                }
            }
        }
    }
    Ok(())
}

#[test]
fn every_backend_converts_strided_rows() {
    for b in Backend::compiled_in() {
        if let Err(e) = check_strided_rows::<f16>(b).and_then(|_| check_strided_rows::<bf16>(b)) {
            eprintln!("SKIPPED: backend {b}: {e}");
        }
    }
}

fn runnable() -> Vec<&'static dyn ConvAlgorithm> {
    registry::algorithms().expect("KERNELS_ISA must be valid for the tests")
}

fn check_every_algorithm_as<E: Element + Storage<Quant = ()>>(case: &Case) {
    for algo in runnable() {
        if !algo.supports(&case.spec) {
            continue;
        }
        for threads in [1, 2] {
            if let Err(msg) = check_as::<E>(algo, case, threads).expect("a valid case must run") {
                panic!("{msg}");
            }
        }
    }
}

fn check_every_precision(case: &Case) {
    check_every_algorithm_as::<f16>(case);
    check_every_algorithm_as::<bf16>(case);
}

/// MobileNetV1's layer kinds at reduced size, and shapes around the tiles: channel tails for
/// 16, 8 and 4 lanes, rows that are not multiples of 6 (the `vdpbf16ps` tile) or 16 (the AMX
/// tile), columns that are not multiples of 64 (the pair panel), odd K (the pairs). Run
/// under `KERNELS_ISA=avx512bf16` (and `KERNELS_BF16_DOT=1`) too, so that every bf16 path
/// is covered on a CPU with AMX.
#[test]
fn named_shapes_at_every_precision() {
    let d = |n, h, w, c| Dims { n, h, w, c };
    let cases = [
        (ConvSpec::dense(3, 32, 3, 2, 1), d(1, 33, 31, 3)),
        // Large enough (25,920 values in, 69,120 out) that a widened layer's conversions
        // are split over the threads.
        (ConvSpec::dense(3, 32, 3, 2, 1), d(1, 96, 90, 3)),
        (ConvSpec::depthwise(37, 3, 1, 1), d(1, 13, 11, 37)),
        (ConvSpec::depthwise(64, 3, 2, 1), d(2, 14, 14, 64)),
        (ConvSpec::depthwise(21, 5, 1, 2), d(1, 9, 10, 21)),
        (ConvSpec::depthwise(19, 3, 1, 1).with_padding(Padding::uniform(2)), d(1, 8, 9, 19)),
        // The bf16 tap pairs (`direct-avx512` on AVX512_BF16): a 1-channel tail block, rows
        // that are not multiples of the 4-pixel tile at stride 2, three whole blocks with no
        // padding at all, and widths below one tile.
        (ConvSpec::depthwise(33, 3, 2, 1), d(1, 11, 13, 33)),
        (ConvSpec::depthwise(96, 3, 1, 0), d(2, 6, 9, 96)),
        (ConvSpec::depthwise(64, 3, 1, 1), d(1, 3, 2, 64)),
        (ConvSpec::pointwise(32, 64), d(1, 12, 12, 32)),
        (ConvSpec::pointwise(37, 45), d(2, 9, 7, 37)),
        (ConvSpec::pointwise(1, 130), d(1, 5, 1, 1)),
        (ConvSpec::pointwise(129, 65), d(1, 7, 7, 129)),
        (ConvSpec::pointwise(1024, 1000), d(1, 1, 1, 1024)),
        (ConvSpec::pointwise(512, 64), d(1, 13, 1, 512)),
        // AMX: 49 rows = a 32-row block and a tail block of 17 rows copied to scratch; 96
        // columns = one full and one half 64-column panel.
        (ConvSpec::pointwise(64, 96), d(1, 7, 7, 64)),
        (ConvSpec::pointwise(256, 32), d(2, 6, 5, 256)),
        // AMX tails of 1 and 31 rows, and none (64 rows).
        (ConvSpec::pointwise(32, 64), d(1, 1, 33, 32)),
        (ConvSpec::pointwise(96, 32), d(1, 7, 9, 96)),
        (ConvSpec::pointwise(64, 64), d(1, 8, 8, 64)),
        // AMX column tails (masked stores): 50 = 32 + 18 (16 + 2 valid in the last group),
        // and the FC layer's 1000 = 31 x 32 + 8 above.
        (ConvSpec::pointwise(32, 50), d(1, 5, 7, 32)),
    ];
    for (i, (spec, dims)) in cases.into_iter().enumerate() {
        for act in [Activation::None, Activation::Relu6] {
            let case = Case::random(spec, dims, act, 100 + i as u64).unwrap();
            check_every_precision(&case);
        }
    }
}

/// Values far from 1: the relative tolerance must hold at any magnitude, and f16's range
/// (65,504) is not exceeded by these products.
#[test]
fn scaled_values_keep_the_relative_tolerance() {
    for scale in [1e-3f32, 30.0] {
        let spec = ConvSpec::pointwise(96, 70);
        let mut case = Case::random(spec, Dims { n: 1, h: 5, w: 5, c: 96 }, Activation::None, 5).unwrap();
        case.input.iter_mut().for_each(|x| *x *= scale);
        check_every_precision(&case);
    }
}

#[test]
fn precision_names_parse() {
    for p in Precision::ALL {
        assert_eq!(Precision::parse(p.name()).unwrap(), p);
    }
    assert_eq!(<f16 as Storage>::PRECISION, Precision::F16);
    assert_eq!(<bf16 as Storage>::PRECISION, Precision::Bf16);
}

fn arb_case() -> impl Strategy<Value = Case> {
    (1usize..=70, 1usize..=3, 1usize..=3, 1usize..=20, 1usize..=20, 0usize..3, any::<u64>()).prop_filter_map(
        "kernel must fit",
        |(c, mult, kind, h, w, act, seed)| {
            let spec = match kind {
                1 => ConvSpec::depthwise(c, 3, 1 + seed as usize % 2, 1),
                2 => ConvSpec::pointwise(c, c * mult + seed as usize % 7),
                _ => ConvSpec::dense(c.min(8), mult * 3, 3, 2, 1),
            };
            let dims = Dims { n: 1 + (seed >> 8) as usize % 2, h, w, c: spec.in_channels };
            let act = [Activation::None, Activation::Relu, Activation::Relu6][act];
            Case::random(spec, dims, act, seed).ok()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn random_shapes_at_every_precision(case in arb_case()) {
        check_every_precision(&case);
    }
}

/// NaN and infinities at reduced precision: wherever the oracle (naive, widened) gives a
/// NaN or an infinity, every algorithm gives the same class of value, on the shapes that
/// reach AMX, the `vdpbf16ps` pairs, the f32 panels and the depthwise kernels.
#[test]
fn nan_and_inf_give_what_naive_gives_at_every_precision() {
    fn poisoned(spec: ConvSpec, dims: Dims, seed: u64) -> Case {
        let mut case = Case::random(spec, dims, Activation::None, seed).unwrap();
        let Dims { h, w, c, .. } = dims;
        let at = |y: usize, x: usize, ch: usize| (y * w + x) * c + ch;
        case.input[at(h / 2, w / 2, c / 3)] = f32::NAN;
        case.input[at(0, 0, 0)] = f32::INFINITY;
        case.input[at(h - 1, w - 1, c - 1)] = f32::NEG_INFINITY;
        case
    }
    fn check<E: Element + Storage<Quant = ()>>(case: &Case) {
        let naive: &dyn ConvAlgorithm = &kernels::naive::Naive;
        let want = case.run_as::<E>(naive, 1).unwrap();
        for algo in runnable() {
            if !algo.supports(&case.spec) {
                continue;
            }
            for threads in [1, 2] {
                let got = case.run_as::<E>(algo, threads).unwrap();
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    let class = |x: f32| (x.is_nan(), x.is_infinite().then_some(x.is_sign_positive()));
                    assert_eq!(
                        class(*g),
                        class(*w),
                        "{} at {} {}: output {i}: got {g}, naive {w}",
                        algo.name(),
                        E::PRECISION,
                        case.spec
                    );
                }
            }
        }
    }
    let d = |n, h, w, c| Dims { n, h, w, c };
    for (i, (spec, dims)) in [
        (ConvSpec::pointwise(64, 96), d(1, 7, 7, 64)),
        (ConvSpec::pointwise(37, 45), d(1, 3, 4, 37)),
        (ConvSpec::depthwise(37, 3, 1, 1), d(1, 9, 8, 37)),
        (ConvSpec::dense(3, 16, 3, 2, 1), d(1, 9, 9, 3)),
    ]
    .into_iter()
    .enumerate()
    {
        let case = poisoned(spec, dims, 40 + i as u64);
        check::<f16>(&case);
        check::<bf16>(&case);
    }
}

/// The level `algo_name` prepares `spec` at, at bf16 (on a random layer of input `dims`), or
/// `None` (said loudly) where that algorithm is not compiled or does not run here.
fn level_at_bf16(algo_name: &str, spec: ConvSpec, dims: Dims) -> Option<kernels::Isa> {
    let Some(&algo) = registry::compiled().iter().find(|a| a.name() == algo_name) else {
        eprintln!("SKIPPED: {algo_name} is not compiled");
        return None;
    };
    if !algo.supports(&spec) {
        eprintln!("SKIPPED: {algo_name} does not run under this ceiling");
        return None;
    }
    let case = Case::random(spec, dims, Activation::Relu6, 7).unwrap();
    let layer = kernels::Layer::new(&spec, &case.weights, Some(&case.bias), Activation::Relu6);
    Some(kernels::prepare::<bf16>(algo, &layer, &()).unwrap().level())
}

/// Whether the bf16 pair paths are planned here: AVX512_BF16 under the ceiling and
/// `vdpbf16ps` planned at least at the FMA's FLOP rate (AMD; `KERNELS_BF16_DOT=1`).
fn bf16_pairs_fast() -> bool {
    kernels::isa::available(kernels::Isa::Avx512Bf16)
        && kernels::gemm::bf16_dot_vs_fma().is_some_and(|(planned, _)| planned >= 1.0)
}

/// conv0 at bf16 on `im2col-avx512` reads its receptive fields as `vdpbf16ps` pairs in place
/// (level `avx512bf16`) exactly where the pairs are fast ([`bf16_pairs_fast`]); elsewhere it
/// keeps the f32 microkernels (level `avx512`). The values are checked by the tests above.
#[test]
fn conv0_at_bf16_reads_pairs_in_place_where_they_are_fast() {
    let spec = ConvSpec::dense(3, 32, 3, 2, 1);
    let Some(level) = level_at_bf16("im2col-avx512", spec, Dims { n: 1, h: 9, w: 9, c: 3 }) else {
        return;
    };
    let fast = bf16_pairs_fast();
    let want = if fast { kernels::Isa::Avx512Bf16 } else { kernels::Isa::Avx512 };
    assert_eq!(level, want, "conv0 at bf16 (pairs planned fast: {fast})");
}

/// 3x3 depthwise layers at bf16 on `direct-avx512` run on `vdpbf16ps` tap pairs (level
/// `avx512bf16`) exactly where conv0 reads its pairs in place; other kernels keep the f32
/// body (level `avx512`). The values are checked by the tests above.
#[test]
fn depthwise_3x3_at_bf16_runs_tap_pairs_where_they_are_fast() {
    let fast = bf16_pairs_fast();
    for (spec, pairs) in [
        (ConvSpec::depthwise(40, 3, 1, 1), fast),
        (ConvSpec::depthwise(40, 3, 2, 1), fast),
        (ConvSpec::depthwise(40, 5, 1, 2), false),
    ] {
        let Some(level) = level_at_bf16("direct-avx512", spec, Dims { n: 1, h: 9, w: 9, c: 40 }) else {
            return;
        };
        let want = if pairs { kernels::Isa::Avx512Bf16 } else { kernels::Isa::Avx512 };
        assert_eq!(level, want, "{spec} at bf16 (pairs planned fast: {fast})");
    }
}
