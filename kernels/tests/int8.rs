//! int8 kernels against the scalar reference, bit for bit: i32 accumulation is exact and the
//! f32 requantization is the same operations in every kernel (`kernels::int8`). Shapes sweep
//! around the tiles (GEMM: 6 rows x 64 channels on AVX-512, 6 x 16 on AVX2, K in groups of 4
//! or pairs; depthwise: 16 or 8 channels per vector, 64 per block of the AVX512_VNNI 3x3 quads), zero points 0, 128 and 255, the
//! saturation worst case (all-255 activations times all-127 weights) and K up to 9 x 1024.

use kernels::int8::{reference, weight_scales, QuantLayer, QuantParams, QuantizedLayer};
use kernels::{
    registry, Activation, ConvAlgorithm, ConvSpec, Dims, Family, KernelError, Layer, Padding, Par, Storage,
};
use proptest::prelude::*;

/// Every runnable algorithm with a native int8 path for `spec`'s kind.
fn natives(family: Family) -> Vec<&'static dyn ConvAlgorithm> {
    let all: Vec<_> = registry::algorithms().unwrap().into_iter().filter(|a| a.family() == family).collect();
    for a in registry::compiled().iter().filter(|a| a.family() == family) {
        if !a.backend().available() {
            eprintln!("SKIPPED: {} (its backend cannot run on this CPU / ceiling)", a.name());
        }
    }
    all
}

fn values(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            lo + (hi - lo) * ((s >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

struct Case {
    spec: ConvSpec,
    dims: Dims,
    weights: Vec<f32>,
    bias: Vec<f32>,
    input: Vec<u8>,
    quant: QuantLayer,
    activation: Activation,
}

impl Case {
    fn new(spec: ConvSpec, dims: Dims, zx: i32, seed: u64, activation: Activation) -> Case {
        let weights = values(spec.weights_len().unwrap(), seed, -1.0, 1.0);
        let bias = values(spec.out_channels, seed + 1, -0.5, 0.5);
        let input =
            values(dims.len().unwrap(), seed + 2, 0.0, 256.0).iter().map(|&x| x.min(255.0) as u8).collect();
        let quant = QuantLayer {
            input: QuantParams::new(0.02, zx).unwrap(),
            output: QuantParams::new(0.05, 3).unwrap(),
            weight_scales: weight_scales(spec.out_channels, &weights),
        };
        Case { spec, dims, weights, bias, input, quant, activation }
    }

    fn layer(&self) -> Layer<'_> {
        Layer::new(&self.spec, &self.weights, Some(&self.bias), self.activation)
    }

    fn want(&self) -> Vec<u8> {
        let q = QuantizedLayer::new(&self.layer(), &self.quant).unwrap();
        let mut out = vec![0u8; self.spec.output_dims(self.dims).unwrap().len().unwrap()];
        reference::conv(&q, &self.input, self.dims, &mut out).unwrap();
        out
    }

    fn got(&self, algo: &dyn ConvAlgorithm, threads: usize) -> Vec<u8> {
        let p = kernels::prepare::<u8>(algo, &self.layer(), &self.quant).unwrap();
        let mut out = vec![0xA5u8; self.spec.output_dims(self.dims).unwrap().len().unwrap()];
        let mut scratch = vec![0.0f32; p.scratch_len(self.dims).unwrap()];
        p.run(&self.input, self.dims, &mut out, &mut scratch, Par::global(threads)).unwrap();
        out
    }

    /// Every native algorithm of `family` equals the reference bit for bit.
    fn check(&self, family: Family, threads: usize) -> Result<(), TestCaseError> {
        let want = self.want();
        for algo in natives(family) {
            let got = self.got(algo, threads);
            if let Some(i) = (0..want.len()).find(|&i| got[i] != want[i]) {
                return Err(TestCaseError::fail(format!(
                    "{} on {} input {} zx {}: output {i} is {} want {} ({} of {} differ)",
                    algo.name(),
                    self.spec,
                    self.dims,
                    self.quant.input.zero_point,
                    got[i],
                    want[i],
                    (0..want.len()).filter(|&j| got[j] != want[j]).count(),
                    want.len()
                )));
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn gemm_is_bit_exact_around_its_tiles(
        m in 1usize..20, k in 1usize..70, n in 1usize..140,
        zx in prop_oneof![Just(0), Just(128), Just(255), 0i32..256],
        relu6 in any::<bool>(), threads in 1usize..3, seed in 0u64..1000,
    ) {
        let act = if relu6 { Activation::Relu6 } else { Activation::None };
        let case = Case::new(ConvSpec::pointwise(k, n), Dims::new(1, 1, m, k), zx, seed, act);
        case.check(Family::Gemm, threads)?;
    }

    #[test]
    fn depthwise_is_bit_exact_around_its_vectors(
        h in 1usize..9, w in 1usize..11, c in prop_oneof![1usize..40, 60usize..140], stride in 1usize..3, kernel in prop_oneof![Just(3usize), Just(5), Just(1)],
        zx in prop_oneof![Just(0), Just(128), Just(255), 0i32..256],
        threads in 1usize..3, seed in 0u64..1000,
    ) {
        prop_assume!(h + 2 * (kernel / 2) >= kernel && w + 2 * (kernel / 2) >= kernel);
        let spec = ConvSpec::depthwise(c, kernel, stride, kernel / 2);
        let case = Case::new(spec, Dims::new(1, h, w, c), zx, seed, Activation::Relu6);
        case.check(Family::Direct, threads)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Dense convolutions (conv0's family): the u8 column buffer pads with the zero point.
    #[test]
    fn im2col_is_bit_exact(
        cin in 1usize..6, cout in 1usize..40, kernel in 1usize..4, stride in 1usize..3, pad in 0usize..2,
        h in 3usize..10, w in 3usize..30, zx in prop_oneof![Just(0), Just(128), Just(255), 0i32..256],
        seed in 0u64..1000,
    ) {
        prop_assume!(pad < kernel);
        let spec = ConvSpec::dense(cin, cout, kernel, stride, pad);
        let case = Case::new(spec, Dims::new(1, h, w, cin), zx, seed, Activation::Relu6);
        case.check(Family::Im2col, 2)?;
    }
}

/// CI's failure under qemu-aarch64 (im2col-neon, output 313 was 28, want 29): a 1x1 layer on
/// `im2col` ran the emulated f32 path, within one LSB but not exact. It is the int8 GEMM now.
#[test]
fn regression_im2col_pointwise_is_the_exact_gemm() {
    let spec = ConvSpec::dense(5, 2, 1, 1, 0);
    Case::new(spec, Dims::new(1, 7, 23, 5), 128, 263, Activation::Relu6).check(Family::Im2col, 2).unwrap();
}

/// The in-place dense path (AVX-512 VNNI, at most 32 output channels): rows whose interior
/// is 0..=19 pixels (8-pixel tiles, single-pixel tails, edge pixels on both sides), batches
/// of 2 (the last image's last pixel may not over-read the input), channel counts around
/// the 16-lane halves, kernel rows of 1..=15 bytes (1..=4 dwords), and no padding at all.
#[test]
fn dense_in_place_edges_are_bit_exact() {
    let mut seed = 40;
    for (cin, cout, kernel, stride, pad) in [
        (3, 32, 3, 2, 1),
        (3, 8, 3, 1, 1),
        (1, 16, 3, 2, 0),
        (4, 24, 3, 1, 0),
        (3, 31, 5, 2, 2),
        (2, 33, 3, 1, 1),
    ] {
        for w in [3, 5, 9, 12, 17, 20, 23, 40] {
            seed += 1;
            let spec = ConvSpec::dense(cin, cout, kernel, stride, pad);
            if w + 2 * pad < kernel {
                continue;
            }
            let zx = [0, 128, 255, 77][seed as usize % 4];
            Case::new(spec, Dims::new(2, 7, w, cin), zx, seed, Activation::Relu6)
                .check(Family::Im2col, 2)
                .unwrap_or_else(|e| panic!("{cin}->{cout} k{kernel} s{stride} p{pad} w{w}: {e:?}"));
        }
    }
}

#[test]
fn mobilenet_shapes_are_bit_exact() {
    Case::new(ConvSpec::dense(3, 32, 3, 2, 1), Dims::new(1, 32, 30, 3), 114, 5, Activation::Relu6)
        .check(Family::Im2col, 2)
        .unwrap();
    for (spec, dims) in [
        (ConvSpec::pointwise(32, 64), Dims::new(1, 7, 9, 32)),
        (ConvSpec::pointwise(512, 512), Dims::new(1, 14, 14, 512)),
        (ConvSpec::pointwise(1024, 1024), Dims::new(1, 7, 7, 1024)),
        (ConvSpec::pointwise(1024, 1000), Dims::new(2, 1, 1, 1024)),
    ] {
        Case::new(spec, dims, 0, 7, Activation::Relu6).check(Family::Gemm, 2).unwrap();
    }
    for (spec, dims) in [
        (ConvSpec::depthwise(32, 3, 1, 1), Dims::new(1, 16, 16, 32)),
        (ConvSpec::depthwise(64, 3, 2, 1), Dims::new(2, 16, 15, 64)),
        (ConvSpec::depthwise(512, 3, 1, 1), Dims::new(1, 14, 14, 512)),
        (ConvSpec::depthwise(1024, 3, 1, 1), Dims::new(1, 7, 7, 1024)),
    ] {
        Case::new(spec, dims, 128, 9, Activation::Relu6).check(Family::Direct, 2).unwrap();
    }
}

/// The 3x3 quad kernel's edges (AVX512_VNNI; elsewhere the same shapes on the other paths):
/// no padding, uniform padding and TensorFlow's SAME at stride 2 (bottom and right only),
/// images narrower than the kernel's reach, channels around its 64-channel blocks and the
/// blocks of 8, 4 or 2 pixels (8, 16, 32 channels at stride 1), the
/// extreme zero points (a tap outside the image reads the zero point), and the saturation
/// worst case (all 255 times +-127, zero point 0).
#[test]
fn quad_edges_are_bit_exact() {
    let same = Padding { top: 0, left: 0, bottom: 1, right: 1 };
    for (stride, padding) in
        [(1, Padding::uniform(1)), (2, Padding::uniform(1)), (1, Padding::uniform(0)), (2, same)]
    {
        for (h, w) in [(1, 1), (2, 3), (3, 2), (4, 7), (5, 5)] {
            for c in [1, 8, 16, 32, 63, 64, 65, 130] {
                let spec = ConvSpec { padding, ..ConvSpec::depthwise(c, 3, stride, 0) };
                if spec.output_dims(Dims::new(1, h, w, c)).is_err() {
                    continue;
                }
                for zx in [0, 255] {
                    let case =
                        Case::new(spec, Dims::new(2, h, w, c), zx, (h * w + c) as u64, Activation::Relu6);
                    case.check(Family::Direct, 2).unwrap();
                }
            }
        }
    }
    for sign in [1.0, -1.0] {
        let spec = ConvSpec::depthwise(80, 3, 1, 1);
        let mut case = Case::new(spec, Dims::new(1, 4, 5, 80), 0, 3, Activation::None);
        case.weights.iter_mut().for_each(|w| *w = sign);
        case.input.iter_mut().for_each(|x| *x = 255);
        case.quant.weight_scales = weight_scales(80, &case.weights);
        case.check(Family::Direct, 1).unwrap();
    }
}

/// Shapes around the AMX-INT8 tiles (K in steps of 64, N of 32, rows in blocks of 32, the
/// last 1..=31 rows from a copy in scratch), where the CPU has them; elsewhere the same
/// shapes on the other paths.
#[test]
fn amx_shapes_are_bit_exact() {
    if !kernels::isa::amx_int8() {
        eprintln!("SKIPPED: AMX-INT8 tiles (not on this CPU or under this KERNELS_ISA): the shapes run on the other paths");
    }
    for (m, k, n) in [
        (16, 64, 32),
        (31, 64, 32),
        (32, 128, 64),
        (33, 192, 96),
        (48, 64, 32),
        (50, 256, 128),
        (15, 64, 32),
        (1, 64, 32),
        (17, 128, 64),
        (63, 64, 32),
        (49, 512, 64),
    ] {
        for zx in [0, 128, 255] {
            let case = Case::new(
                ConvSpec::pointwise(k, n),
                Dims::new(1, 1, m, k),
                zx,
                (m * k + n) as u64,
                Activation::Relu6,
            );
            case.check(Family::Gemm, 2).unwrap();
        }
    }
}

/// Stores that saturate: output scales so small that most outputs clamp, with and without
/// the float clamp before rounding (`Requant::rounds_in_range` fails at s_y = 1e-6 and K =
/// 512, and at 1e-9 for 3x3 depthwise: accumulators times multipliers could pass 2^30), so
/// both routes of the packing
/// store, on the GEMM (AMX and `vpdpbusd` tiles, whole and partial panels) and the
/// depthwise quads.
#[test]
fn saturating_stores_are_bit_exact() {
    for scale in [1e-9, 1e-6, 1e-4, 0.05] {
        for activation in [Activation::None, Activation::Relu6] {
            for (m, k, n) in [(40, 512, 64), (7, 64, 96), (5, 32, 64), (3, 1024, 40)] {
                let mut case =
                    Case::new(ConvSpec::pointwise(k, n), Dims::new(1, 1, m, k), 128, 7, activation);
                case.quant.output = QuantParams::new(scale, 100).unwrap();
                if k == 512 {
                    let q = QuantizedLayer::new(&case.layer(), &case.quant).unwrap();
                    assert_eq!(q.requant.rounds_in_range(&q.bias, k), scale >= 1e-4, "s_y {scale}");
                }
                case.check(Family::Gemm, 1).unwrap();
            }
            for (c, stride) in [(64, 1), (32, 1), (96, 2)] {
                let spec = ConvSpec::depthwise(c, 3, stride, 1);
                let mut case = Case::new(spec, Dims::new(1, 6, 7, c), 128, 9, activation);
                case.quant.output = QuantParams::new(scale, 100).unwrap();
                case.check(Family::Direct, 1).unwrap();
            }
        }
    }
}

/// The worst case for saturation: every activation 255 with zero point 0, every weight at
/// +127 (or -127), K = 9 x 1024: exact i32 sums of 2.98e8, which `vpmaddubsw` pairs would
/// have saturated.
#[test]
fn all_255_times_all_127_is_exact_up_to_k_9216() {
    for (k, sign) in [(4, 1.0), (9 * 1024, 1.0), (9 * 1024, -1.0), (1023, 1.0)] {
        let spec = ConvSpec::pointwise(k, 20);
        let dims = Dims::new(1, 1, 7, k);
        let mut case = Case::new(spec, dims, 0, 1, Activation::None);
        case.weights.iter_mut().for_each(|w| *w = sign);
        case.bias.iter_mut().for_each(|b| *b = 0.0);
        case.input.iter_mut().for_each(|x| *x = 255);
        case.quant.weight_scales = weight_scales(20, &case.weights);
        // Outputs span the u8 range: 255 * 127 * k * (0.02 / 127) / s_y.
        case.quant.output = QuantParams::new(255.0 * 0.02 * k as f32 / 200.0, 0).unwrap();
        let want = case.want();
        assert!(want.iter().all(|&y| y == if sign > 0.0 { 200 } else { 0 }), "k {k}: {:?}", &want[..4]);
        case.check(Family::Gemm, 2).unwrap();
    }
}

/// Every other family runs int8 emulated (its f32 layer on dequantized values, the QDQ
/// graph), within one LSB of the integer reference.
#[test]
fn emulated_paths_are_within_one_lsb() {
    let spec = ConvSpec::dense(3, 16, 3, 2, 1);
    let case = Case::new(spec, Dims::new(1, 11, 9, 3), 100, 3, Activation::Relu6);
    let want = case.want();
    for algo in registry::algorithms().unwrap().into_iter().filter(|a| a.supports(&spec)) {
        let got = case.got(algo, 1);
        let worst = got.iter().zip(&want).map(|(&g, &w)| (g as i32 - w as i32).abs()).max().unwrap();
        assert!(worst <= 1, "{}: {worst} LSB", algo.name());
    }
}

#[test]
fn bad_quantization_is_a_typed_error() {
    for (scale, zp) in [(0.0, 0), (-1.0, 0), (f32::NAN, 0), (f32::INFINITY, 0), (1.0, 256), (1.0, -1)] {
        assert!(matches!(QuantParams::new(scale, zp), Err(KernelError::Quantization(_))), "{scale} {zp}");
    }
    let spec = ConvSpec::pointwise(8, 4);
    let mut case = Case::new(spec, Dims::new(1, 1, 2, 8), 0, 1, Activation::None);
    case.quant.weight_scales.pop();
    let algo = natives(Family::Gemm)[0];
    assert!(matches!(
        kernels::prepare::<u8>(algo, &case.layer(), &case.quant),
        Err(KernelError::BufferLength { .. })
    ));
    case.quant.weight_scales.push(0.0);
    assert!(matches!(
        kernels::prepare::<u8>(algo, &case.layer(), &case.quant),
        Err(KernelError::Quantization(_))
    ));
}

#[test]
fn quantize_linear_semantics() {
    let q = QuantParams::new(0.5, 10).unwrap();
    // Half-way cases round to even, as ONNX QuantizeLinear.
    assert_eq!(q.quantize(0.25), 10);
    assert_eq!(q.quantize(0.75), 12);
    assert_eq!(q.quantize(-0.25), 10);
    assert_eq!(q.quantize(1000.0), 255);
    assert_eq!(q.quantize(-1000.0), 0);
    assert_eq!(q.quantize(f32::NAN), 10);
    assert_eq!(q.quantize(f32::INFINITY), 255);
    assert_eq!(q.quantize(f32::NEG_INFINITY), 0);
    // The bit trick of `round_even` against the library rounding, ties and the range's ends.
    for x in [
        0.0f32, -0.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, 7.3, -7.7, 4194304.0, -4194304.0,
        4194303.5,
    ] {
        assert_eq!(kernels::int8::round_even(x), x.round_ties_even() as i32, "{x}");
    }
    assert_eq!(q.dequantize(12), 1.0);
    let r = QuantParams::from_range(-1.0, 3.0).unwrap();
    assert_eq!(r.zero_point, 64);
    assert_eq!(<u8 as Storage>::from_real(0.0, r), 64, "zero is exact");
}
