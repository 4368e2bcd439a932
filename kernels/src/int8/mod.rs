//! int8: the quantized row of the storage axis (`u8` activations, `i8` weights, i32
//! accumulators, a requantizing store).
//!
//! The scheme is ONNX Runtime's and XNNPACK's on x86 (`docs/int8.md` says why and how):
//!
//! - **Activations:** per-tensor asymmetric u8: `real = (q - zero_point) * scale`, as ONNX
//!   `DequantizeLinear`; `q = saturate(round_half_even(real / scale) + zero_point)`, as
//!   `QuantizeLinear` ([`QuantParams`]).
//! - **Weights:** per-output-channel symmetric i8 in -127..=127, zero point 0:
//!   `scale[c] = max |w[c]| / 127` ([`weight_scales`], [`quantize_weights`]).
//! - **Bias:** i32 `round(b[c] / (s_x * s_w[c]))`.
//! - **Accumulation:** exact, in i32: `acc = bias_q + sum (x - z_x) * w_q`. The GEMM kernels
//!   read raw `x` and fold `-z_x * sum_k w_q[c][k]` into the bias at prepare; depthwise
//!   subtracts `z_x` from each tap, because a padded tap (real 0) has no `x` at all.
//! - **Requantization**, in f32 in every kernel alike ([`Requant::apply`]):
//!   `y = round_half_even(clamp(acc * (s_x * s_w[c] / s_y), lo - z_y, hi - z_y)) + z_y`,
//!   where `[lo, hi]` is the fused activation in the quantized domain (ReLU6: `[z_y, z_y +
//!   round(6 / s_y)]`, within 0..=255). Clamping before rounding to integer bounds is the
//!   same as clamping after, and keeps the float -> int conversion in range.
//!
//! So every kernel computes the same integers as the scalar reference ([`reference`]) and
//! then the same f32 operations: int8 kernels are held to **bit equality** with it.
//!
//! Native paths: `gemm` (pointwise and fully connected: AVX-512 VNNI `vpdpbusd`, AVX2
//! `vpmaddwd` on widened operands, scalar), `im2col` (dense convolutions such as conv0: a
//! u8 column buffer and the same GEMM) and `direct` (depthwise, channels across lanes on
//! AVX-512 and AVX2, scalar elsewhere). Every other algorithm (`naive`, Winograd) runs
//! emulated: its f32 layer on the dequantized input, with the dequantized weights,
//! quantizing its output: the QDQ graph itself.

use crate::algo::{ConvAlgorithm, Conversion, Converted, Family, Layer, NativeFn, PreparedConv, Storage};
use crate::error::{KernelError, Result};
use crate::isa::Isa;
use crate::precision::Precision;
use crate::spec::{Activation, ConvSpec};

#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
mod amx;
#[cfg(all(feature = "avx2", target_arch = "x86_64"))]
mod avx2;
#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
mod avx512;
mod depthwise;
mod gemm;
mod im2col;
pub mod reference;

/// The quantization of one u8 activation tensor: `real = (q - zero_point) * scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantParams {
    pub scale: f32,
    pub zero_point: i32,
}

impl QuantParams {
    /// Checked parameters: a finite positive scale, a zero point in 0..=255.
    pub fn new(scale: f32, zero_point: i32) -> Result<Self> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(KernelError::Quantization(format!("scale must be finite and positive, got {scale}")));
        }
        if !(0..=255).contains(&zero_point) {
            return Err(KernelError::Quantization(format!(
                "u8 zero point must be in 0..=255, got {zero_point}"
            )));
        }
        Ok(QuantParams { scale, zero_point })
    }

    /// The parameters that cover `[min, max]` (widened to include 0, so that 0 and padding are
    /// exact): `scale = (max - min) / 255`, `zero_point = round(-min / scale)`, as ONNX
    /// Runtime's MinMax calibration computes them. An empty range gives scale 1.
    pub fn from_range(min: f32, max: f32) -> Result<Self> {
        let (min, max) = (min.min(0.0), max.max(0.0));
        if !(min.is_finite() && max.is_finite()) {
            return Err(KernelError::Quantization(format!("range [{min}, {max}] is not finite")));
        }
        let scale = if max > min { (max - min) / 255.0 } else { 1.0 };
        let zero_point = (-min / scale).round_ties_even().clamp(0.0, 255.0) as i32;
        QuantParams::new(scale, zero_point)
    }

    /// ONNX `QuantizeLinear`: `saturate(round_half_even(x / scale) + zero_point)`; NaN -> the
    /// zero point.
    #[inline]
    pub fn quantize(self, x: f32) -> u8 {
        // NaN -> 0 as a select (a `cmpps`), so loops of this vectorize: leaving NaN to the
        // saturating `as i32` made LLVM convert lane by lane, 0.3-0.4 ms for the model's
        // 224 x 224 x 3 input (Xeon family 6 model 167).
        let q = x / self.scale;
        let q = if q.is_nan() { 0.0 } else { q.clamp(-512.0, 512.0) };
        (round_even(q) + self.zero_point).clamp(0, 255) as u8
    }

    /// ONNX `DequantizeLinear`: `(q - zero_point) * scale`.
    #[inline]
    pub fn dequantize(self, q: u8) -> f32 {
        (q as i32 - self.zero_point) as f32 * self.scale
    }
}

/// `x` rounded to the nearest integer, ties to even, for `|x| <= 2^22` (anything else,
/// NaN included, gives an unspecified value): adding `1.5 * 2^23` rounds in the FPU's
/// default mode, which is that, and leaves the integer in the sum's low mantissa bits. The
/// same value as `f32::round_ties_even`, without the libm call baseline x86-64 makes of it
/// and without a float -> int conversion (so loops of it vectorize), and as `cvtps2dq` in
/// the SIMD kernels.
#[inline(always)]
pub fn round_even(x: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0;
    (x + MAGIC).to_bits() as i32 - MAGIC.to_bits() as i32
}

/// What one int8 layer needs besides its f32 weights: its input's and output's
/// quantization and one weight scale per output channel.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantLayer {
    pub input: QuantParams,
    pub output: QuantParams,
    pub weight_scales: Vec<f32>,
}

impl QuantLayer {
    /// Checks the parameters against `spec`: one finite positive weight scale per output
    /// channel, and valid activation parameters.
    pub fn validate(&self, spec: &ConvSpec) -> Result<()> {
        QuantParams::new(self.input.scale, self.input.zero_point)?;
        QuantParams::new(self.output.scale, self.output.zero_point)?;
        if self.weight_scales.len() != spec.out_channels {
            return Err(KernelError::BufferLength {
                what: "weight scales",
                expected: spec.out_channels,
                actual: self.weight_scales.len(),
            });
        }
        if let Some(s) = self.weight_scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(KernelError::Quantization(format!(
                "weight scale must be finite and positive, got {s}"
            )));
        }
        Ok(())
    }
}

/// Symmetric per-output-channel weight scales of OIHW `weights`: `max |w[c]| / 127` (1 for an
/// all-zero channel, whose weights then quantize to 0 whatever the scale).
pub fn weight_scales(out_channels: usize, weights_oihw: &[f32]) -> Vec<f32> {
    let per = weights_oihw.len() / out_channels.max(1);
    weights_oihw
        .chunks(per.max(1))
        .take(out_channels)
        .map(|w| {
            let m = w.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            if m > 0.0 && m.is_finite() {
                m / 127.0
            } else {
                1.0
            }
        })
        .collect()
}

/// OIHW weights quantized per output channel: `clamp(round_half_even(w / s[c]), -127, 127)`.
pub fn quantize_weights(weights_oihw: &[f32], scales: &[f32]) -> Vec<i8> {
    let per = weights_oihw.len() / scales.len().max(1);
    weights_oihw
        .iter()
        .enumerate()
        .map(|(i, &w)| (w / scales[i / per.max(1)]).round_ties_even().clamp(-127.0, 127.0) as i8)
        .collect()
}

/// The i32 bias: `round_half_even(b[c] / (s_x * s_w[c]))`, saturated to i32.
pub fn quantize_bias(bias: Option<&[f32]>, input_scale: f32, weight_scales: &[f32]) -> Vec<i32> {
    weight_scales
        .iter()
        .enumerate()
        .map(|(c, &sw)| {
            let b = bias.map_or(0.0, |b| b[c]) as f64;
            (b / (input_scale as f64 * sw as f64)).round_ties_even().clamp(i32::MIN as f64, i32::MAX as f64)
                as i32
        })
        .collect()
}

/// The requantizing store of one layer: per output channel a multiplier, one output zero
/// point, and the activation's clamp in the quantized domain.
#[derive(Debug, Clone, PartialEq)]
pub struct Requant {
    /// `s_x * s_w[c] / s_y`, per output channel.
    pub multiplier: Vec<f32>,
    pub zero_point: i32,
    pub lo: i32,
    pub hi: i32,
}

impl Requant {
    pub fn new(q: &QuantLayer, activation: Activation) -> Requant {
        let multiplier = q
            .weight_scales
            .iter()
            .map(|&sw| ((q.input.scale as f64 * sw as f64) / q.output.scale as f64) as f32)
            .collect();
        let (lo, hi) = quantized_clamp(q.output, activation);
        Requant { multiplier, zero_point: q.output.zero_point, lo, hi }
    }

    /// The store of one accumulator of channel `c`: the clamp to the activation's bounds
    /// (shifted by the zero point) comes before the rounding, which keeps the float -> int
    /// conversion in range, where SIMD conversions and Rust's `as` agree.
    #[inline(always)]
    pub fn apply(&self, acc: i32, c: usize) -> u8 {
        let (lo, hi) = self.bounds();
        let v = (acc as f32 * self.multiplier[c]).clamp(lo, hi);
        (round_even(v) + self.zero_point) as u8
    }

    /// `(lo - z_y, hi - z_y)` as f32: the clamp of [`apply`](Self::apply) before rounding.
    #[inline(always)]
    pub fn bounds(&self) -> (f32, f32) {
        ((self.lo - self.zero_point) as f32, (self.hi - self.zero_point) as f32)
    }

    /// Whether `acc * multiplier[c]` stays far inside the i32 range (below 2^30) for every
    /// accumulator of a layer that sums `terms` products of a u8 and an i8 onto `bias[c]`.
    /// Then a vector store may round before it clamps, and let saturating packs and a byte
    /// min / max do the clamp: the same bytes as [`apply`](Self::apply), since rounding is
    /// monotone and the bounds are integers. Otherwise a float -> i32 conversion could
    /// overflow, and the store must clamp in float first.
    pub fn rounds_in_range(&self, bias: &[i32], terms: usize) -> bool {
        let products = terms as f64 * 255.0 * 128.0;
        self.multiplier
            .iter()
            .zip(bias)
            .all(|(&m, &b)| ((b as f64).abs() + products) * (m as f64).abs() < (1u64 << 30) as f64)
    }
}

/// The activation's bounds in the quantized domain of `out`, within 0..=255.
pub fn quantized_clamp(out: QuantParams, activation: Activation) -> (i32, i32) {
    let (lo, hi) = activation.bounds();
    let q = |x: f32| {
        if x.is_infinite() {
            if x > 0.0 {
                255
            } else {
                0
            }
        } else {
            out.quantize(x) as i32
        }
    };
    match activation {
        Activation::None => (0, 255),
        _ => (q(lo), q(hi)),
    }
}

/// The integer form of a layer that every int8 kernel starts from.
#[derive(Debug, Clone)]
pub struct QuantizedLayer {
    pub spec: ConvSpec,
    /// OIHW, per-output-channel symmetric.
    pub weights: Vec<i8>,
    /// `round(b / (s_x * s_w))`.
    pub bias: Vec<i32>,
    pub input_zero_point: i32,
    pub requant: Requant,
}

impl QuantizedLayer {
    /// Quantizes `layer` with `q` (checked).
    pub fn new(layer: &Layer<'_>, q: &QuantLayer) -> Result<Self> {
        q.validate(layer.spec)?;
        Ok(QuantizedLayer {
            spec: *layer.spec,
            weights: quantize_weights(layer.weights_oihw, &q.weight_scales),
            bias: quantize_bias(layer.bias, q.input.scale, &q.weight_scales),
            input_zero_point: q.input.zero_point,
            requant: Requant::new(q, layer.activation),
        })
    }
}

impl Storage for u8 {
    const PRECISION: Precision = Precision::Int8;
    type Quant = QuantLayer;
    type Tensor = QuantParams;
    fn tensors(q: &QuantLayer) -> (QuantParams, QuantParams) {
        (q.input, q.output)
    }
    #[inline]
    fn from_real(x: f32, t: QuantParams) -> u8 {
        t.quantize(x)
    }
    #[inline]
    fn to_real(self, t: QuantParams) -> f32 {
        t.dequantize(self)
    }
    const NATIVE: &'static [(Family, NativeFn<u8>)] = &[
        (Family::Gemm, gemm::native),
        (Family::Direct, depthwise::native),
        (Family::Im2col, im2col::native),
    ];
    fn emulated(
        algo: &dyn ConvAlgorithm,
        layer: &Layer<'_>,
        q: &QuantLayer,
    ) -> Result<Box<dyn PreparedConv<u8>>> {
        let ql = QuantizedLayer::new(layer, q)?;
        // The f32 layer computes with exactly the values the integers stand for.
        let per = ql.weights.len() / ql.spec.out_channels;
        let w: Vec<f32> =
            ql.weights.iter().enumerate().map(|(i, &w)| w as f32 * q.weight_scales[i / per]).collect();
        let b: Vec<f32> =
            ql.bias.iter().zip(&q.weight_scales).map(|(&b, &sw)| b as f32 * q.input.scale * sw).collect();
        let inner = algo.prepare(layer.spec, &w, Some(&b), layer.activation)?;
        let convert = Requantize { input: q.input, output: q.output };
        Ok(Box::new(Converted { inner, convert, _storage: std::marker::PhantomData }))
    }
}

/// The conversions of the emulated path at u8 ([`Storage::emulated`]): dequantize the input,
/// quantize the output, each with its tensor's parameters.
struct Requantize {
    input: QuantParams,
    output: QuantParams,
}

impl Conversion<u8> for Requantize {
    fn widen(&self, src: &[u8], dst: &mut [f32]) {
        for (d, &q) in dst.iter_mut().zip(src) {
            *d = self.input.dequantize(q);
        }
    }
    fn narrow(&self, src: &[f32], dst: &mut [u8]) {
        for (d, &y) in dst.iter_mut().zip(src) {
            *d = self.output.quantize(y);
        }
    }
}

/// Which instructions an int8 kernel of `backend` may use here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Int8Isa {
    /// The scalar reference (every backend without an int8 kernel: scalar, pulp, wide, NEON).
    Scalar,
    /// AVX2: `vpmaddwd` on operands widened to i16 (exact; `vpmaddubsw` could saturate).
    Avx2,
    /// AVX-512BW (depthwise) and AVX-512 VNNI `vpdpbusd` (GEMM) where the CPU has it.
    Avx512 { vnni: bool },
}

impl Int8Isa {
    /// The int8 kernels `algo`'s backend runs here.
    pub(crate) fn of(algo: &dyn ConvAlgorithm) -> Int8Isa {
        #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
        if algo.backend() == crate::simd::Backend::Avx512 && crate::isa::available(Isa::Avx512) {
            return Int8Isa::Avx512 { vnni: std::arch::is_x86_feature_detected!("avx512vnni") };
        }
        #[cfg(all(feature = "avx2", target_arch = "x86_64"))]
        if algo.backend() == crate::simd::Backend::Avx2 && crate::isa::available(Isa::Avx2) {
            return Int8Isa::Avx2;
        }
        let _ = algo;
        Int8Isa::Scalar
    }

    pub(crate) fn level(self) -> Isa {
        match self {
            Int8Isa::Scalar => Isa::Scalar,
            Int8Isa::Avx2 => Isa::Avx2,
            Int8Isa::Avx512 { .. } => Isa::Avx512,
        }
    }
}
