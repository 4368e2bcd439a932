//! The one body of every direct depthwise kernel, written over [`Simd`] (see the module
//! docs of `direct` for how it works).

use crate::simd::{Clamp, ClampV, Element, Simd};
use crate::spec::Dims;

/// Everything one run needs, borrowed from the prepared layer and the caller. Activations
/// are stored as `E` (widened on load, narrowed on store); weights and bias are f32 (already
/// rounded to `E`'s precision at prepare).
pub(crate) struct DwArgs<'a, E> {
    pub input: &'a [E],
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
    pub clamp: Clamp,
}

/// The strides the register tiles step by, in f32s: an input row (`row`), a pixel (`c`
/// channels), a packed weight tap (`cpad`), and the kernel width `kw` (taps per weight row).
#[derive(Clone, Copy)]
struct Strides {
    row: usize,
    c: usize,
    cpad: usize,
    kw: usize,
}

impl<E> DwArgs<'_, E> {
    fn strides(&self) -> Strides {
        let c = self.in_dims.c;
        Strides { row: self.in_dims.w * c, c, cpad: self.cpad, kw: self.kw }
    }
}

/// The fewest channels for which a 16-lane, 32-register backend (AVX-512) walks the
/// interior in 4-pixel tiles of two channel blocks instead of 8-pixel tiles of one (see
/// `rows_with`).
const TWO_BLOCK_MIN_CHANNELS: usize = 64;

/// Computes output rows `first_row..first_row + out.len() / (ow * c)` (rows counted over
/// the batch: row `g` is image `g / oh`, row `g % oh`) into `out`.
///
/// `K` is the square kernel side with a register-tiled interior (3 or 5), or 0 for the
/// per-pixel path only; `R` the register tile width (output pixels).
///
/// # Safety
///
/// `job` must be consistent: `input` holds
/// `in_dims.len()` f32s, `weights` `kh * kw * cpad`, `bias` `cpad`, `cpad` a multiple of
/// `S::LANES` and `>= c`, `out_dims` the spec's output dims for `in_dims`, `K` either 0 or equal
/// to `kh` and `kw`, and `out` a whole number of output rows that exist.
#[inline(always)]
pub(crate) unsafe fn rows<S: Simd, E: Element, const K: usize, const R: usize>(
    s: S,
    job: &DwArgs<E>,
    first_row: usize,
    out: &mut [E],
) {
    // SAFETY: (all calls below) forwarded from this function's contract.
    unsafe {
        match (K, job.sh, job.sw) {
            (3, 1, 1) => rows_with::<S, E, 3, 1, R>(s, job, first_row, out),
            (3, 2, 2) => rows_with::<S, E, 3, 2, R>(s, job, first_row, out),
            (5, 1, 1) => rows_with::<S, E, 5, 1, R>(s, job, first_row, out),
            (5, 2, 2) => rows_with::<S, E, 5, 2, R>(s, job, first_row, out),
            _ => rows_with::<S, E, 0, 0, R>(s, job, first_row, out),
        }
    }
}

/// The first and one-past-last output column whose `kw` taps all fall inside `0..iw`.
pub(crate) fn interior_columns(ow: usize, iw: usize, kw: usize, sw: usize, pl: usize) -> (usize, usize) {
    let x0 = pl.div_ceil(sw).min(ow);
    let x1 = if iw + pl >= kw { ((iw + pl - kw) / sw + 1).min(ow) } else { 0 };
    (x0, x1.max(x0))
}

#[inline(always)]
unsafe fn rows_with<S: Simd, E: Element, const K: usize, const ST: usize, const R: usize>(
    s: S,
    job: &DwArgs<E>,
    first_row: usize,
    out: &mut [E],
) {
    let Dims { h: ih, w: iw, c, .. } = job.in_dims;
    let Dims { h: oh, w: ow, .. } = job.out_dims;
    let (kh, kw, cpad) = (job.kh, job.kw, job.cpad);
    let row_len = ow * c;
    let c_full = c - c % S::LANES;
    let tail = c - c_full;
    let clamp = job.clamp.splat(s);
    // Columns that take the register-tiled path; the others check each tap.
    let (x0, x1) = if K == 0 { (ow, ow) } else { interior_columns(ow, iw, kw, ST, job.pl) };
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
        // (Both edge loops) `ox < ow`, rows ky0..ky1 are inside the image, the pixel path
        // checks each column, and `dst_row` holds `ow * c` f32s.
        for ox in 0..x0 {
            // SAFETY: see the comment above the loop.
            unsafe {
                pixel(
                    s,
                    job,
                    in_ptr.add(img),
                    iy0,
                    (ky0, ky1),
                    ox,
                    dst_row.add(ox * c),
                    (c_full, tail),
                    clamp,
                )
            }
        }
        if K != 0 {
            // Input offset of tap (ky0, 0) for output column 0 (may be "negative" columns
            // for ox < x0; only columns >= x0 are dereferenced, where it is in range).
            let src_row = img as isize + ((iy0 + ky0 as isize) * iw as isize - job.pl as isize) * c as isize;
            let w_row = ky0 * K * cpad;
            let kyn = ky1 - ky0;
            let mut ox = x0;
            // SAFETY: (the three loops) columns ox..ox+T are interior (< x1), so every tap
            // of rows ky0..ky1 is inside the image; `dst_row` holds `ow * c` f32s.
            unsafe {
                let at = |ox: usize| in_ptr.offset(src_row + (ox * ST * c) as isize);
                // One call shape: a tile of `T` pixels x `TB` channel blocks at column `ox`.
                macro_rules! tiles_at {
                    ($t:tt, $tb:tt, $ox:expr) => {
                        tile_channels::<S, E, K, ST, $t, $tb>(
                            s,
                            job,
                            at($ox),
                            w_ptr.add(w_row),
                            b_ptr,
                            kyn,
                            dst_row.add($ox * c),
                            (c_full, tail),
                            clamp,
                        )
                    };
                }
                // On AVX-512, 4 pixels x 2 channel blocks (8 accumulators, as the 8 x 1
                // tile) from 64 channels on: per-layer ratio 4x2 / 8x1 on the Zen 5 (EPYC
                // 26/2, f32, one thread, 8 alternating rounds of `mobilenet bench`): dw2
                // 0.82, dw4 0.87, dw5 0.91, dw6 0.87, dw7..dw11 0.87-0.93, dw12 / dw13 0.95,
                // dw3 0.97; on dw1 (32 channels) 4x2 took 1.25-1.28x (two runs), so it keeps
                // 8 x 1. NEON (32 registers, 4 lanes) keeps 8 x 1: not timed.
                if R > 4 && S::LANES == 16 && c >= TWO_BLOCK_MIN_CHANNELS {
                    while ox + 4 <= x1 {
                        tiles_at!(4, 2, ox);
                        ox += 4;
                    }
                }
                while ox + R <= x1 {
                    tiles_at!(R, 1, ox);
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
            // SAFETY: as the left edge loop.
            unsafe {
                pixel(
                    s,
                    job,
                    in_ptr.add(img),
                    iy0,
                    (ky0, ky1),
                    ox,
                    dst_row.add(ox * c),
                    (c_full, tail),
                    clamp,
                )
            }
        }
    }
}

/// `T` adjacent interior output pixels, every channel block.
///
/// # Safety
/// Every tap of the `T` pixels in kernel rows `0..kyn` from `src` is inside the input; `dst`
/// holds `T` pixels; `(c_full, tail)` split the channels into whole vectors and a tail.
#[inline(always)]
// Kernel entries: every argument is a pointer, a stride or a count the loop needs in a
// register; a struct of them would be unpacked on entry anyway.
#[allow(clippy::too_many_arguments)]
unsafe fn tile_channels<
    S: Simd,
    E: Element,
    const K: usize,
    const ST: usize,
    const T: usize,
    const TB: usize,
>(
    s: S,
    job: &DwArgs<E>,
    src: *const E,
    w: *const f32,
    bias: *const f32,
    kyn: usize,
    dst: *mut E,
    (c_full, tail): (usize, usize),
    clamp: ClampV<S>,
) {
    let st = job.strides();
    let mut cb = 0;
    // One call shape, `B` channel blocks with or without the `TAIL` of `n` lanes, at `cb`.
    macro_rules! tile_at {
        ($b:tt, $tail:tt, $n:expr) => {
            tile::<S, E, K, ST, T, $b, $tail>(
                s,
                src.add(cb),
                st,
                w.add(cb),
                bias.add(cb),
                kyn,
                dst.add(cb),
                $n,
                clamp,
            )
        };
    }
    // SAFETY: channel blocks cb..cb+N stay below c_full <= c (tail: n lanes); weights and
    // bias are padded to cpad >= c_full + N.
    unsafe {
        // `TB` channel blocks at once (4 for single pixels, 2 for AVX2's 4-pixel tile), so
        // that `T * TB` independent FMA chains hide the FMA latency (4 cycles on Zen 4).
        if TB > 1 {
            while cb + TB * S::LANES <= c_full {
                tile_at!(TB, false, 0);
                cb += TB * S::LANES;
            }
        }
        while cb < c_full {
            tile_at!(1, false, 0);
            cb += S::LANES;
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
///
/// # Safety
/// As [`tile_channels`], for `B` channel blocks (`n` lanes of one with `TAIL`).
#[inline(always)]
// Kernel entries: every argument is a pointer, a stride or a count the loop needs in a
// register; a struct of them would be unpacked on entry anyway.
#[allow(clippy::too_many_arguments)]
unsafe fn tile<
    S: Simd,
    E: Element,
    const K: usize,
    const ST: usize,
    const T: usize,
    const B: usize,
    const TAIL: bool,
>(
    s: S,
    src: *const E,
    st: Strides,
    w: *const f32,
    bias: *const f32,
    kyn: usize,
    dst: *mut E,
    n: usize,
    clamp: ClampV<S>,
) {
    // SAFETY: the caller guarantees the ISA and that every tap of the tile is in bounds.
    unsafe {
        let mut acc = [[s.load(bias); B]; T];
        for a in acc.iter_mut() {
            for (j, aj) in a.iter_mut().enumerate() {
                *aj = s.load(bias.add(j * S::LANES));
            }
        }
        for ky in 0..kyn {
            let (c, cpad) = (st.c, st.cpad);
            let row = src.add(ky * st.row);
            let wr = w.add(ky * K * cpad);
            for j in 0..B {
                let mut wv = [acc[0][0]; K];
                for (kx, wk) in wv.iter_mut().enumerate() {
                    *wk = s.load(wr.add(kx * cpad + j * S::LANES));
                }
                for (r, a) in acc.iter_mut().enumerate() {
                    for (kx, &wk) in wv.iter().enumerate() {
                        let p = row.add((r * ST + kx) * c + j * S::LANES);
                        let x = if TAIL { E::load_partial(s, p, n) } else { E::load(s, p) };
                        a[j] = s.fma(wk, x, a[j]);
                    }
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            for (j, &v) in a.iter().enumerate() {
                let v = clamp.apply(s, v);
                let d = dst.add(r * st.c + j * S::LANES);
                if TAIL {
                    E::store_partial(s, d, v, n)
                } else {
                    E::store(s, d, v)
                }
            }
        }
    }
}

/// One output pixel whose taps may cross the image edge: every tap is checked.
///
/// # Safety
/// `img` is the pixel's image, kernel rows `ky0..ky1` from input row `iy0` are inside it,
/// `ox` is an output column and `dst` holds its `c` channels.
#[inline(always)]
// Kernel entries: every argument is a pointer, a stride or a count the loop needs in a
// register; a struct of them would be unpacked on entry anyway.
#[allow(clippy::too_many_arguments)]
unsafe fn pixel<S: Simd, E: Element>(
    s: S,
    job: &DwArgs<E>,
    img: *const E,
    iy0: isize,
    (ky0, ky1): (usize, usize),
    ox: usize,
    dst: *mut E,
    (c_full, tail): (usize, usize),
    clamp: ClampV<S>,
) {
    let Dims { w: iw, c, .. } = job.in_dims;
    let st = job.strides();
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
            pixel_block::<S, E, $b, $tail>(
                s,
                row0.wrapping_add(cb),
                st,
                w0.add(cb),
                bias.add(cb),
                (ky1 - ky0, kx0, kx1),
                dst.add(cb),
                $n,
                clamp,
            )
        };
    }
    // SAFETY: taps (ky0..ky1, kx0..kx1) are inside the image, channels cb..cb+N (`tail` in
    // the last block) inside the pixel, weights and bias padded to cpad.
    unsafe {
        // 4 channel blocks at once: 4 independent FMA chains instead of one (a single chain
        // of K*K dependent FMAs runs at a quarter of the FMA throughput on Zen 4).
        while cb + 4 * S::LANES <= c_full {
            block_at!(4, false, 0);
            cb += 4 * S::LANES;
        }
        while cb < c_full {
            block_at!(1, false, 0);
            cb += S::LANES;
        }
        if tail != 0 {
            block_at!(1, true, tail);
        }
    }
}

/// `B` channel blocks of one checked pixel: taps `(0..kyn) x (kx0..kx1)` from `src` (tap
/// (0, 0) of the block, possibly outside the image for skipped taps, never dereferenced).
/// `TAIL` (only with `B == 1`): `n < N` channels.
///
/// # Safety
/// Taps `(0..kyn) x (kx0..kx1)` from `src` are inside the input, `dst` holds the blocks.
#[inline(always)]
// Kernel entries: every argument is a pointer, a stride or a count the loop needs in a
// register; a struct of them would be unpacked on entry anyway.
#[allow(clippy::too_many_arguments)]
unsafe fn pixel_block<S: Simd, E: Element, const B: usize, const TAIL: bool>(
    s: S,
    src: *const E,
    st: Strides,
    w: *const f32,
    bias: *const f32,
    (kyn, kx0, kx1): (usize, usize, usize),
    dst: *mut E,
    n: usize,
    clamp: ClampV<S>,
) {
    // SAFETY: the caller guarantees the ISA and that taps (0..kyn, kx0..kx1) are in bounds.
    unsafe {
        let mut acc = [s.load(bias); B];
        for (j, a) in acc.iter_mut().enumerate() {
            *a = s.load(bias.add(j * S::LANES));
        }
        for ky in 0..kyn {
            for kx in kx0..kx1 {
                for (j, a) in acc.iter_mut().enumerate() {
                    let wv = s.load(w.add((ky * st.kw + kx) * st.cpad + j * S::LANES));
                    let p = src.wrapping_add(ky * st.row + kx * st.c + j * S::LANES);
                    let x = if TAIL { E::load_partial(s, p, n) } else { E::load(s, p) };
                    *a = s.fma(wv, x, *a);
                }
            }
        }
        for (j, &a) in acc.iter().enumerate() {
            let v = clamp.apply(s, a);
            if TAIL {
                E::store_partial(s, dst.add(j * S::LANES), v, n)
            } else {
                E::store(s, dst.add(j * S::LANES), v)
            }
        }
    }
}
