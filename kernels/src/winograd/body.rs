//! The one generic body of every Winograd kernel, written once over a small SIMD trait
//! [`Vf`] (vectors across channels on NHWC); each ISA file only implements [`Vf`] for its
//! register type and stamps out `#[target_feature]` entry points that call these bodies.
//!
//! Dense, per band of output tile rows (all in the caller's scratch, no allocation):
//! 1. input transform: `V[p][tile][ci] = (B^T d B)[p]`, vectorised across `ci`;
//! 2. per transform point `p` (`a^2` of them) one GEMM `M[p] = V[p] (tiles x Cin) * U[p]
//!    (Cin x Cout)` with a broadcast-A register-tile kernel of `MR` tiles x `NV` vectors;
//! 3. output transform `Y = A^T M A`, + bias, clamp, stored only where the tile lies inside
//!    the output (partial tiles at the right and bottom borders).
//!
//! Depthwise fuses all three per tile and channel vector: the product is elementwise.

use super::transforms::Tile;

/// The handful of vector operations the bodies need. `W` lanes of f32.
///
/// # Safety
/// Implementations use ISA intrinsics: every method may only run on a CPU with that ISA,
/// which the algorithms guarantee by reaching these bodies only through `#[target_feature]`
/// entry points after `supports()` checked [`crate::isa::available`].
pub(crate) unsafe trait Vf: Copy {
    const W: usize;
    unsafe fn zero() -> Self;
    unsafe fn splat(x: f32) -> Self;
    /// Loads `W` f32s (unaligned) from `p`.
    unsafe fn load(p: *const f32) -> Self;
    /// Stores `W` f32s (unaligned) to `p`.
    unsafe fn store(self, p: *mut f32);
    unsafe fn add(self, o: Self) -> Self;
    unsafe fn sub(self, o: Self) -> Self;
    unsafe fn mul(self, o: Self) -> Self;
    /// `self * b + c` (fused where the ISA has it).
    unsafe fn fma(self, b: Self, c: Self) -> Self;
    /// `max(self, lo)`, returning `lo` when `self` is NaN (IEEE maxNum, as `f32::max`).
    unsafe fn max(self, lo: Self) -> Self;
    /// `min(self, hi)` for non-NaN `self`.
    unsafe fn min(self, hi: Self) -> Self;
}

/// The scalar "vector": the portable path and the channel tail of every SIMD path.
// SAFETY: plain f32 arithmetic runs on every CPU.
unsafe impl Vf for f32 {
    const W: usize = 1;
    #[inline(always)]
    unsafe fn zero() -> Self {
        0.0
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        x
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        *p
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        *p = self
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        self + o
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        self - o
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        self * o
    }
    // Not `f32::mul_add`: without hardware FMA in the baseline target that is a libm call.
    #[inline(always)]
    unsafe fn fma(self, b: Self, c: Self) -> Self {
        self * b + c
    }
    #[inline(always)]
    unsafe fn max(self, lo: Self) -> Self {
        self.max(lo)
    }
    #[inline(always)]
    unsafe fn min(self, hi: Self) -> Self {
        f32::min(self, hi)
    }
}

/// The fused epilogue: `clamp` false means `Activation::None` (NaN passes through).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Epilogue {
    pub clamp: bool,
    pub lo: f32,
    pub hi: f32,
}

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
/// (a multiple of the kernel's panel width `nr`), bias padded with zeros.
pub(crate) struct DensePlan {
    pub cin: usize,
    pub cout: usize,
    pub cout_pad: usize,
    pub nr: usize,
    pub u: crate::tensor::AlignedBuf,
    pub bias: Vec<f32>,
    pub epi: Epilogue,
}

/// The depthwise layer's packed state: `u[p][c]`.
pub(crate) struct DwPlan {
    pub c: usize,
    pub u: crate::tensor::AlignedBuf,
    pub bias: Vec<f32>,
    pub epi: Epilogue,
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
unsafe fn apply<V: Vf, const R: usize>(mat: &[[f32; 8]; R], rows: usize, cols: usize, x: &[V; 8]) -> [V; 8] {
    let mut y = [V::zero(); 8];
    unroll!(i < rows => {
        let mut first = 8;
        unroll!(j < cols => {
            if first == 8 && mat[i][j] == 1.0 {
                first = j;
            }
        });
        let mut acc: Option<V> = if first < 8 { Some(x[first]) } else { None };
        unroll!(j < cols => {
            let c = mat[i][j];
            if c != 0.0 && j != first {
                let t = x[j];
                acc = Some(match acc {
                    None => V::splat(c).mul(t),
                    Some(a) if c == 1.0 => a.add(t),
                    Some(a) if c == -1.0 => a.sub(t),
                    Some(a) => V::splat(c).fma(t, a),
                });
            }
        });
        y[i] = acc.unwrap_or(V::zero());
    });
    y
}

/// `B^T d B` for one `a x a` tile of vectors.
#[inline(always)]
unsafe fn input_2d<T: Tile, V: Vf>(d: &[[V; 8]; 8]) -> [[V; 8]; 8] {
    let a = T::A;
    let mut t = [[V::zero(); 8]; 8];
    unroll!(j < a => {
        let col: [V; 8] = [d[0][j], d[1][j], d[2][j], d[3][j], d[4][j], d[5][j], d[6][j], d[7][j]];
        let tc = apply(&T::BT, a, a, &col);
        unroll!(i < a => { t[i][j] = tc[i]; });
    });
    let mut v = [[V::zero(); 8]; 8];
    unroll!(i < a => { v[i] = apply(&T::BT, a, a, &t[i]); });
    v
}

/// `A^T m A` for one `a x a` tile of vectors; the `m x m` result is in `y[..m][..m]`.
#[inline(always)]
unsafe fn output_2d<T: Tile, V: Vf>(mm: &[[V; 8]; 8]) -> [[V; 8]; 8] {
    let (a, m) = (T::A, T::M);
    let mut s = [[V::zero(); 8]; 8];
    unroll!(j < a => {
        let col: [V; 8] = [mm[0][j], mm[1][j], mm[2][j], mm[3][j], mm[4][j], mm[5][j], mm[6][j], mm[7][j]];
        let sc = apply(&T::AT, m, a, &col);
        unroll!(i < m => { s[i][j] = sc[i]; });
    });
    let mut y = [[V::zero(); 8]; 8];
    unroll!(i < m => { y[i] = apply(&T::AT, m, a, &s[i]); });
    y
}

/// Input offsets (pixel index * C) of the `a x a` tile whose top-left input pixel is
/// `(iy0, ix0)` (may be negative: padding), `None` outside the image.
#[inline(always)]
fn tile_offsets<T: Tile>(g: &Geometry, iy0: isize, ix0: isize, c: usize) -> [[Option<usize>; 8]; 8] {
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
    off
}

/// Loads one tile of channel vector `ch` (zeros outside the image).
#[inline(always)]
unsafe fn load_tile<T: Tile, V: Vf>(input: &[f32], off: &[[Option<usize>; 8]; 8], ch: usize) -> [[V; 8]; 8] {
    let mut d = [[V::zero(); 8]; 8];
    unroll!(i < T::A => {
        unroll!(j < T::A => {
            if let Some(o) = off[i][j] {
                d[i][j] = V::load(input[o + ch..o + ch + V::W].as_ptr());
            }
        });
    });
    d
}

/// Adds the bias, clamps and stores the valid `rows x cols` part of an output tile.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn store_tile<V: Vf>(
    y: &[[V; 8]; 8],
    rows: usize,
    cols: usize,
    bias: V,
    epi: Epilogue,
    out: &mut [f32],
    base: usize,
    row_stride: usize,
    c: usize,
) {
    let (lo, hi) = (V::splat(epi.lo), V::splat(epi.hi));
    unroll!(i < rows => {
        unroll!(j < cols => {
            let mut v = y[i][j].add(bias);
            if epi.clamp {
                v = v.max(lo).min(hi);
            }
            let o = base + i * row_stride + j * c;
            v.store(out[o..o + V::W].as_mut_ptr());
        });
    });
}

/// Output-tile extent clipped at the bottom/right borders.
#[inline(always)]
fn valid(t: usize, m: usize, len: usize) -> usize {
    (len - t * m).min(m)
}

/// Depthwise: channels `[c0, c1)` (a multiple of `V::W` long) of one tile, fully fused.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn dw_tile<T: Tile, V: Vf>(
    plan: &DwPlan,
    g: &Geometry,
    input: &[f32],
    off: &[[Option<usize>; 8]; 8],
    (rows, cols): (usize, usize),
    out: &mut [f32],
    out_base: usize,
    c0: usize,
    c1: usize,
) {
    let (a, c) = (T::A, plan.c);
    let mut ch = c0;
    while ch < c1 {
        let d = load_tile::<T, V>(input, off, ch);
        let mut v = input_2d::<T, V>(&d);
        unroll!(i < a => {
            unroll!(j < a => {
                let p = (i * a + j) * c + ch;
                v[i][j] = v[i][j].mul(V::load(plan.u[p..p + V::W].as_ptr()));
            });
        });
        let y = output_2d::<T, V>(&v);
        let bias = V::load(plan.bias[ch..ch + V::W].as_ptr());
        store_tile(&y, rows, cols, bias, plan.epi, out, out_base + ch, g.out_w * c, c);
        ch += V::W;
    }
}

/// Depthwise Winograd over output tile rows `[ty0, ty1)` of one image; `out` starts at
/// output row `ty0 * m`.
#[inline(always)]
pub(crate) unsafe fn dw_band<T: Tile, V: Vf>(
    plan: &DwPlan,
    g: &Geometry,
    input: &[f32],
    ty0: usize,
    ty1: usize,
    out: &mut [f32],
) {
    let (m, c) = (T::M, plan.c);
    let main = c - c % V::W;
    for ty in ty0..ty1 {
        let rows = valid(ty, m, g.out_h);
        for tx in 0..g.tiles_w {
            let cols = valid(tx, m, g.out_w);
            let iy0 = (ty * m) as isize - g.pad_top as isize;
            let ix0 = (tx * m) as isize - g.pad_left as isize;
            let off = tile_offsets::<T>(g, iy0, ix0, c);
            let base = (((ty - ty0) * m) * g.out_w + tx * m) * c;
            dw_tile::<T, V>(plan, g, input, &off, (rows, cols), out, base, 0, main);
            dw_tile::<T, f32>(plan, g, input, &off, (rows, cols), out, base, main, c);
        }
    }
}

/// Input transform of channels `[c0, c1)` of tile `t` into `vbuf[p][t][ci]`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn input_transform<T: Tile, V: Vf>(
    input: &[f32],
    off: &[[Option<usize>; 8]; 8],
    vbuf: &mut [f32],
    t: usize,
    ntiles: usize,
    cin: usize,
    c0: usize,
    c1: usize,
) {
    let a = T::A;
    let mut ch = c0;
    while ch < c1 {
        let d = load_tile::<T, V>(input, off, ch);
        let v = input_2d::<T, V>(&d);
        unroll!(i < a => {
            unroll!(j < a => {
                let o = ((i * a + j) * ntiles + t) * cin + ch;
                v[i][j].store(vbuf[o..o + V::W].as_mut_ptr());
            });
        });
        ch += V::W;
    }
}

/// Output transform of channels `[c0, c1)` of tile `t` from `mbuf[p][t][co]`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn output_transform<T: Tile, V: Vf>(
    plan: &DensePlan,
    g: &Geometry,
    mbuf: &[f32],
    t: usize,
    ntiles: usize,
    (rows, cols): (usize, usize),
    out: &mut [f32],
    out_base: usize,
    c0: usize,
    c1: usize,
) {
    let (a, cp, c) = (T::A, plan.cout_pad, plan.cout);
    let mut ch = c0;
    while ch < c1 {
        let mut mm = [[V::zero(); 8]; 8];
        unroll!(i < a => {
            unroll!(j < a => {
                let o = ((i * a + j) * ntiles + t) * cp + ch;
                mm[i][j] = V::load(mbuf[o..o + V::W].as_ptr());
            });
        });
        let y = output_2d::<T, V>(&mm);
        let bias = V::load(plan.bias[ch..ch + V::W].as_ptr());
        store_tile(&y, rows, cols, bias, plan.epi, out, out_base + ch, g.out_w * c, c);
        ch += V::W;
    }
}

/// `C[MR][NV*W] = A[MR][k] * B[k][NV*W]`: `A` rows `lda` apart (broadcast), `B` one packed
/// panel, `C` rows `ldc` apart. Accumulators stay in registers (MR * NV of them).
#[inline(always)]
unsafe fn micro<V: Vf, const MR: usize, const NV: usize>(
    a: *const f32,
    lda: usize,
    b: *const f32,
    k: usize,
    c: *mut f32,
    ldc: usize,
) {
    let mut acc = [[V::zero(); NV]; MR];
    let nr = NV * V::W;
    for kk in 0..k {
        let mut bv = [V::zero(); NV];
        for (j, bj) in bv.iter_mut().enumerate() {
            *bj = V::load(b.add(kk * nr + j * V::W));
        }
        for (r, accr) in acc.iter_mut().enumerate() {
            let av = V::splat(*a.add(r * lda + kk));
            for j in 0..NV {
                accr[j] = av.fma(bv[j], accr[j]);
            }
        }
    }
    for (r, accr) in acc.iter().enumerate() {
        for (j, v) in accr.iter().enumerate() {
            v.store(c.add(r * ldc + j * V::W));
        }
    }
}

/// The row remainder (`rows < MR`) with a kernel of exactly that many rows.
#[inline(always)]
unsafe fn micro_rows<V: Vf, const NV: usize>(
    rows: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    k: usize,
    c: *mut f32,
    ldc: usize,
) {
    match rows {
        1 => micro::<V, 1, NV>(a, lda, b, k, c, ldc),
        2 => micro::<V, 2, NV>(a, lda, b, k, c, ldc),
        3 => micro::<V, 3, NV>(a, lda, b, k, c, ldc),
        4 => micro::<V, 4, NV>(a, lda, b, k, c, ldc),
        5 => micro::<V, 5, NV>(a, lda, b, k, c, ldc),
        6 => micro::<V, 6, NV>(a, lda, b, k, c, ldc),
        7 => micro::<V, 7, NV>(a, lda, b, k, c, ldc),
        _ => {
            // Unreached (every MR here is <= 8, so a remainder is < 8): one row at a time.
            for r in 0..rows {
                micro::<V, 1, NV>(a.add(r * lda), lda, b, k, c.add(r * ldc), ldc);
            }
        }
    }
}

/// `M = V * U[p]` for one transform point: `v` is `rows x k`, `u` is `cout_pad / nr` panels of
/// `k x nr`, `m` is `rows x cout_pad`.
#[inline(always)]
unsafe fn gemm<V: Vf, const MR: usize, const NV: usize>(
    v: &[f32],
    rows: usize,
    k: usize,
    u: &[f32],
    cout_pad: usize,
    m: &mut [f32],
) {
    let nr = NV * V::W;
    assert!(
        v.len() >= rows * k
            && u.len() >= k * cout_pad
            && m.len() >= rows * cout_pad
            && cout_pad.is_multiple_of(nr)
    );
    for panel in 0..cout_pad / nr {
        let b = u.as_ptr().add(panel * k * nr);
        let c = m.as_mut_ptr().add(panel * nr);
        let mut r = 0;
        while r + MR <= rows {
            micro::<V, MR, NV>(v.as_ptr().add(r * k), k, b, k, c.add(r * cout_pad), cout_pad);
            r += MR;
        }
        if r < rows {
            micro_rows::<V, NV>(rows - r, v.as_ptr().add(r * k), k, b, k, c.add(r * cout_pad), cout_pad);
        }
    }
}

/// Scratch f32s one dense band of `ntiles` tiles needs.
pub(crate) fn dense_band_scratch(a: usize, ntiles: usize, cin: usize, cout_pad: usize) -> usize {
    a * a * ntiles * (cin + cout_pad)
}

/// Dense Winograd over output tile rows `[ty0, ty1)` of one image; `out` starts at output
/// row `ty0 * m`; `scratch` holds at least [`dense_band_scratch`] f32s.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn dense_band<T: Tile, V: Vf, const MR: usize, const NV: usize>(
    plan: &DensePlan,
    g: &Geometry,
    input: &[f32],
    ty0: usize,
    ty1: usize,
    out: &mut [f32],
    scratch: &mut [f32],
) {
    let (a, m, cin, cp) = (T::A, T::M, plan.cin, plan.cout_pad);
    assert_eq!(plan.nr, NV * V::W, "plan packed for another kernel");
    let ntiles = (ty1 - ty0) * g.tiles_w;
    let (vbuf, rest) = scratch.split_at_mut(a * a * ntiles * cin);
    let mbuf = &mut rest[..a * a * ntiles * cp];
    let in_main = cin - cin % V::W;
    for t in 0..ntiles {
        let (ty, tx) = (ty0 + t / g.tiles_w, t % g.tiles_w);
        let iy0 = (ty * m) as isize - g.pad_top as isize;
        let ix0 = (tx * m) as isize - g.pad_left as isize;
        let off = tile_offsets::<T>(g, iy0, ix0, cin);
        input_transform::<T, V>(input, &off, vbuf, t, ntiles, cin, 0, in_main);
        input_transform::<T, f32>(input, &off, vbuf, t, ntiles, cin, in_main, cin);
    }
    for p in 0..a * a {
        gemm::<V, MR, NV>(
            &vbuf[p * ntiles * cin..],
            ntiles,
            cin,
            &plan.u[p * cin * cp..],
            cp,
            &mut mbuf[p * ntiles * cp..],
        );
    }
    let out_main = plan.cout - plan.cout % V::W;
    for t in 0..ntiles {
        let (ty, tx) = (ty0 + t / g.tiles_w, t % g.tiles_w);
        let rc = (valid(ty, m, g.out_h), valid(tx, m, g.out_w));
        let base = (((ty - ty0) * m) * g.out_w + tx * m) * plan.cout;
        output_transform::<T, V>(plan, g, mbuf, t, ntiles, rc, out, base, 0, out_main);
        output_transform::<T, f32>(plan, g, mbuf, t, ntiles, rc, out, base, out_main, plan.cout);
    }
}
