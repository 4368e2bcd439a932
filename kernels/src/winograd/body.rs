//! The one body of every Winograd kernel, written once over [`Simd`] (vectors across
//! channels on NHWC) and run under every implementation of the backend table; the channel
//! tail runs the same body under [`Scalar`].
//!
//! Dense, per band of output tile rows (all in the caller's scratch, no allocation):
//! 1. input transform: `V[p][tile][ci] = (B^T d B)[p]`, vectorised across `ci`;
//! 2. per transform point `p` (`a^2` of them) one GEMM `M[p] = V[p] (tiles x Cin) * U[p]
//!    (Cin x Cout)` with a broadcast-A register-tile kernel of `MR` tiles x `NV` vectors;
//! 3. output transform `Y = A^T M A`, + bias, clamp, stored only where the tile lies inside
//!    the output (partial tiles at the right and bottom borders).
//!
//! Depthwise fuses all three per tile and channel vector: the product is elementwise.
//!
//! **NaN and infinities.** A transform mixes every input of a tile, so one NaN or infinity
//! makes NaN of outputs whose window never saw it (`inf - inf`, `inf * 0`), where a direct
//! convolution gives a finite value, or an infinity where it gives NaN... The store checks
//! each output vector for NaN before the clamp (two vector ops per output, one test per
//! tile); a tile that has one is recomputed directly from the input and the untransformed
//! weights ([`direct_outputs`]), which gives what the naive oracle gives: the same NaN or
//! infinity where the window holds one, the sum where it does not.

use super::transforms::Transform;
use crate::simd::{Clamp, Scalar, Simd};

/// Where tiles sit in one image.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub in_h: usize,
    pub in_w: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub tiles_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

/// The dense layer's packed state: `u[p][panel][ci][nr]` with `Cout` padded to `cout_pad`
/// (a multiple of the kernel's panel width `nr`), bias padded with zeros; `w` the OIHW
/// weights for the direct recomputation of non-finite tiles.
pub(crate) struct DensePlan {
    pub cin: usize,
    pub cout: usize,
    pub cout_pad: usize,
    pub nr: usize,
    pub u: crate::tensor::AlignedBuf,
    pub w: Vec<f32>,
    pub bias: Vec<f32>,
    pub clamp: Clamp,
}

/// The depthwise layer's packed state: `u[p][c]`; `w` the `[C][3][3]` weights for the
/// direct recomputation of non-finite tiles.
pub(crate) struct DwPlan {
    pub c: usize,
    pub u: crate::tensor::AlignedBuf,
    pub w: Vec<f32>,
    pub bias: Vec<f32>,
    pub clamp: Clamp,
}

/// Runs `$body` with `$i` = 0, 1, ..., 7 while `$i < $n`, unrolled in the source: LLVM
/// does not fully unroll these nested 8-trip loops by itself, and rolled loops leave the
/// matrix entries as run-time loads and compares (measured: dw7 F(2) at 2.5 GFLOP/s).
macro_rules! unroll {
    ($i:ident < $n:expr => $body:block) => {
        unroll!(@ $i, $n, $body, 0 1 2 3 4 5 6 7)
    };
    (@ $i:ident, $n:expr, $body:block, $($k:literal)*) => {
        $( if $k < $n { let $i: usize = $k; $body } )*
    };
}

/// `y[..rows] = mat[..rows][..cols] . x[..cols]`, skipping zero entries, starting each row
/// from its first +1 entry (no multiply) and using add/sub for the other +-1 entries (the
/// matrices are constants and the loops unrolled, so all these tests fold away). Starting
/// from a +1 entry saves one operation on most rows of F(4)'s and F(6)'s `B^T`.
#[inline(always)]
fn apply<S: Simd, const R: usize>(
    s: S,
    mat: &[[f32; 8]; R],
    rows: usize,
    cols: usize,
    x: &[S::V; 8],
) -> [S::V; 8] {
    let mut y = [s.zero(); 8];
    unroll!(i < rows => {
        let mut first = 8;
        unroll!(j < cols => {
            if first == 8 && mat[i][j] == 1.0 {
                first = j;
            }
        });
        let mut acc: Option<S::V> = if first < 8 { Some(x[first]) } else { None };
        unroll!(j < cols => {
            let c = mat[i][j];
            if c != 0.0 && j != first {
                let t = x[j];
                acc = Some(match acc {
                    None => s.mul(s.splat(c), t),
                    Some(a) if c == 1.0 => s.add(a, t),
                    Some(a) if c == -1.0 => s.sub(a, t),
                    Some(a) => s.fma(s.splat(c), t, a),
                });
            }
        });
        y[i] = acc.unwrap_or(s.zero());
    });
    y
}

/// `mat . x . mat^T` for one `cols x cols` tile of vectors (`mat` is `rows x cols`):
/// the columns first, then the rows; the `rows x rows` result is in `y[..rows][..rows]`.
#[inline(always)]
fn both_sides<S: Simd, const R: usize>(
    s: S,
    mat: &[[f32; 8]; R],
    rows: usize,
    cols: usize,
    x: &[[S::V; 8]; 8],
) -> [[S::V; 8]; 8] {
    let mut t = [[s.zero(); 8]; 8];
    unroll!(j < cols => {
        let col: [S::V; 8] = [x[0][j], x[1][j], x[2][j], x[3][j], x[4][j], x[5][j], x[6][j], x[7][j]];
        let tc = apply(s, mat, rows, cols, &col);
        unroll!(i < rows => { t[i][j] = tc[i]; });
    });
    let mut y = [[s.zero(); 8]; 8];
    unroll!(i < rows => { y[i] = apply(s, mat, rows, cols, &t[i]); });
    y
}

/// `B^T d B` for one `a x a` tile of vectors.
#[inline(always)]
fn input_2d<T: Transform, S: Simd>(s: S, d: &[[S::V; 8]; 8]) -> [[S::V; 8]; 8] {
    both_sides(s, &T::BT, T::A, T::A, d)
}

/// `A^T m A` for one `a x a` tile of vectors; the `m x m` result is in `y[..m][..m]`.
#[inline(always)]
fn output_2d<T: Transform, S: Simd>(s: S, mm: &[[S::V; 8]; 8]) -> [[S::V; 8]; 8] {
    both_sides(s, &T::AT, T::M, T::A, mm)
}

/// Where one tile sits: its top-left input pixel (negative in the padding) and the input
/// offsets (pixel index * C) of its `a x a` inputs, `None` outside the image.
#[derive(Clone, Copy)]
struct TilePos {
    iy0: isize,
    ix0: isize,
    off: [[Option<usize>; 8]; 8],
}

impl TilePos {
    #[inline(always)]
    fn new<T: Transform>(g: &Geometry, ty: usize, tx: usize, c: usize) -> TilePos {
        let iy0 = (ty * T::M) as isize - g.pad_top as isize;
        let ix0 = (tx * T::M) as isize - g.pad_left as isize;
        let mut off = [[None; 8]; 8];
        for (i, row) in off.iter_mut().enumerate().take(T::A) {
            let iy = iy0 + i as isize;
            if iy < 0 || iy >= g.in_h as isize {
                continue;
            }
            for (j, o) in row.iter_mut().enumerate().take(T::A) {
                let ix = ix0 + j as isize;
                if ix >= 0 && ix < g.in_w as isize {
                    *o = Some((iy as usize * g.in_w + ix as usize) * c);
                }
            }
        }
        TilePos { iy0, ix0, off }
    }
}

/// Loads one tile of channel vector `ch` (zeros outside the image).
///
/// # Safety
/// Every offset of `pos` plus `ch + LANES` lies inside `input` (slicing checks it too).
#[inline(always)]
unsafe fn load_tile<T: Transform, S: Simd>(s: S, input: &[f32], pos: &TilePos, ch: usize) -> [[S::V; 8]; 8] {
    let mut d = [[s.zero(); 8]; 8];
    unroll!(i < T::A => {
        unroll!(j < T::A => {
            if let Some(o) = pos.off[i][j] {
                // SAFETY: the slice holds LANES f32s.
                d[i][j] = unsafe { s.load(input[o + ch..o + ch + S::LANES].as_ptr()) };
            }
        });
    });
    d
}

/// Where an output tile's `rows x cols` valid part goes: `out[base + i * row_stride + j * c]`.
#[derive(Clone, Copy)]
struct OutTile {
    rows: usize,
    cols: usize,
    base: usize,
    row_stride: usize,
    c: usize,
    /// The channels `[c0, c1)` this call computes (`base` is channel 0's offset).
    chans: (usize, usize),
}

/// One input image and where the tiles sit in it.
#[derive(Clone, Copy)]
struct Image<'a> {
    g: &'a Geometry,
    input: &'a [f32],
}

/// What the direct recomputation of a tile needs: `cin` input channels, output channel `co`
/// reading input channel `co` only (depthwise) or all of them, OIHW 3x3 weights `w`.
#[derive(Clone, Copy)]
struct Direct<'a> {
    cin: usize,
    depthwise: bool,
    w: &'a [f32],
    bias: &'a [f32],
    clamp: Clamp,
}

impl DwPlan {
    fn direct(&self) -> Direct<'_> {
        Direct { cin: self.c, depthwise: true, w: &self.w, bias: &self.bias, clamp: self.clamp }
    }
}

impl DensePlan {
    fn direct(&self) -> Direct<'_> {
        Direct { cin: self.cin, depthwise: false, w: &self.w, bias: &self.bias, clamp: self.clamp }
    }
}

/// Adds the bias, clamps and stores the valid part of an output tile; returns the sum of
/// the outputs before the clamp. The callers add these sums over a tile's channel vectors and
/// test once per tile: the sum is NaN or infinite if any output was (or, harmlessly, if the
/// sum overflowed: the tile is then recomputed directly, which is only slower). One add per
/// output and one test per tile: a `v - v` per output and a test per vector cost 35% on dw1
/// (F(2), 32 channels; 0.35 against 0.26 ms).
#[inline(always)]
fn store_tile<S: Simd>(
    s: S,
    y: &[[S::V; 8]; 8],
    bias: S::V,
    clamp: Clamp,
    out: &mut [f32],
    t: OutTile,
) -> S::V {
    let clamp = clamp.splat(s);
    let mut sum = s.zero();
    unroll!(i < t.rows => {
        unroll!(j < t.cols => {
            let v = s.add(y[i][j], bias);
            sum = s.add(sum, v);
            let o = t.base + i * t.row_stride + j * t.c;
            // SAFETY: the slice holds LANES f32s.
            unsafe { s.store(out[o..o + S::LANES].as_mut_ptr(), clamp.apply(s, v)) };
        });
    });
    sum
}

/// Channel block `ch..ch + LANES` of tile `t` back from the transformed domain: `A^T m A`,
/// plus the bias, clamped and stored ([`store_tile`], whose sum it returns).
#[inline(always)]
fn output_block<T: Transform, S: Simd>(
    s: S,
    m: &[[S::V; 8]; 8],
    (bias, clamp): (&[f32], Clamp),
    out: &mut [f32],
    t: OutTile,
    ch: usize,
) -> S::V {
    let y = output_2d::<T, S>(s, m);
    // SAFETY: the slice holds LANES f32s.
    let bias = unsafe { s.load(bias[ch..ch + S::LANES].as_ptr()) };
    store_tile(s, &y, bias, clamp, out, OutTile { base: t.base + ch, ..t })
}

/// Whether a tile's summed outputs (see [`store_tile`]) say it met a NaN or an infinity:
/// `x - x` is 0 for a finite `x` and NaN otherwise.
#[inline(always)]
fn non_finite<S: Simd>(s: S, sum: S::V) -> bool {
    s.any_nan(s.sub(sum, sum))
}

/// Output tile extent clipped at the bottom/right borders.
#[inline(always)]
fn valid(t: usize, m: usize, len: usize) -> usize {
    (len - t * m).min(m)
}

/// Recomputes channels `t.chans` of the valid outputs of the tile whose top-left input pixel
/// is `(iy0, ix0)` as a direct 3x3 convolution (the non-finite rare path, see the module
/// docs). Out of line and cold: the hot loop keeps only the test and the call. It takes the
/// tile's corner, not its `TilePos`: a reference to that 1 KiB offset table would force it
/// into memory on every tile (measured: dw1 F(2) 0.35 ms against 0.26 without the check).
#[cold]
#[inline(never)]
fn direct_outputs(img: Image, d: Direct, (iy0, ix0): (isize, isize), t: OutTile, out: &mut [f32]) {
    let (g, cin) = (img.g, d.cin);
    for i in 0..t.rows {
        for j in 0..t.cols {
            for co in t.chans.0..t.chans.1 {
                let cis = if d.depthwise { co..co + 1 } else { 0..cin };
                let mut acc = d.bias[co];
                for ky in 0..3 {
                    let iy = iy0 + (i + ky) as isize;
                    if iy < 0 || iy >= g.in_h as isize {
                        continue;
                    }
                    for kx in 0..3 {
                        let ix = ix0 + (j + kx) as isize;
                        if ix < 0 || ix >= g.in_w as isize {
                            continue;
                        }
                        let px = (iy as usize * g.in_w + ix as usize) * cin;
                        for ci in cis.clone() {
                            // Depthwise weights are [C][3][3], dense ones [Cout][Cin][3][3].
                            let wi = if d.depthwise { co * 9 } else { (co * cin + ci) * 9 };
                            acc += img.input[px + ci] * d.w[wi + ky * 3 + kx];
                        }
                    }
                }
                out[t.base + i * t.row_stride + j * t.c + co] = d.clamp.apply(acc);
            }
        }
    }
}

/// Depthwise: channels `[c0, c1)` (a multiple of `LANES` long) of one tile, fully fused.
///
/// # Safety
/// As [`load_tile`]; `out` holds the tile's valid outputs at `t.base`.
#[inline(always)]
unsafe fn dw_tile<T: Transform, S: Simd>(
    s: S,
    plan: &DwPlan,
    img: Image,
    pos: &TilePos,
    t: OutTile,
    out: &mut [f32],
) {
    let (a, c, (c0, c1)) = (T::A, plan.c, t.chans);
    let mut sum = s.zero();
    let mut ch = c0;
    while ch < c1 {
        // SAFETY: forwarded contract.
        let d = unsafe { load_tile::<T, S>(s, img.input, pos, ch) };
        let mut v = input_2d::<T, S>(s, &d);
        unroll!(i < a => {
            unroll!(j < a => {
                let p = (i * a + j) * c + ch;
                // SAFETY: the slice holds LANES f32s.
                v[i][j] = s.mul(v[i][j], unsafe { s.load(plan.u[p..p + S::LANES].as_ptr()) });
            });
        });
        sum = s.add(sum, output_block::<T, S>(s, &v, (&plan.bias, plan.clamp), out, t, ch));
        ch += S::LANES;
    }
    if non_finite(s, sum) {
        direct_outputs(img, plan.direct(), (pos.iy0, pos.ix0), t, out);
    }
}

/// Depthwise Winograd over output tile rows `[ty0, ty1)` of one image; `out` starts at
/// output row `ty0 * m`.
///
/// # Safety
/// `input` is one `in_h x in_w x c` image and `out` holds rows `ty0 * m..` of its output
/// (slicing checks every access too; the safety is about `S`'s unchecked loads).
#[inline(always)]
pub(crate) unsafe fn dw_band<T: Transform, S: Simd>(
    s: S,
    plan: &DwPlan,
    g: &Geometry,
    input: &[f32],
    (ty0, ty1): (usize, usize),
    out: &mut [f32],
) {
    let (m, c) = (T::M, plan.c);
    let main = c - c % S::LANES;
    for ty in ty0..ty1 {
        for tx in 0..g.tiles_w {
            let pos = TilePos::new::<T>(g, ty, tx, c);
            let t = OutTile {
                rows: valid(ty, m, g.out_h),
                cols: valid(tx, m, g.out_w),
                base: (((ty - ty0) * m) * g.out_w + tx * m) * c,
                row_stride: g.out_w * c,
                c,
                chans: (0, main),
            };
            let img = Image { g, input };
            // SAFETY: forwarded contract.
            unsafe {
                dw_tile::<T, S>(s, plan, img, &pos, t, out);
                dw_tile::<T, Scalar>(Scalar, plan, img, &pos, OutTile { chans: (main, c), ..t }, out);
            }
        }
    }
}

/// Input transform of channels `[c0, c1)` of tile `t` into `vbuf[p][t][ci]`.
///
/// # Safety
/// As [`load_tile`].
#[inline(always)]
// Kernel entries: pointers, strides and counts the loop keeps in registers.
#[allow(clippy::too_many_arguments)]
unsafe fn input_transform<T: Transform, S: Simd>(
    s: S,
    input: &[f32],
    pos: &TilePos,
    vbuf: &mut [f32],
    t: usize,
    ntiles: usize,
    cin: usize,
    (c0, c1): (usize, usize),
) {
    let a = T::A;
    let mut ch = c0;
    while ch < c1 {
        // SAFETY: forwarded contract.
        let d = unsafe { load_tile::<T, S>(s, input, pos, ch) };
        let v = input_2d::<T, S>(s, &d);
        unroll!(i < a => {
            unroll!(j < a => {
                let o = ((i * a + j) * ntiles + t) * cin + ch;
                // SAFETY: the slice holds LANES f32s.
                unsafe { s.store(vbuf[o..o + S::LANES].as_mut_ptr(), v[i][j]) };
            });
        });
        ch += S::LANES;
    }
}

/// Output transform of channels `t.chans` of tile `tile` (of `ntiles`) from
/// `mbuf[p][tile][co]`.
#[inline(always)]
fn output_transform<T: Transform, S: Simd>(
    s: S,
    plan: &DensePlan,
    img: Image,
    (mbuf, tile, ntiles): (&[f32], usize, usize),
    pos: &TilePos,
    t: OutTile,
    out: &mut [f32],
) {
    let (a, cp, (c0, c1)) = (T::A, plan.cout_pad, t.chans);
    let mut sum = s.zero();
    let mut ch = c0;
    while ch < c1 {
        let mut mm = [[s.zero(); 8]; 8];
        unroll!(i < a => {
            unroll!(j < a => {
                let o = ((i * a + j) * ntiles + tile) * cp + ch;
                // SAFETY: the slice holds LANES f32s.
                mm[i][j] = unsafe { s.load(mbuf[o..o + S::LANES].as_ptr()) };
            });
        });
        sum = s.add(sum, output_block::<T, S>(s, &mm, (&plan.bias, plan.clamp), out, t, ch));
        ch += S::LANES;
    }
    if non_finite(s, sum) {
        direct_outputs(img, plan.direct(), (pos.iy0, pos.ix0), t, out);
    }
}

/// `C[MR][NV*LANES] = A[MR][k] * B[k][NV*LANES]`: `A` rows `lda` apart (broadcast), `B` one
/// packed panel, `C` rows `ldc` apart. Accumulators stay in registers (MR * NV of them).
///
/// # Safety
/// `a` holds MR rows of `k`, `b` `k` rows of NV * LANES, `c` MR rows of NV * LANES.
#[inline(always)]
unsafe fn micro<S: Simd, const MR: usize, const NV: usize>(
    s: S,
    a: *const f32,
    lda: usize,
    b: *const f32,
    k: usize,
    c: *mut f32,
    ldc: usize,
) {
    let mut acc = [[s.zero(); NV]; MR];
    let nr = NV * S::LANES;
    // SAFETY: forwarded contract.
    unsafe {
        for kk in 0..k {
            let mut bv = [s.zero(); NV];
            for (j, bj) in bv.iter_mut().enumerate() {
                *bj = s.load(b.add(kk * nr + j * S::LANES));
            }
            for (r, accr) in acc.iter_mut().enumerate() {
                let av = s.splat(*a.add(r * lda + kk));
                for j in 0..NV {
                    accr[j] = s.fma(av, bv[j], accr[j]);
                }
            }
        }
        for (r, accr) in acc.iter().enumerate() {
            for (j, &v) in accr.iter().enumerate() {
                s.store(c.add(r * ldc + j * S::LANES), v);
            }
        }
    }
}

/// The row remainder (`rows < MR`) with a kernel of exactly that many rows.
///
/// # Safety
/// As [`micro`] with `rows` rows.
#[inline(always)]
// Kernel entries: pointers, strides and counts the loop keeps in registers.
#[allow(clippy::too_many_arguments)]
unsafe fn micro_rows<S: Simd, const NV: usize>(
    s: S,
    rows: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    k: usize,
    c: *mut f32,
    ldc: usize,
) {
    // SAFETY: forwarded contract.
    unsafe {
        match rows {
            1 => micro::<S, 1, NV>(s, a, lda, b, k, c, ldc),
            2 => micro::<S, 2, NV>(s, a, lda, b, k, c, ldc),
            3 => micro::<S, 3, NV>(s, a, lda, b, k, c, ldc),
            4 => micro::<S, 4, NV>(s, a, lda, b, k, c, ldc),
            5 => micro::<S, 5, NV>(s, a, lda, b, k, c, ldc),
            6 => micro::<S, 6, NV>(s, a, lda, b, k, c, ldc),
            7 => micro::<S, 7, NV>(s, a, lda, b, k, c, ldc),
            _ => {
                // Unreached (every MR here is <= 8, so a remainder is < 8): one row at a time.
                for r in 0..rows {
                    micro::<S, 1, NV>(s, a.add(r * lda), lda, b, k, c.add(r * ldc), ldc);
                }
            }
        }
    }
}

/// The GEMM register tile (`MR` tiles x `NV` vectors) of a register shape: 8 x 2 with 32
/// registers (16 accumulators + 2 B vectors + 1 broadcast: 16 independent FMA chains keep
/// two pipes of latency 4 full), 6 x 2 with 16 (12 accumulators), 4 x 4 for one lane.
pub(crate) const fn gemm_tile(lanes: usize, registers: usize) -> (usize, usize) {
    if lanes == 1 {
        (4, 4)
    } else if registers >= 32 {
        (8, 2)
    } else {
        (6, 2)
    }
}

/// `M = V * U[p]` for one transform point: `v` is `rows x k`, `u` is `cout_pad / nr` panels of
/// `k x nr`, `m` is `rows x cout_pad`.
#[inline(always)]
fn gemm<S: Simd, const MR: usize, const NV: usize>(
    s: S,
    v: &[f32],
    rows: usize,
    k: usize,
    u: &[f32],
    cout_pad: usize,
    m: &mut [f32],
) {
    let nr = NV * S::LANES;
    assert!(
        v.len() >= rows * k
            && u.len() >= k * cout_pad
            && m.len() >= rows * cout_pad
            && cout_pad.is_multiple_of(nr)
    );
    for panel in 0..cout_pad / nr {
        let b = u[panel * k * nr..].as_ptr();
        let c = m[panel * nr..].as_mut_ptr();
        let mut r = 0;
        // SAFETY: the assert above bounds every row, panel and column the kernels touch.
        unsafe {
            while r + MR <= rows {
                micro::<S, MR, NV>(s, v.as_ptr().add(r * k), k, b, k, c.add(r * cout_pad), cout_pad);
                r += MR;
            }
            if r < rows {
                micro_rows::<S, NV>(
                    s,
                    rows - r,
                    v.as_ptr().add(r * k),
                    k,
                    b,
                    k,
                    c.add(r * cout_pad),
                    cout_pad,
                );
            }
        }
    }
}

/// Scratch f32s one dense band of `ntiles` tiles needs.
pub(crate) fn dense_band_scratch(a: usize, ntiles: usize, cin: usize, cout_pad: usize) -> usize {
    a * a * ntiles * (cin + cout_pad)
}

/// Dense Winograd over output tile rows `[ty0, ty1)` of one image; `out` starts at output
/// row `ty0 * m`; `scratch` holds at least [`dense_band_scratch`] f32s.
///
/// # Safety
/// As [`dw_band`].
#[inline(always)]
pub(crate) unsafe fn dense_band<T: Transform, S: Simd>(
    s: S,
    plan: &DensePlan,
    g: &Geometry,
    input: &[f32],
    (ty0, ty1): (usize, usize),
    out: &mut [f32],
    scratch: &mut [f32],
) {
    let (a, m, cin, cp) = (T::A, T::M, plan.cin, plan.cout_pad);
    let ntiles = (ty1 - ty0) * g.tiles_w;
    let (vbuf, rest) = scratch.split_at_mut(a * a * ntiles * cin);
    let mbuf = &mut rest[..a * a * ntiles * cp];
    let in_main = cin - cin % S::LANES;
    let pos = |t: usize| TilePos::new::<T>(g, ty0 + t / g.tiles_w, t % g.tiles_w, cin);
    for t in 0..ntiles {
        let p = pos(t);
        // SAFETY: forwarded contract.
        unsafe {
            input_transform::<T, S>(s, input, &p, vbuf, t, ntiles, cin, (0, in_main));
            input_transform::<T, Scalar>(Scalar, input, &p, vbuf, t, ntiles, cin, (in_main, cin));
        }
    }
    assert_eq!(
        plan.nr,
        gemm_tile(S::LANES, S::REGISTERS).1 * S::LANES,
        "plan packed for another register shape"
    );
    for p in 0..a * a {
        let (vp, up, mp) = (&vbuf[p * ntiles * cin..], &plan.u[p * cin * cp..], &mut mbuf[p * ntiles * cp..]);
        // The branches of `gemm_tile`, on associated constants so only one is compiled per S.
        if S::ONE_LANE {
            gemm::<S, 4, 4>(s, vp, ntiles, cin, up, cp, mp)
        } else if S::REGISTERS_32 {
            gemm::<S, 8, 2>(s, vp, ntiles, cin, up, cp, mp)
        } else {
            gemm::<S, 6, 2>(s, vp, ntiles, cin, up, cp, mp)
        }
    }
    let out_main = plan.cout - plan.cout % S::LANES;
    for tile in 0..ntiles {
        let (ty, tx) = (ty0 + tile / g.tiles_w, tile % g.tiles_w);
        let t = OutTile {
            rows: valid(ty, m, g.out_h),
            cols: valid(tx, m, g.out_w),
            base: (((ty - ty0) * m) * g.out_w + tx * m) * plan.cout,
            row_stride: g.out_w * plan.cout,
            c: plan.cout,
            chans: (0, out_main),
        };
        let (p, img, prod) = (pos(tile), Image { g, input }, (&mbuf[..], tile, ntiles));
        output_transform::<T, S>(s, plan, img, prod, &p, t, out);
        output_transform::<T, Scalar>(
            Scalar,
            plan,
            img,
            prod,
            &p,
            OutTile { chans: (out_main, plan.cout), ..t },
            out,
        );
    }
}
