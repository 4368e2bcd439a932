//! Direct depthwise convolution, hand-vectorised across channels on NHWC.
//!
//! `out[b][oy][ox][c] = act(bias[c] + sum_{ky,kx} in[b][oy*s+ky-pt][ox*s+kx-pl][c] * w[c][ky][kx])`
//!
//! One body ([`rows`]) is written once over the [`Lanes`] operations; each ISA file
//! (`avx2.rs`, `avx512.rs`, `neon.rs`, `pulp.rs`, `wide.rs`) only defines those operations,
//! its register tile and the `#[target_feature]` entry points (`dwconv3x3_f32_avx2`, ...),
//! in the style of matrixmultiply's kernels.
//!
//! How the body works:
//! - **Weights** are packed at prepare as `[kh*kw][C']` with `C'` = C rounded up to 16 (the
//!   widest vector), zero-filled, and the bias as `[C']`, so weight and bias loads are always
//!   full vectors, even in the channel tail.
//! - **Vectorised across channels**: one vector holds `N` consecutive channels of one pixel.
//! - **Register tile**: the interior of each output row is walked in tiles of `R` output
//!   pixels (4 on AVX2, 8 on AVX-512 and NEON); for each kernel row the `K` weight vectors
//!   are loaded once and every input vector of the tile's receptive field once (at stride 1,
//!   `R + K - 1` loads feed `R * K` FMAs), so each loaded input is reused from a register by
//!   up to `K` outputs.
//! - **Borders without a padded copy**: kernel rows outside the image are skipped per output
//!   row; output columns whose taps cross the left or right edge go through a per-pixel path
//!   that checks each tap. For MobileNetV1 (padding 1) that is 2 pixels per row.
//! - **Channel tails**: masked loads and stores on AVX-512 (and AVX2's `vmaskmovps`),
//!   a remainder through a stack buffer on NEON and `wide`, pulp's partial loads in `pulp`.
//! - **Epilogue**: bias is the accumulator's initial value; the activation clamp
//!   (`min(max(x, lo), hi)`, NaN -> lo, as [`Activation::apply`]) is applied on the store.
//! - **Kernels**: 3x3 and 5x5 at stride 1 and 2 get the register-tiled interior; any other
//!   square or rectangular kernel up to 7x7 and any stride run every pixel through the
//!   checked per-pixel path (correct, about half the speed: two loads per FMA).
//! - **Threads**: `threads > 1` splits the output rows (over the batch too) into
//!   `2 * threads` contiguous chunks for rayon; `threads == 1` never touches rayon.

use rayon::prelude::*;

use crate::algo::{check_prepare, check_run, ConvAlgorithm, PreparedConv};
use crate::error::Result;
use crate::spec::{Activation, ConvSpec, Dims};
use crate::tensor::AlignedBuf;

#[cfg(all(feature = "avx2", target_arch = "x86_64"))]
pub mod avx2;
#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
pub mod avx512;
#[cfg(all(feature = "neon", target_arch = "aarch64"))]
pub mod neon;
#[cfg(feature = "pulp")]
pub mod pulp;
#[cfg(feature = "wide")]
pub mod wide;

/// Channel padding of the packed weights: the widest vector (AVX-512, 16 f32).
pub const CHANNEL_PAD: usize = 16;

/// The largest kernel side the direct family accepts (larger ones fall back to naive).
pub const MAX_KERNEL: usize = 7;

/// The vector operations a flavour provides; the convolution body is written once over them.
///
/// # Safety
///
/// Every method may use instructions of the flavour's ISA: callers must only reach them
/// from code that runs after [`crate::isa::available`] confirmed that ISA (the `supports()`
/// check of the algorithm). Pointer methods have the contract of `ptr::read`/`ptr::write`
/// on `N` f32s (`n` for the partial ones); no alignment is required.
pub(crate) trait Lanes: Copy {
    /// One vector of `N` f32 lanes.
    type V: Copy;
    /// Lanes per vector; divides [`CHANNEL_PAD`].
    const N: usize;
    unsafe fn load(self, p: *const f32) -> Self::V;
    /// Loads `n < N` f32s (the other lanes are zero) without touching memory past them.
    unsafe fn load_partial(self, p: *const f32, n: usize) -> Self::V;
    unsafe fn store(self, p: *mut f32, v: Self::V);
    /// Stores the first `n < N` lanes without touching memory past them.
    unsafe fn store_partial(self, p: *mut f32, v: Self::V, n: usize);
    unsafe fn splat(self, x: f32) -> Self::V;
    /// `a * b + c`.
    unsafe fn fma(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `max(x, lo)` with x86 `maxps` semantics: a NaN `x` gives `lo`.
    unsafe fn max(self, x: Self::V, lo: Self::V) -> Self::V;
    /// `min(x, hi)`; `x` is never NaN here (it went through `max` first).
    unsafe fn min(self, x: Self::V, hi: Self::V) -> Self::V;
}

/// Everything one run needs, borrowed from the prepared layer and the caller.
pub(crate) struct Job<'a> {
    pub input: &'a [f32],
    pub in_dims: Dims,
    pub out_dims: Dims,
    /// `[kh * kw][cpad]`.
    pub weights: &'a [f32],
    /// `[cpad]`.
    pub bias: &'a [f32],
    pub cpad: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub pt: usize,
    pub pl: usize,
    pub lo: f32,
    pub hi: f32,
    /// Whether to clamp at all (`Activation::None` passes NaN through, so it skips the clamp).
    pub clamp: bool,
}

/// The epilogue's constants, splatted once per call.
#[derive(Clone, Copy)]
struct Epi<V> {
    lo: V,
    hi: V,
    clamp: bool,
}

impl<V: Copy> Epi<V> {
    #[inline(always)]
    unsafe fn apply<O: Lanes<V = V>>(self, o: O, x: V) -> V {
        if self.clamp {
            // SAFETY: forwarded from the caller (the ISA is available).
            unsafe { o.min(o.max(x, self.lo), self.hi) }
        } else {
            x
        }
    }
}

/// Computes output rows `first_row..first_row + out.len() / (ow * c)` (rows counted over
/// the batch: row `g` is image `g / oh`, row `g % oh`) into `out`.
///
/// `K` is the square kernel side with a register-tiled interior (3 or 5), or 0 for the
/// per-pixel path only; `R` the flavour's register tile width.
///
/// # Safety
///
/// The flavour's ISA must be available. `job` must be consistent: `input` holds
/// `in_dims.len()` f32s, `weights` `kh * kw * cpad`, `bias` `cpad`, `cpad` a multiple of
/// `O::N` and `>= c`, `out_dims` the spec's output dims for `in_dims`, `K` either 0 or equal
/// to `kh` and `kw`, and `out` a whole number of output rows that exist.
#[inline(always)]
pub(crate) unsafe fn rows<O: Lanes, const K: usize, const R: usize, const RB: usize>(
    o: O,
    job: &Job,
    first_row: usize,
    out: &mut [f32],
) {
    // SAFETY (all calls below): forwarded from this function's contract.
    unsafe {
        match (K, job.sh, job.sw) {
            (3, 1, 1) => rows_with::<O, 3, 1, R, RB>(o, job, first_row, out),
            (3, 2, 2) => rows_with::<O, 3, 2, R, RB>(o, job, first_row, out),
            (5, 1, 1) => rows_with::<O, 5, 1, R, RB>(o, job, first_row, out),
            (5, 2, 2) => rows_with::<O, 5, 2, R, RB>(o, job, first_row, out),
            _ => rows_with::<O, 0, 0, R, RB>(o, job, first_row, out),
        }
    }
}

/// The first and one-past-last output column whose `kw` taps all fall inside `0..iw`.
fn interior_columns(ow: usize, iw: usize, kw: usize, sw: usize, pl: usize) -> (usize, usize) {
    let x0 = pl.div_ceil(sw).min(ow);
    let x1 = if iw + pl >= kw { ((iw + pl - kw) / sw + 1).min(ow) } else { 0 };
    (x0, x1.max(x0))
}

#[inline(always)]
unsafe fn rows_with<O: Lanes, const K: usize, const S: usize, const R: usize, const RB: usize>(
    o: O,
    job: &Job,
    first_row: usize,
    out: &mut [f32],
) {
    let Dims { h: ih, w: iw, c, .. } = job.in_dims;
    let Dims { h: oh, w: ow, .. } = job.out_dims;
    let (kh, kw, cpad) = (job.kh, job.kw, job.cpad);
    let row_len = ow * c;
    let c_full = c - c % O::N;
    let tail = c - c_full;
    // SAFETY: the ISA is available (contract).
    let epi = unsafe { Epi { lo: o.splat(job.lo), hi: o.splat(job.hi), clamp: job.clamp } };
    // Columns that take the register-tiled path; the others check each tap.
    let (x0, x1) = if K == 0 { (ow, ow) } else { interior_columns(ow, iw, kw, S, job.pl) };
    let in_ptr = job.input.as_ptr();
    let w_ptr = job.weights.as_ptr();
    let b_ptr = job.bias.as_ptr();
    for (i, orow) in out.chunks_exact_mut(row_len).enumerate() {
        let g = first_row + i;
        let (b, oy) = (g / oh, g % oh);
        let iy0 = (oy * job.sh) as isize - job.pt as isize;
        // Kernel rows inside the image: ky0..ky1.
        let ky0 = (-iy0).max(0) as usize;
        let ky1 = (ih as isize - iy0).clamp(ky0 as isize, kh as isize) as usize;
        let img = b * ih * iw * c;
        let dst_row = orow.as_mut_ptr();
        // Closures are not used for the pixel calls: a closure does not inherit the
        // caller's `#[target_feature]`s, so LLVM would not inline the intrinsics into it.
        // SAFETY (both edge loops): `ox < ow`, rows ky0..ky1 are inside the image, the pixel
        // path checks each column, and `dst_row` holds `ow * c` f32s.
        for ox in 0..x0 {
            unsafe {
                pixel(o, job, in_ptr.add(img), iy0, ky0, ky1, ox, dst_row.add(ox * c), c_full, tail, epi)
            }
        }
        if K != 0 {
            // Input offset of tap (ky0, 0) for output column 0 (may be "negative" columns
            // for ox < x0; only columns >= x0 are dereferenced, where it is in range).
            let src_row = img as isize + ((iy0 + ky0 as isize) * iw as isize - job.pl as isize) * c as isize;
            let w_row = ky0 * K * cpad;
            let kyn = ky1 - ky0;
            let mut ox = x0;
            // SAFETY (the three loops): columns ox..ox+T are interior (< x1), so every tap
            // of rows ky0..ky1 is inside the image; `dst_row` holds `ow * c` f32s.
            unsafe {
                let at = |ox: usize| in_ptr.offset(src_row + (ox * S * c) as isize);
                // One call shape: a tile of `T` pixels x `TB` channel blocks at column `ox`.
                macro_rules! tiles_at {
                    ($t:tt, $tb:tt, $ox:expr) => {
                        tile_channels::<O, K, S, $t, $tb>(
                            o,
                            job,
                            at($ox),
                            w_ptr.add(w_row),
                            b_ptr,
                            kyn,
                            dst_row.add($ox * c),
                            c_full,
                            tail,
                            epi,
                        )
                    };
                }
                while ox + R <= x1 {
                    tiles_at!(R, RB, ox);
                    ox += R;
                }
                if R > 4 {
                    while ox + 4 <= x1 {
                        tiles_at!(4, 1, ox);
                        ox += 4;
                    }
                }
                while ox < x1 {
                    tiles_at!(1, 4, ox);
                    ox += 1;
                }
            }
        }
        for ox in x1..ow {
            unsafe {
                pixel(o, job, in_ptr.add(img), iy0, ky0, ky1, ox, dst_row.add(ox * c), c_full, tail, epi)
            }
        }
    }
}

/// `T` adjacent interior output pixels, every channel block.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_channels<O: Lanes, const K: usize, const S: usize, const T: usize, const TB: usize>(
    o: O,
    job: &Job,
    src: *const f32,
    w: *const f32,
    bias: *const f32,
    kyn: usize,
    dst: *mut f32,
    c_full: usize,
    tail: usize,
    epi: Epi<O::V>,
) {
    let c = job.in_dims.c;
    let row_stride = job.in_dims.w * c;
    let mut cb = 0;
    // One call shape, `B` channel blocks with or without the `TAIL` of `n` lanes, at `cb`.
    macro_rules! tile_at {
        ($b:tt, $tail:tt, $n:expr) => {
            tile::<O, K, S, T, $b, $tail>(
                o,
                src.add(cb),
                row_stride,
                c,
                w.add(cb),
                job.cpad,
                bias.add(cb),
                kyn,
                dst.add(cb),
                $n,
                epi,
            )
        };
    }
    // SAFETY: channel blocks cb..cb+N stay below c_full <= c (tail: n lanes); weights and
    // bias are padded to cpad >= c_full + N.
    unsafe {
        // `TB` channel blocks at once (4 for single pixels, 2 for AVX2's 4-pixel tile), so
        // that `T * TB` independent FMA chains hide the FMA latency (4 cycles on Zen 4).
        if TB > 1 {
            while cb + TB * O::N <= c_full {
                tile_at!(TB, false, 0);
                cb += TB * O::N;
            }
        }
        while cb < c_full {
            tile_at!(1, false, 0);
            cb += O::N;
        }
        if tail != 0 {
            tile_at!(1, true, tail);
        }
    }
}

/// The register tile: `T` output pixels times `B` channel blocks of `N` lanes (`T * B`
/// independent accumulators), the `K` weights of a kernel row in registers, each input
/// vector loaded once per kernel row (LLVM merges the repeated loads of the unrolled loops).
/// `TAIL` (only with `B == 1`): `n < N` channels, masked or partial loads and stores.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<O: Lanes, const K: usize, const S: usize, const T: usize, const B: usize, const TAIL: bool>(
    o: O,
    src: *const f32,
    row_stride: usize,
    c: usize,
    w: *const f32,
    cpad: usize,
    bias: *const f32,
    kyn: usize,
    dst: *mut f32,
    n: usize,
    epi: Epi<O::V>,
) {
    // SAFETY: the caller guarantees the ISA and that every tap of the tile is in bounds.
    unsafe {
        let mut acc = [[o.load(bias); B]; T];
        for a in acc.iter_mut() {
            for (j, aj) in a.iter_mut().enumerate() {
                *aj = o.load(bias.add(j * O::N));
            }
        }
        for ky in 0..kyn {
            let row = src.add(ky * row_stride);
            let wr = w.add(ky * K * cpad);
            for j in 0..B {
                let mut wv = [acc[0][0]; K];
                for (kx, wk) in wv.iter_mut().enumerate() {
                    *wk = o.load(wr.add(kx * cpad + j * O::N));
                }
                for (r, a) in acc.iter_mut().enumerate() {
                    for (kx, &wk) in wv.iter().enumerate() {
                        let p = row.add((r * S + kx) * c + j * O::N);
                        let x = if TAIL { o.load_partial(p, n) } else { o.load(p) };
                        a[j] = o.fma(wk, x, a[j]);
                    }
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            for (j, &v) in a.iter().enumerate() {
                let v = epi.apply(o, v);
                let d = dst.add(r * c + j * O::N);
                if TAIL {
                    o.store_partial(d, v, n)
                } else {
                    o.store(d, v)
                }
            }
        }
    }
}

/// One output pixel whose taps may cross the image edge: every tap is checked.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn pixel<O: Lanes>(
    o: O,
    job: &Job,
    img: *const f32,
    iy0: isize,
    ky0: usize,
    ky1: usize,
    ox: usize,
    dst: *mut f32,
    c_full: usize,
    tail: usize,
    epi: Epi<O::V>,
) {
    let Dims { w: iw, c, .. } = job.in_dims;
    let (kw, cpad) = (job.kw, job.cpad);
    let ix0 = (ox * job.sw) as isize - job.pl as isize;
    let kx0 = (-ix0).max(0) as usize;
    let kx1 = (iw as isize - ix0).clamp(kx0 as isize, kw as isize) as usize;
    // Tap (ky0, 0): left of the row start when ix0 < 0, so computed with wrapping arithmetic
    // and only dereferenced at the checked taps kx0..kx1.
    let row0 = img.wrapping_offset((iy0 + ky0 as isize) * (iw * c) as isize + ix0 * c as isize);
    let w0 = job.weights.as_ptr().wrapping_add(ky0 * kw * cpad);
    let bias = job.bias.as_ptr();
    let mut cb = 0;
    // One call shape, `B` channel blocks with or without the `TAIL` of `n` lanes, at `cb`.
    macro_rules! block_at {
        ($b:tt, $tail:tt, $n:expr) => {
            pixel_block::<O, $b, $tail>(
                o,
                row0.wrapping_add(cb),
                iw * c,
                c,
                w0.add(cb),
                kw,
                cpad,
                bias.add(cb),
                ky1 - ky0,
                kx0,
                kx1,
                dst.add(cb),
                $n,
                epi,
            )
        };
    }
    // SAFETY: taps (ky0..ky1, kx0..kx1) are inside the image, channels cb..cb+N (`tail` in
    // the last block) inside the pixel, weights and bias padded to cpad.
    unsafe {
        // 4 channel blocks at once: 4 independent FMA chains instead of one (a single chain
        // of K*K dependent FMAs runs at a quarter of the FMA throughput on Zen 4).
        while cb + 4 * O::N <= c_full {
            block_at!(4, false, 0);
            cb += 4 * O::N;
        }
        while cb < c_full {
            block_at!(1, false, 0);
            cb += O::N;
        }
        if tail != 0 {
            block_at!(1, true, tail);
        }
    }
}

/// `B` channel blocks of one checked pixel: taps `(0..kyn) x (kx0..kx1)` from `src` (tap
/// (0, 0) of the block, possibly outside the image for skipped taps, never dereferenced).
/// `TAIL` (only with `B == 1`): `n < N` channels.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn pixel_block<O: Lanes, const B: usize, const TAIL: bool>(
    o: O,
    src: *const f32,
    row_stride: usize,
    c: usize,
    w: *const f32,
    kw: usize,
    cpad: usize,
    bias: *const f32,
    kyn: usize,
    kx0: usize,
    kx1: usize,
    dst: *mut f32,
    n: usize,
    epi: Epi<O::V>,
) {
    // SAFETY: the caller guarantees the ISA and that taps (0..kyn, kx0..kx1) are in bounds.
    unsafe {
        let mut acc = [o.load(bias); B];
        for (j, a) in acc.iter_mut().enumerate() {
            *a = o.load(bias.add(j * O::N));
        }
        for ky in 0..kyn {
            for kx in kx0..kx1 {
                for (j, a) in acc.iter_mut().enumerate() {
                    let wv = o.load(w.add((ky * kw + kx) * cpad + j * O::N));
                    let p = src.wrapping_add(ky * row_stride + kx * c + j * O::N);
                    let x = if TAIL { o.load_partial(p, n) } else { o.load(p) };
                    *a = o.fma(wv, x, *a);
                }
            }
        }
        for (j, &a) in acc.iter().enumerate() {
            let v = epi.apply(o, a);
            if TAIL {
                o.store_partial(dst.add(j * O::N), v, n)
            } else {
                o.store(dst.add(j * O::N), v)
            }
        }
    }
}

/// Whether the direct family handles `spec`: depthwise (`groups == in == out`), no
/// dilation, kernel sides up to [`MAX_KERNEL`], padding smaller than the kernel on every side.
pub fn supports_shape(spec: &ConvSpec) -> bool {
    let p = spec.padding;
    spec.validate().is_ok()
        && spec.is_depthwise()
        && spec.is_undilated()
        && (1..=MAX_KERNEL).contains(&spec.kernel_h)
        && (1..=MAX_KERNEL).contains(&spec.kernel_w)
        && p.top < spec.kernel_h
        && p.bottom < spec.kernel_h
        && p.left < spec.kernel_w
        && p.right < spec.kernel_w
}

/// A flavour's row function: safe to call once the prepared layer exists, because
/// [`prepare`] refuses to build one unless the flavour's ISA is available.
pub(crate) type RowsFn = fn(job: &Job, first_row: usize, out: &mut [f32]);

/// A depthwise layer packed for one flavour.
struct DwPrepared {
    spec: ConvSpec,
    name: &'static str,
    activation: Activation,
    weights: AlignedBuf,
    bias: AlignedBuf,
    cpad: usize,
    rows: RowsFn,
}

/// Packs OIHW depthwise weights `[C][1][kh][kw]` as `[kh*kw][cpad]` (zero-padded).
fn pack_weights(spec: &ConvSpec, weights_oihw: &[f32], cpad: usize) -> Result<AlignedBuf> {
    let taps = spec.kernel_h * spec.kernel_w;
    let mut packed = AlignedBuf::zeros(taps * cpad)?;
    for ch in 0..spec.out_channels {
        for t in 0..taps {
            packed[t * cpad + ch] = weights_oihw[ch * taps + t];
        }
    }
    Ok(packed)
}

/// The shared `prepare` of every direct flavour.
pub(crate) fn prepare(
    algo: &dyn ConvAlgorithm,
    rows: RowsFn,
    spec: &ConvSpec,
    weights_oihw: &[f32],
    bias: Option<&[f32]>,
    activation: Activation,
) -> Result<Box<dyn PreparedConv>> {
    check_prepare(algo, spec, weights_oihw, bias, activation)?;
    let cpad = spec.out_channels.div_ceil(CHANNEL_PAD) * CHANNEL_PAD;
    let mut packed_bias = AlignedBuf::zeros(cpad)?;
    if let Some(b) = bias {
        packed_bias[..b.len()].copy_from_slice(b);
    }
    Ok(Box::new(DwPrepared {
        spec: *spec,
        name: algo.name(),
        activation,
        weights: pack_weights(spec, weights_oihw, cpad)?,
        bias: packed_bias,
        cpad,
        rows,
    }))
}

impl PreparedConv for DwPrepared {
    fn spec(&self) -> &ConvSpec {
        &self.spec
    }
    fn algorithm(&self) -> &'static str {
        self.name
    }
    fn run(
        &self,
        input: &[f32],
        in_dims: Dims,
        output: &mut [f32],
        scratch: &mut [f32],
        threads: usize,
    ) -> Result<()> {
        let out_dims = check_run(&self.spec, input, in_dims, output, scratch, 0)?;
        let (lo, hi) = self.activation.bounds();
        let job = Job {
            input,
            in_dims,
            out_dims,
            weights: &self.weights,
            bias: &self.bias,
            cpad: self.cpad,
            kh: self.spec.kernel_h,
            kw: self.spec.kernel_w,
            sh: self.spec.stride_h,
            sw: self.spec.stride_w,
            pt: self.spec.padding.top,
            pl: self.spec.padding.left,
            lo,
            hi,
            clamp: self.activation != Activation::None,
        };
        let total_rows = out_dims.n * out_dims.h;
        let row_len = out_dims.w * out_dims.c;
        if threads <= 1 || total_rows < 2 {
            (self.rows)(&job, 0, output);
        } else {
            // Two chunks per thread: rows cost the same, but the machine is shared and noisy,
            // so a little slack lets rayon rebalance.
            let chunk_rows = total_rows.div_ceil(2 * threads);
            output.par_chunks_mut(chunk_rows * row_len).enumerate().for_each(|(i, chunk)| {
                (self.rows)(&job, i * chunk_rows, chunk);
            });
        }
        Ok(())
    }
}

/// Declares one direct-depthwise algorithm: a unit struct whose `prepare` packs weights and
/// runs `$rows` (the flavour's safe row function).
macro_rules! direct_algorithm {
    ($(#[$doc:meta])* $name:ident, $id:literal, $flavour:literal, $isa:expr, $rows:path) => {
        $(#[$doc])*
        pub struct $name;

        impl $crate::algo::ConvAlgorithm for $name {
            fn name(&self) -> &'static str {
                $id
            }
            fn family(&self) -> &'static str {
                "direct"
            }
            fn flavour(&self) -> &'static str {
                $flavour
            }
            fn isa(&self) -> $crate::isa::Isa {
                $isa
            }
            fn supports(&self, spec: &$crate::spec::ConvSpec) -> bool {
                $crate::isa::available(self.isa()) && $crate::direct::supports_shape(spec)
            }
            fn prepare(
                &self,
                spec: &$crate::spec::ConvSpec,
                weights_oihw: &[f32],
                bias: Option<&[f32]>,
                activation: $crate::spec::Activation,
            ) -> $crate::error::Result<Box<dyn $crate::algo::PreparedConv>> {
                $crate::direct::prepare(self, $rows, spec, weights_oihw, bias, activation)
            }
        }
    };
}
pub(crate) use direct_algorithm;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interior_columns_match_a_brute_force_count() {
        for iw in 1..12 {
            for kw in 1..=5 {
                for sw in 1..=3 {
                    for pl in 0..kw {
                        for pr in 0..kw {
                            if iw + pl + pr < kw {
                                continue;
                            }
                            let ow = (iw + pl + pr - kw) / sw + 1;
                            let inside = |ox: usize| {
                                let ix = (ox * sw) as isize - pl as isize;
                                ix >= 0 && ix + kw as isize <= iw as isize
                            };
                            let (x0, x1) = interior_columns(ow, iw, kw, sw, pl);
                            for ox in 0..ow {
                                assert_eq!(
                                    (x0..x1).contains(&ox),
                                    inside(ox),
                                    "iw {iw} kw {kw} s {sw} pl {pl} ox {ox}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn packing_is_tap_major_and_zero_padded() {
        let spec = ConvSpec::depthwise(3, 3, 1, 1);
        let w: Vec<f32> = (0..27).map(|i| i as f32).collect();
        let p = pack_weights(&spec, &w, 16).unwrap();
        assert_eq!(p.len(), 9 * 16);
        assert_eq!(p[0], 0.0);
        assert_eq!(p[1], 9.0);
        assert_eq!(p[16 + 2], 19.0);
        assert_eq!(p[3], 0.0);
    }
}
