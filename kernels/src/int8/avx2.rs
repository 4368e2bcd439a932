//! AVX2 int8 kernels, exact without VNNI: the GEMM multiplies i16 pairs with `vpmaddwd`
//! (u8 x s8 pairs summed by `vpmaddubsw` can exceed i16: 2 x 255 x 127 = 64,770), and the
//! depthwise rows widen to i32 lanes as on AVX-512.

use std::arch::x86_64::*;

use super::depthwise::{DwInt8, DwKernel};
use super::gemm::{for_each_tile, GemmInt8};
use crate::algo::RowBand;
use crate::pool::Par;

/// Rows per GEMM tile: 6 rows x 2 `ymm` of 8 channels = 12 accumulators, plus 2 B vectors
/// and a broadcast, of the 16 registers.
const MR: usize = 6;
/// Channels per packed panel.
const NR: usize = 16;

/// The requantizing store of 8 biased accumulators of `n <= 8` channels.
#[inline(always)]
unsafe fn store8(x: __m256i, mult: *const f32, zp: __m256i, lo: __m256, hi: __m256, dst: *mut u8, n: usize) {
    // SAFETY: (the caller) `mult` holds 8 values, `dst` `n`.
    unsafe {
        let f = _mm256_mul_ps(_mm256_cvtepi32_ps(x), _mm256_loadu_ps(mult));
        // `Requant::apply`: clamp, round to nearest even, add the zero point (0..=255).
        let f = _mm256_min_ps(_mm256_max_ps(f, lo), hi);
        let i = _mm256_add_epi32(_mm256_cvtps_epi32(f), zp);
        // 8 i32 in 0..=255 -> 8 bytes.
        let w = _mm256_packus_epi32(i, i);
        let w = _mm256_permute4x64_epi64(w, 0b1000);
        let b = _mm256_packus_epi16(w, w);
        let bytes = _mm256_castsi256_si128(b);
        if n >= 8 {
            _mm_storel_epi64(dst.cast(), bytes);
        } else {
            let mut buf = [0u8; 16];
            _mm_storeu_si128(buf.as_mut_ptr().cast(), bytes);
            std::ptr::copy_nonoverlapping(buf.as_ptr(), dst, n);
        }
    }
}

/// The requantization constants of `rq` as vectors: zero point, and the clamp's bounds.
#[inline(always)]
fn requant_consts(rq: &super::Requant) -> (__m256i, __m256, __m256) {
    let (lo, hi) = rq.bounds();
    // SAFETY: plain register broadcasts (AVX), in the callers' target-feature context.
    unsafe { (_mm256_set1_epi32(rq.zero_point), _mm256_set1_ps(lo), _mm256_set1_ps(hi)) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const R: usize>(
    l: &GemmInt8,
    a16: *const i32,
    kp: usize,
    b: *const i16,
    c: *mut u8,
    c0: usize,
    cols: usize,
) {
    let n = l.q.spec.out_channels;
    // The accumulators start at the folded bias (padded to the panel width).
    // SAFETY: the bias holds the packed width, a multiple of 16 channels.
    let bias = unsafe { [0, 1].map(|v| _mm256_loadu_si256(l.bias.as_ptr().add(c0 + v * 8).cast())) };
    let mut acc = [bias; R];
    // SAFETY: the caller passes `R` widened rows of `kp` words at `a16`, a panel of
    // `kp * 32` i16 at `b`, and `R` output rows of `n` bytes at `c`.
    unsafe {
        for g in 0..kp {
            let bp = b.add(g * 32);
            let bv = [_mm256_loadu_si256(bp.cast()), _mm256_loadu_si256(bp.add(16).cast())];
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av = _mm256_set1_epi32(*a16.add(r * kp + g));
                for v in 0..2 {
                    acc_r[v] = _mm256_add_epi32(acc_r[v], _mm256_madd_epi16(av, bv[v]));
                }
            }
        }
        let rq = &l.q.requant;
        let (zp, lo, hi) = requant_consts(rq);
        for (r, acc_r) in acc.iter().enumerate() {
            for (v, &acc_v) in acc_r.iter().enumerate() {
                if v * 8 < cols {
                    let ch = c0 + v * 8;
                    store8(acc_v, l.multiplier.as_ptr().add(ch), zp, lo, hi, c.add(r * n + ch), cols - v * 8);
                }
            }
        }
    }
}

/// `c = requant(a x B)`: A widened into `scratch` as i16 pairs (one i32 word per pair of k),
/// then 6 x 16 tiles over `par`.
///
/// # Safety
/// The CPU has AVX2; `a` holds `m * k` bytes, `c` `m * n`, `scratch` at least
/// `m * ceil(k / 2)` f32s, and `b` is `l`'s pair packing.
pub(crate) unsafe fn gemm(
    l: &GemmInt8,
    b: &[i16],
    m: usize,
    a: &[u8],
    c: &mut [u8],
    scratch: &mut [f32],
    par: Par<'_>,
) {
    let (k, n) = (l.q.spec.in_channels, l.q.spec.out_channels);
    let kp = k.div_ceil(2);
    // The caller sized the scratch: `m * kp` words.
    let a16 = &mut crate::tensor::scratch_as::<i32>(scratch)[..m * kp];
    for (row, dst) in a.chunks_exact(k).zip(a16.chunks_exact_mut(kp)) {
        for (g, d) in dst.iter_mut().enumerate() {
            let hi = if 2 * g + 1 < k { row[2 * g + 1] as i32 } else { 0 };
            *d = row[2 * g] as i32 | (hi << 16);
        }
    }
    let panel = kp * 32;
    let a16 = &*a16;
    for_each_tile((m, n), (MR, NR), c, par, |row, p, cols, cp| {
        // SAFETY: as in the AVX-512 GEMM: the panel, the widened rows and the tile lie
        // inside the checked buffers.
        unsafe {
            let (ap, bp, c0) = (a16.as_ptr().add(row * kp), b.as_ptr().add(p * panel), p * NR);
            match m - row {
                1 => tile::<1>(l, ap, kp, bp, cp, c0, cols),
                2 => tile::<2>(l, ap, kp, bp, cp, c0, cols),
                3 => tile::<3>(l, ap, kp, bp, cp, c0, cols),
                4 => tile::<4>(l, ap, kp, bp, cp, c0, cols),
                5 => tile::<5>(l, ap, kp, bp, cp, c0, cols),
                _ => tile::<MR>(l, ap, kp, bp, cp, c0, cols),
            }
        }
    });
}

/// Depthwise rows as in `avx512::dw_rows`, 8 channels per `ymm`: interior pixels of 3x3
/// layers four at a time on raw `x`, the others tap by tap ([`DwInt8::walk_rows`]).
///
/// # Safety
/// The CPU has AVX2; as `avx512::dw_rows` otherwise.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dw_rows(l: &DwInt8, band: RowBand<'_, u8>) {
    let dw = Dw { requant: requant_consts(&l.q.requant), zx: _mm256_set1_epi32(l.q.input_zero_point) };
    // SAFETY: forwarded contract; `Dw` inlines into this AVX2 context.
    unsafe { l.walk_rows(&dw, band) }
}

/// Loads `n <= 8` bytes (a stack buffer for a channel tail) widened to 8 i32.
#[inline(always)]
unsafe fn load8(px: *const u8, n: usize) -> __m256i {
    // SAFETY: (the caller) `px` holds `n` bytes.
    unsafe {
        let raw = if n == 8 {
            _mm_loadl_epi64(px.cast())
        } else {
            let mut buf = [0u8; 16];
            std::ptr::copy_nonoverlapping(px, buf.as_mut_ptr(), n);
            _mm_loadu_si128(buf.as_ptr().cast())
        };
        _mm256_cvtepu8_epi32(raw)
    }
}

/// The AVX2 depthwise code: the requantization constants (zero point, clamp bounds) and
/// the input's zero point.
struct Dw {
    requant: (__m256i, __m256, __m256),
    zx: __m256i,
}

impl DwKernel for Dw {
    const LANES: usize = 8;
    type Acc = __m256i;
    type Tail = usize;
    #[inline(always)]
    fn tail(left: usize) -> usize {
        left.min(8)
    }
    #[inline(always)]
    unsafe fn load(p: *const i32) -> __m256i {
        // SAFETY: (the caller) `p` holds 8 i32; AVX in the caller's context.
        unsafe { _mm256_loadu_si256(p.cast()) }
    }
    #[inline(always)]
    unsafe fn mac_centered(&self, acc: __m256i, x: *const u8, n: usize, w: *const i32) -> __m256i {
        // SAFETY: (the caller) `x` holds `n` bytes, `w` 8 i32.
        unsafe {
            let x = _mm256_sub_epi32(load8(x, n), self.zx);
            _mm256_add_epi32(acc, _mm256_madd_epi16(x, _mm256_loadu_si256(w.cast())))
        }
    }
    #[inline(always)]
    unsafe fn store(&self, acc: __m256i, mult: *const f32, dst: *mut u8, n: usize) {
        let (zp, lo, hi) = self.requant;
        // SAFETY: forwarded contract.
        unsafe { store8(acc, mult, zp, lo, hi, dst, n) }
    }

    /// As `avx512`'s: per kernel row, each input pixel loaded once for 12 multiply-adds.
    #[inline(always)]
    unsafe fn tile<const S: usize>(&self, l: &DwInt8, src: *const u8, in_row: usize, dst: *mut u8, c: usize) {
        const R: usize = 4;
        let (zp, lo, hi) = self.requant;
        let cpad = l.cpad;
        for ch in (0..c).step_by(8) {
            let n = (c - ch).min(8);
            // SAFETY: (the caller) the tile's taps are inside the image.
            unsafe {
                let bias = _mm256_loadu_si256(l.interior_bias.as_ptr().add(ch).cast());
                let mut acc = [bias; R];
                for ky in 0..3 {
                    let row = src.add(ky * in_row + ch);
                    let w = [0, 1, 2].map(|kx| {
                        _mm256_loadu_si256(l.weights.as_ptr().add((ky * 3 + kx) * cpad + ch).cast())
                    });
                    for (p, acc_p) in acc.iter_mut().enumerate() {
                        for (kx, &wk) in w.iter().enumerate() {
                            let x = load8(row.add((S * p + kx) * c), n);
                            *acc_p = _mm256_add_epi32(*acc_p, _mm256_madd_epi16(x, wk));
                        }
                    }
                }
                for (p, &acc_p) in acc.iter().enumerate() {
                    store8(acc_p, l.multiplier.as_ptr().add(ch), zp, lo, hi, dst.add(p * c + ch), n);
                }
            }
        }
    }
}
