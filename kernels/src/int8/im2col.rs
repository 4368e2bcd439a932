//! int8 im2col + GEMM: the native path of the `im2col` family at u8, for dense (ungrouped)
//! convolutions such as MobileNetV1's conv0 (3x3 stride 2, 3 -> 32 channels, K = 27).
//!
//! Each output pixel's receptive field is copied as one row of `K = kh * kw * Cin` bytes
//! (in `(ky, kx, c)` order) into scratch, taps outside the image as the input zero point
//! (which is the real value 0, so the GEMM's folded zero-point correction makes them add
//! exactly nothing), and the rows go through the int8 GEMM ([`super::gemm`]) with the
//! weights reordered to match. conv0's column buffer is 12,544 x 27 bytes (339 KiB).

use super::gemm::{self, GemmInt8};
use super::QuantLayer;
use crate::algo::{ConvAlgorithm, Layer, PreparedConv, Run};
use crate::error::{KernelError, Result};
use crate::isa::Isa;
use crate::spec::{ConvSpec, Dims};

/// An int8 dense convolution as a column buffer and the int8 GEMM.
struct Im2colInt8 {
    spec: ConvSpec,
    /// The GEMM over `K = kh * kw * Cin` columns.
    gemm: Box<GemmInt8>,
    zero_point: u8,
}

/// The native path of `im2col` at u8: dense (`groups == 1`) convolutions.
pub(crate) fn native(
    algo: &dyn ConvAlgorithm,
    layer: &Layer<'_>,
    quant: &QuantLayer,
) -> Result<Option<Box<dyn PreparedConv<u8>>>> {
    let spec = *layer.spec;
    if spec.groups != 1 || spec.is_pointwise() {
        return Ok(None);
    }
    let (cin, kh, kw, n) = (spec.in_channels, spec.kernel_h, spec.kernel_w, spec.out_channels);
    // Columns padded to a multiple of 4 (zero weights): whole `vpdpbusd` groups.
    let k = (cin * kh * kw).next_multiple_of(4);
    // OIHW -> [n][(ky, kx, c)], the column order.
    let mut w = vec![0.0f32; n * k];
    for o in 0..n {
        for c in 0..cin {
            for ky in 0..kh {
                for kx in 0..kw {
                    w[o * k + (ky * kw + kx) * cin + c] =
                        layer.weights_oihw[((o * cin + c) * kh + ky) * kw + kx];
                }
            }
        }
    }
    let columns = ConvSpec::pointwise(k, n);
    let inner = Layer::new(&columns, &w, layer.bias, layer.activation);
    let gemm = gemm::prepare(algo, &inner, quant)?;
    // `algo::prepare` checked the layer, the GEMM its parameters (the same output channels).
    let zero_point = quant.input.zero_point as u8;
    Ok(Some(Box::new(Im2colInt8 { spec, gemm: Box::new(gemm), zero_point })))
}

impl Im2colInt8 {
    /// Columns: the receptive field's `kh * kw * cin` bytes, padded to a multiple of 4.
    fn k(&self) -> usize {
        (self.spec.in_channels * self.spec.kernel_h * self.spec.kernel_w).next_multiple_of(4)
    }

    /// The column buffer's length in f32 words, and the GEMM's scratch after it.
    fn split(&self, input: Dims) -> Result<(usize, usize, Dims)> {
        let o = self.spec.output_dims(input)?;
        let m = o.n * o.h * o.w;
        let bytes = m.checked_mul(self.k()).ok_or(KernelError::Overflow { what: "int8 column buffer" })?;
        let cols = Dims::new(1, 1, m, self.k());
        Ok((bytes.div_ceil(4), self.gemm.scratch_len(cols)?, cols))
    }
}

impl PreparedConv<u8> for Im2colInt8 {
    fn spec(&self) -> &ConvSpec {
        &self.spec
    }
    fn algorithm(&self) -> &'static str {
        self.gemm.algorithm()
    }
    fn level(&self) -> Isa {
        self.gemm.level()
    }
    fn scratch_len(&self, input: Dims) -> Result<usize> {
        let (cols, gemm, _) = self.split(input)?;
        cols.checked_add(gemm).ok_or(KernelError::Overflow { what: "int8 im2col scratch" })
    }
    fn run_checked(&self, run: Run<'_, u8>) -> Result<()> {
        let Run { input, in_dims, out_dims: o, output, scratch, par, .. } = run;
        let (words, _, cols) = self.split(in_dims)?;
        let (col_words, rest) = scratch.split_at_mut(words);
        // The words hold `4 * words >= m * k` bytes.
        let col = &mut crate::tensor::scratch_as::<u8>(col_words)[..cols.w * cols.c];
        let s = &self.spec;
        let (k, cin) = (self.k(), s.in_channels);
        let run = s.kernel_w * cin;
        // One task per output row (image, oy) over `par`: built serially, the column buffer
        // took all of conv0's 0.31 ms at 2 threads as at 1 (Xeon 6/167), the GEMM after it
        // being small (K = 27). Per row, a loop over pixels: three integer divisions per
        // pixel cost more than its copy.
        let zero_point = self.zero_point;
        par.for_each_chunk_mut(col, o.w * k, |i, pixels| {
            let (b, oy) = (i / o.h, i % o.h);
            for (ox, row) in pixels.chunks_exact_mut(k).enumerate() {
                fill_run(&mut row[s.kernel_h * run..], 0);
                let ix0 = (ox * s.stride_w) as isize - s.padding.left as isize;
                // Undilated taps of one kernel row inside the image are one contiguous run of
                // `kw * cin` bytes (conv0: 9), copied as one run (a call per tap took 0.56 ms of
                // conv0's 0.63 on the Xeon 6/167).
                let contiguous = s.dilation_w == 1 && ix0 >= 0 && ix0 as usize + s.kernel_w <= in_dims.w;
                for ky in 0..s.kernel_h {
                    let iy = (oy * s.stride_h + ky * s.dilation_h) as isize - s.padding.top as isize;
                    let dst = &mut row[ky * run..(ky + 1) * run];
                    if iy < 0 || iy >= in_dims.h as isize {
                        fill_run(dst, zero_point);
                    } else if contiguous {
                        let at = ((b * in_dims.h + iy as usize) * in_dims.w + ix0 as usize) * cin;
                        copy_run(dst, &input[at..at + run]);
                    } else {
                        for kx in 0..s.kernel_w {
                            let ix = ix0 + (kx * s.dilation_w) as isize;
                            let tap = &mut dst[kx * cin..(kx + 1) * cin];
                            if ix < 0 || ix >= in_dims.w as isize {
                                fill_run(tap, zero_point);
                            } else {
                                let at = ((b * in_dims.h + iy as usize) * in_dims.w + ix as usize) * cin;
                                copy_run(tap, &input[at..at + cin]);
                            }
                        }
                    }
                }
            }
        });
        self.gemm.run(col, cols, output, rest, par)
    }
}

/// The short runs of a column row (conv0: 9-byte kernel rows, a 1-byte pad) as fixed-size
/// array moves where the length is one of them. LLVM turns a byte loop into a call to
/// `memcpy` / `memset`, three or four calls per pixel: conv0 0.257 -> 0.225 ms at one thread
/// (Xeon family 6 model 167; a copy of the pixel loop per constant run length measured no
/// better, 0.238).
macro_rules! short_runs {
    ($dst:expr, [$($n:literal),*], |$d:ident| $body:expr, $otherwise:expr) => {
        match $dst.len() {
            $($n => {
                if let Ok($d) = <&mut [u8; $n]>::try_from(&mut *$dst) {
                    $body
                }
            })*
            _ => $otherwise,
        }
    };
}

/// `dst = src` (equal lengths).
#[inline(always)]
fn copy_run(dst: &mut [u8], src: &[u8]) {
    short_runs!(
        dst,
        [1, 2, 3, 4, 6, 8, 9, 12, 15, 16],
        |d| match <&[u8; _]>::try_from(src) {
            Ok(s) => *d = *s,
            Err(_) => d.copy_from_slice(src),
        },
        dst.copy_from_slice(src)
    )
}

/// Every byte of `dst` to `v`.
#[inline(always)]
fn fill_run(dst: &mut [u8], v: u8) {
    short_runs!(dst, [0, 1, 2, 3, 4, 6, 8, 9, 12, 15, 16], |d| *d = [v; _], dst.fill(v))
}
