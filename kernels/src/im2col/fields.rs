//! Receptive fields of dense layers on a narrow storage type (int8's and bf16's conv0):
//! the weights laid out as the columns of a receptive field ([`weight_columns`]), one
//! pixel's field gathered into a row with the padding's value ([`gather_pixel`]), and the
//! row walk of a layer whose interior fields are read in place ([`in_place_rows`]).

use crate::algo::Layer;
#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
use crate::pool::Par;
use crate::spec::{ConvSpec, Dims};

/// Values of the stack row that an edge pixel of [`in_place_rows`] is assembled in: a
/// layer's `kh * k_row` must fit.
#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
pub(crate) const EDGE_ROW: usize = 256;

/// The output rows of a dense layer whose receptive fields are read in place, one task per
/// output row over `par`: `tile(count, a, pixel_stride, row_stride, c)` computes `count`
/// pixels (`wide` or 1) whose kernel row `ky` starts at `a + r * pixel_stride + ky *
/// row_stride` (each kernel row read as `k_row` values, past its `kw * Cin` real ones into
/// zero weights) into `c`, `out_channels` values a pixel. Interior pixels (every tap inside
/// the image, every read inside `input`) go `wide` at a time straight from the input, then
/// one by one; edge pixels are gathered into a stack row of `k_row`-value kernel rows, taps
/// outside the image as `zero`.
#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn in_place_rows<T: Copy + Send + Sync>(
    s: &ConvSpec,
    (i, o): (Dims, Dims),
    input: &[T],
    output: &mut [T],
    par: Par<'_>,
    (k_row, wide): (usize, usize),
    zero: T,
    tile: impl Fn(usize, *const T, usize, usize, *mut T) + Sync,
) {
    let (cin, n, kh) = (s.in_channels, s.out_channels, s.kernel_h);
    let (row_stride, pixel_stride) = (i.w * cin, s.stride_w * cin);
    // The last word of the last kernel row reads up to `k_row - kw * Cin` values past it.
    let read = (kh - 1) * row_stride + k_row;
    // Output columns whose taps are all inside the image: `ix0 >= 0`, `ix0 + kw <= w`.
    let x_lo = (s.padding.left.div_ceil(s.stride_w)).min(o.w);
    let x_end = match (i.w + s.padding.left).checked_sub(s.kernel_w) {
        Some(room) => (room / s.stride_w + 1).min(o.w),
        None => 0,
    };
    par.for_each_chunk_mut(output, o.w * n, |row, out| {
        let (img, oy) = (row / o.h, row % o.h);
        let iy0 = (oy * s.stride_h) as isize - s.padding.top as isize;
        let inside = iy0 >= 0 && iy0 as usize + kh <= i.h;
        // The index of an interior pixel's first tap.
        let at =
            |ox: usize| ((img * i.h + iy0.max(0) as usize) * i.w + ox * s.stride_w - s.padding.left) * cin;
        let (lo, mut hi) = if inside { (x_lo, x_end.max(x_lo)) } else { (0, 0) };
        while hi > lo && at(hi - 1) + read > input.len() {
            hi -= 1;
        }
        let mut ox = lo;
        while ox + wide <= hi {
            tile(wide, input[at(ox)..].as_ptr(), pixel_stride, row_stride, out[ox * n..].as_mut_ptr());
            ox += wide;
        }
        for x in ox..hi {
            tile(1, input[at(x)..].as_ptr(), pixel_stride, row_stride, out[x * n..].as_mut_ptr());
        }
        let mut edge = [zero; EDGE_ROW];
        for x in (0..o.w).filter(|&x| x < lo || x >= hi) {
            gather_pixel(s, input, i, (img, oy, x), zero, &mut edge, k_row);
            tile(1, edge.as_ptr(), 0, k_row, out[x * n..].as_mut_ptr());
        }
    });
}

/// The weights of a dense layer as the columns of its receptive field: OIHW -> `[n][k]` with
/// kernel row `ky`'s `(kx, c)` taps at `ky * row_stride`, every other column zero.
pub(crate) fn weight_columns(layer: &Layer<'_>, row_stride: usize, k: usize) -> Vec<f32> {
    let s = layer.spec;
    let (cin, kh, kw, n) = (s.in_channels, s.kernel_h, s.kernel_w, s.out_channels);
    let mut w = vec![0.0f32; n * k];
    for o in 0..n {
        for c in 0..cin {
            for ky in 0..kh {
                for kx in 0..kw {
                    w[o * k + ky * row_stride + kx * cin + c] =
                        layer.weights_oihw[((o * cin + c) * kh + ky) * kw + kx];
                }
            }
        }
    }
    w
}

/// Output pixel `(b, oy, ox)`'s receptive field into `dst`: kernel row `ky`'s `kw * Cin`
/// values at `ky * row_stride`, taps outside the image as `zero` (the value that means 0:
/// int8's zero point, a float's 0). What lies between the kernel rows is not written.
/// Undilated taps of one kernel row inside the image are one contiguous run (conv0: 9
/// values), copied as one run (a call per tap took 0.56 ms of int8 conv0's 0.63 on the Xeon
/// 6/167).
pub(crate) fn gather_pixel<T: Copy>(
    s: &ConvSpec,
    input: &[T],
    ind: Dims,
    (b, oy, ox): (usize, usize, usize),
    zero: T,
    dst: &mut [T],
    row_stride: usize,
) {
    let (cin, run) = (s.in_channels, s.kernel_w * s.in_channels);
    let ix0 = (ox * s.stride_w) as isize - s.padding.left as isize;
    let contiguous = s.dilation_w == 1 && ix0 >= 0 && ix0 as usize + s.kernel_w <= ind.w;
    for ky in 0..s.kernel_h {
        let iy = (oy * s.stride_h + ky * s.dilation_h) as isize - s.padding.top as isize;
        let row = &mut dst[ky * row_stride..][..run];
        if iy < 0 || iy >= ind.h as isize {
            fill_run(row, zero);
        } else if contiguous {
            let at = ((b * ind.h + iy as usize) * ind.w + ix0 as usize) * cin;
            copy_run(row, &input[at..at + run]);
        } else {
            for kx in 0..s.kernel_w {
                let ix = ix0 + (kx * s.dilation_w) as isize;
                let tap = &mut row[kx * cin..(kx + 1) * cin];
                if ix < 0 || ix >= ind.w as isize {
                    fill_run(tap, zero);
                } else {
                    let at = ((b * ind.h + iy as usize) * ind.w + ix as usize) * cin;
                    copy_run(tap, &input[at..at + cin]);
                }
            }
        }
    }
}

/// The short runs of a column row (conv0: 9-value kernel rows, a 1-value pad) as fixed-size
/// array moves where the length is one of them. LLVM turns a byte loop into a call to
/// `memcpy` / `memset`, three or four calls per pixel: conv0 0.257 -> 0.225 ms at one thread
/// (Xeon family 6 model 167; a copy of the pixel loop per constant run length measured no
/// better, 0.238).
macro_rules! short_runs {
    ($dst:expr, [$($n:literal),*], |$d:ident| $body:expr, $otherwise:expr) => {
        match $dst.len() {
            $($n => {
                if let Ok($d) = <&mut [_; $n]>::try_from(&mut *$dst) {
                    $body
                }
            })*
            _ => $otherwise,
        }
    };
}

/// `dst = src` (equal lengths).
#[inline(always)]
pub(crate) fn copy_run<T: Copy>(dst: &mut [T], src: &[T]) {
    short_runs!(
        dst,
        [1, 2, 3, 4, 6, 8, 9, 12, 15, 16],
        |d| match <&[T; _]>::try_from(src) {
            Ok(s) => *d = *s,
            Err(_) => d.copy_from_slice(src),
        },
        dst.copy_from_slice(src)
    )
}

/// Every value of `dst` to `v`.
#[inline(always)]
pub(crate) fn fill_run<T: Copy>(dst: &mut [T], v: T) {
    short_runs!(dst, [0, 1, 2, 3, 4, 6, 8, 9, 12, 15, 16], |d| *d = [v; _], dst.fill(v))
}
