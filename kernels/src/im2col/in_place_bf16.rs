//! A dense bf16 convolution with at most 32 output channels on `vdpbf16ps`, its receptive
//! fields read in place (MobileNetV1's conv0 at bf16): each kernel row of an interior pixel
//! is `kw * Cin` consecutive bf16s of the NHWC input (conv0: 9), read as `ceil(kw * Cin / 2)`
//! pairs against weights zero-padded to match (conv0: K = 3 x 10 = 30 for 27 taps), 8 pixels
//! per tile of 32 channels (`gemm::avx512_bf16::dense_pixels`). Edge pixels (taps in the
//! padding) are assembled in a stack row of zeros, as the column buffer pads.
//!
//! It replaces, at bf16, the f32 microkernels on the input widened once with each output
//! row narrowed after it (`Im2colNarrow`), where the pairs run at least at the FMA's FLOP
//! rate (`dot_vs_fma() >= 1`, AMD): half the multiply instructions, and no conversions.

use half::bf16;

use crate::algo::{bias_or_zeros, rounded, ConvAlgorithm, Layer, PreparedConv, Run, Storage};
use crate::error::{KernelError, Result};
use crate::gemm::avx512_bf16::{dense_pixels, dot_vs_fma, DenseTaps, PackedPairs, DENSE_PIXELS};
use crate::isa::Isa;
use crate::precision::Precision;
use crate::simd::{Backend, Clamp, Element};
use crate::spec::ConvSpec;

/// The most bf16s an edge pixel's stack row holds (`kh * pairs * 2`).
const EDGE_ROW: usize = 256;

/// See the module docs.
pub(crate) struct InPlaceBf16 {
    spec: ConvSpec,
    name: &'static str,
    /// The weights as pairs over `kh * pairs * 2` columns (kernel rows padded to whole pairs).
    b: PackedPairs,
    /// Pairs per kernel row.
    pairs: usize,
    clamp: Clamp,
}

/// The layer in place, at bf16 (`E`), where it fits (ungrouped, undilated, at most 32
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
        || std::mem::size_of::<E>() != 2
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
    let (w, bias) = (rounded(Precision::Bf16, layer.weights_oihw), bias_or_zeros(&spec, layer.bias));
    let bias = rounded(Precision::Bf16, &bias);
    // Column `ky * 2 pairs + kx * cin + c`; the pad of an odd kernel row is a zero weight.
    let b = PackedPairs::new(k, n, &bias, |p, o| {
        let (ky, at) = (p / (2 * pairs), p % (2 * pairs));
        if at >= kw * cin {
            return 0.0;
        }
        let (kx, c) = (at / cin, at % cin);
        w[((o * cin + c) * kh + ky) * kw + kx]
    })?;
    let clamp = Clamp::of(layer.activation);
    Ok(Some(Box::new(InPlaceBf16 { spec, name: algo.name(), b, pairs, clamp })))
}

impl<E: Element + Storage> PreparedConv<E> for InPlaceBf16 {
    fn spec(&self) -> &ConvSpec {
        &self.spec
    }
    fn algorithm(&self) -> &'static str {
        self.name
    }
    fn level(&self) -> Isa {
        Isa::Avx512Bf16
    }
    fn run_checked(&self, run: Run<'_, E>) -> Result<()> {
        let crate::algo::Run { input, in_dims: i, out_dims: o, output, par, .. } = run;
        if E::PRECISION != Precision::Bf16 {
            return Err(KernelError::Unsupported {
                algorithm: self.name,
                spec: format!("the in-place bf16 layer at {}", E::PRECISION),
            });
        }
        // SAFETY: `E` is bf16 (checked above and at prepare), a plain 16-bit value whose
        // bits are the `u16`s the kernel reads and writes.
        let (input, output) = unsafe {
            (
                std::slice::from_raw_parts(input.as_ptr().cast::<u16>(), input.len()),
                std::slice::from_raw_parts_mut(output.as_mut_ptr().cast::<u16>(), output.len()),
            )
        };
        let s = &self.spec;
        let (cin, n, kh, kw) = (s.in_channels, s.out_channels, s.kernel_h, s.kernel_w);
        let (row_stride, pixel_stride, k_row) = (i.w * cin, s.stride_w * cin, self.pairs * 2);
        let odd = (kw * cin) % 2 == 1;
        // One task per output row (image, oy).
        par.for_each_chunk_mut(output, o.w * n, |row, out| {
            // The last pair of an odd kernel row reads one value past it.
            let read = (kh - 1) * row_stride + k_row;
            let (lo, hi, at) = super::interior_pixels(s, (i, o), row, read, input.len());
            let (img, oy) = (row / o.h, row % o.h);
            let taps = |a: *const u16, pixel_stride: usize, row_stride: usize| DenseTaps {
                a,
                pixel_stride,
                row_stride,
                rows: kh,
                pairs: self.pairs,
                odd,
            };
            let mut ox = lo;
            while ox + DENSE_PIXELS <= hi {
                // SAFETY: pixels `ox..ox + 8` are interior and `fits` (so is every pixel
                // before the last); the tile writes their `8 * n` values of `out`; the CPU
                // has AVX512_BF16 (checked at prepare).
                unsafe {
                    let t = taps(input.as_ptr().add(at(ox)), pixel_stride, row_stride);
                    dense_pixels::<DENSE_PIXELS>(&self.b, t, self.clamp, out[ox * n..].as_mut_ptr(), n)
                };
                ox += DENSE_PIXELS;
            }
            for x in ox..hi {
                // SAFETY: as above, one pixel.
                unsafe {
                    let t = taps(input.as_ptr().add(at(x)), pixel_stride, row_stride);
                    dense_pixels::<1>(&self.b, t, self.clamp, out[x * n..].as_mut_ptr(), n)
                };
            }
            let mut edge = [0u16; EDGE_ROW];
            for x in (0..o.w).filter(|&x| x < lo || x >= hi) {
                gather_pixel(s, input, i, (img, oy, x), &mut edge, k_row);
                // SAFETY: the stack row holds `kh * k_row` values (checked at prepare), its
                // pads zero; the pixel's `n` values of `out`.
                unsafe {
                    let t = taps(edge.as_ptr(), 0, k_row);
                    dense_pixels::<1>(&self.b, t, self.clamp, out[x * n..].as_mut_ptr(), n)
                };
            }
        });
        Ok(())
    }
}

/// Output pixel `(b, oy, ox)`'s receptive field into `dst`: kernel row `ky`'s `kw * Cin`
/// values at `ky * row_stride`, taps outside the image (and the pad after each row) zero.
fn gather_pixel(
    s: &ConvSpec,
    input: &[u16],
    ind: crate::spec::Dims,
    (b, oy, ox): (usize, usize, usize),
    dst: &mut [u16],
    row_stride: usize,
) {
    let cin = s.in_channels;
    dst.fill(bf16::ZERO.to_bits());
    for ky in 0..s.kernel_h {
        let iy = (oy * s.stride_h + ky) as isize - s.padding.top as isize;
        if iy < 0 || iy >= ind.h as isize {
            continue;
        }
        for kx in 0..s.kernel_w {
            let ix = (ox * s.stride_w + kx) as isize - s.padding.left as isize;
            if ix < 0 || ix >= ind.w as isize {
                continue;
            }
            let at = ((b * ind.h + iy as usize) * ind.w + ix as usize) * cin;
            dst[ky * row_stride + kx * cin..][..cin].copy_from_slice(&input[at..at + cin]);
        }
    }
}
