//! A dense bf16 convolution with at most 32 output channels on `vdpbf16ps`, its receptive
//! fields read in place (MobileNetV1's conv0 at bf16): each kernel row of an interior pixel
//! is `kw * Cin` consecutive bf16s of the NHWC input (conv0: 9), read as `ceil(kw * Cin / 2)`
//! pairs against weights zero-padded to match (conv0: K = 3 x 10 = 30 for 27 taps), 8 pixels
//! per tile of 32 channels (`gemm::avx512_bf16::dense_pixels`), on the row walk int8's
//! conv0 takes too (`fields::in_place_rows`). Edge pixels (taps in the padding) are
//! assembled in a stack row of zeros, as the column buffer pads.
//!
//! It replaces, at bf16, the f32 microkernels on the input widened once with each output
//! row narrowed after it (`Im2colNarrow`), where the pairs run at least at the FMA's FLOP
//! rate (`dot_vs_fma() >= 1`, AMD): half the multiply instructions, and no conversions.

use half::bf16;

use super::fields::{in_place_rows, weight_columns, EDGE_ROW};
use crate::algo::{as_storage, bias_or_zeros, rounded, ConvAlgorithm, Layer, PreparedConv, Run, Storage};
use crate::error::Result;
use crate::gemm::avx512_bf16::{dense_pixels, dot_vs_fma, DenseTaps, PackedPairs, DENSE_PIXELS};
use crate::isa::Isa;
use crate::precision::Precision;
use crate::simd::{Backend, Clamp, Element};
use crate::spec::ConvSpec;

/// See the module docs.
struct InPlaceBf16 {
    spec: ConvSpec,
    name: &'static str,
    /// The weights as pairs over `kh * pairs * 2` columns (kernel rows padded to whole pairs).
    b: PackedPairs,
    /// Pairs per kernel row.
    pairs: usize,
    clamp: Clamp,
}

/// The layer in place where `E` is bf16 and it fits (ungrouped, undilated, at most 32
/// output channels, an edge row within [`EDGE_ROW`]) and `vdpbf16ps` may run here (the
/// AVX-512 backend, AVX512_BF16 under the ceiling, pairs at least as fast as the FMA).
pub(crate) fn prepare<E: Element + Storage>(
    algo: &dyn ConvAlgorithm,
    layer: &Layer<'_>,
) -> Result<Option<Box<dyn PreparedConv<E>>>> {
    let spec = *layer.spec;
    let (cin, kh, kw, n) = (spec.in_channels, spec.kernel_h, spec.kernel_w, spec.out_channels);
    let pairs = (kw * cin).div_ceil(2);
    let k = kh * pairs * 2;
    if E::PRECISION != Precision::Bf16
        || algo.backend() != Backend::Avx512
        || !crate::isa::available(Isa::Avx512Bf16)
        || spec.groups != 1
        || spec.dilation_h != 1
        || spec.dilation_w != 1
        || n > 32
        || k > EDGE_ROW
    {
        return Ok(None);
    }
    // SAFETY: AVX512_BF16 is available (checked above).
    if unsafe { dot_vs_fma() } < 1.0 {
        return Ok(None);
    }
    // Kernel row `ky` at column `ky * 2 pairs`; the pad of an odd kernel row is a zero weight.
    let w = rounded(Precision::Bf16, &weight_columns(layer, 2 * pairs, k));
    let bias = rounded(Precision::Bf16, &bias_or_zeros(&spec, layer.bias));
    let b = PackedPairs::new(k, n, &bias, |p, o| w[o * k + p])?;
    let layer: Box<dyn PreparedConv<bf16>> =
        Box::new(InPlaceBf16 { spec, name: algo.name(), b, pairs, clamp: Clamp::of(layer.activation) });
    // `E` is bf16 (checked above).
    Ok(as_storage(layer))
}

impl PreparedConv<bf16> for InPlaceBf16 {
    fn spec(&self) -> &ConvSpec {
        &self.spec
    }
    fn algorithm(&self) -> &'static str {
        self.name
    }
    fn level(&self) -> Isa {
        Isa::Avx512Bf16
    }
    fn run_checked(&self, run: Run<'_, bf16>) -> Result<()> {
        let Run { input, in_dims: i, out_dims: o, output, par, .. } = run;
        let (s, n) = (&self.spec, self.spec.out_channels);
        let odd = (s.kernel_w * s.in_channels) % 2 == 1;
        let tile = |count: usize, a: *const bf16, pixel_stride: usize, row_stride: usize, c: *mut bf16| {
            let taps =
                DenseTaps { a: a.cast(), pixel_stride, row_stride, rows: s.kernel_h, pairs: self.pairs, odd };
            // SAFETY: `in_place_rows` names `count` pixels whose kernel rows of `2 pairs`
            // values are readable and `count * n` values of output (bf16 is its bits, a
            // `u16`); the CPU has AVX512_BF16 (checked at prepare).
            unsafe {
                if count == DENSE_PIXELS {
                    dense_pixels::<DENSE_PIXELS>(&self.b, taps, self.clamp, c.cast(), n)
                } else {
                    dense_pixels::<1>(&self.b, taps, self.clamp, c.cast(), n)
                }
            }
        };
        in_place_rows(s, (i, o), input, output, par, (self.pairs * 2, DENSE_PIXELS), bf16::ZERO, tile);
        Ok(())
    }
}
