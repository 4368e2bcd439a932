//! AVX-512 int8 kernels: the `vpdpbusd` GEMM (AVX512_VNNI) and the depthwise rows
//! (AVX-512BW), both with the requantizing store of [`super::Requant`].

use std::arch::x86_64::*;

use super::depthwise::{DwInt8, DwKernel};
use super::gemm::{for_each_tile, GemmInt8};
use crate::algo::RowBand;
use crate::pool::Par;

/// Rows per GEMM tile: 6 rows x 4 `zmm` of 16 channels = 24 accumulators, plus 4 B vectors
/// and a broadcast, of the 32 registers.
const MR: usize = 6;
/// Channels per packed panel (4 `zmm` of 16 i32 lanes).
const NR: usize = 64;

/// The requantizing store of 16 biased accumulators (i32) of 16 channels.
#[inline(always)]
pub(crate) unsafe fn store16(
    x: __m512i,
    mult: *const f32,
    zp: __m512i,
    lo: __m512,
    hi: __m512,
    dst: *mut u8,
    mask: __mmask16,
) {
    // SAFETY: (the caller) `mult` holds 16 values; `dst` holds the lanes of `mask`.
    unsafe {
        let f = _mm512_mul_ps(_mm512_cvtepi32_ps(x), _mm512_loadu_ps(mult));
        // `Requant::apply`: clamp to the bounds less the zero point, round to nearest even
        // (the MXCSR default), add the zero point: 0..=255, so a truncating store.
        let f = _mm512_min_ps(_mm512_max_ps(f, lo), hi);
        let i = _mm512_add_epi32(_mm512_cvtps_epi32(f), zp);
        _mm512_mask_cvtepi32_storeu_epi8(dst.cast(), mask, i);
    }
}

/// The requantization constants of `rq` as vectors: zero point, and the clamp's bounds.
#[inline(always)]
fn requant_consts(rq: &super::Requant) -> (__m512i, __m512, __m512) {
    let (lo, hi) = rq.bounds();
    // SAFETY: plain register broadcasts (AVX-512F, in the callers' target-feature context).
    unsafe { (_mm512_set1_epi32(rq.zero_point), _mm512_set1_ps(lo), _mm512_set1_ps(hi)) }
}

/// The lanes of the first `n` channels (`n` may exceed 16).
#[inline(always)]
fn lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// One `R x 64` tile: rows `a[0..R]` (stride `lda`) times the packed panel `b`, stored to `c`
/// (stride `ldc`, `cols <= 64` valid channels).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile<const R: usize>(l: &GemmInt8, a: *const u8, b: *const i8, c: *mut u8, c0: usize, cols: usize) {
    let (k, n) = (l.q.spec.in_channels, l.q.spec.out_channels);
    let (lda, ldc) = (k, n);
    // The accumulators start at the folded bias (padded to the panel width), so the store
    // adds nothing.
    // SAFETY: the bias holds the packed width, a multiple of 64 channels.
    let bias = unsafe { [0, 1, 2, 3].map(|v| _mm512_loadu_si512(l.bias.as_ptr().add(c0 + v * 16).cast())) };
    let mut acc = [bias; R];
    let (full, groups) = (k / 4, k.div_ceil(4));
    // SAFETY: the caller passes `R` rows of `k` bytes at `a`, a panel of `ceil(k/4) * 256`
    // bytes at `b`, and `R` rows of `n` bytes at `c` with `c0 + cols <= n`.
    unsafe {
        // One loop for every group, the last maybe partial: a second loop for the tail made
        // LLVM keep the accumulators in memory around it.
        for g in 0..groups {
            let bp = b.add(g * 256);
            let bv = [
                _mm512_loadu_si512(bp.cast()),
                _mm512_loadu_si512(bp.add(64).cast()),
                _mm512_loadu_si512(bp.add(128).cast()),
                _mm512_loadu_si512(bp.add(192).cast()),
            ];
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let word = if g < full {
                    a.add(r * lda + g * 4).cast::<i32>().read_unaligned()
                } else {
                    // The last group, zero-padded (its B bytes are zero too).
                    let mut w = [0u8; 4];
                    for (kk, wb) in w.iter_mut().enumerate().take(k % 4) {
                        *wb = *a.add(r * lda + full * 4 + kk);
                    }
                    i32::from_le_bytes(w)
                };
                let av = _mm512_set1_epi32(word);
                for v in 0..4 {
                    acc_r[v] = _mm512_dpbusd_epi32(acc_r[v], av, bv[v]);
                }
            }
        }
        let rq = &l.q.requant;
        let (zp, lo, hi) = requant_consts(rq);
        for (r, acc_r) in acc.iter().enumerate() {
            for (v, &acc_v) in acc_r.iter().enumerate() {
                if v * 16 < cols {
                    let ch = c0 + v * 16;
                    let dst = c.add(r * ldc + ch);
                    store16(acc_v, l.multiplier.as_ptr().add(ch), zp, lo, hi, dst, lanes(cols - v * 16));
                }
            }
        }
    }
}

/// `c[m][n] = requant(a[m][k] x B)` over `par`.
///
/// # Safety
/// The CPU has AVX-512F/BW and AVX512_VNNI; `a` holds `m * k` bytes, `c` `m * n`, and `b` is
/// `l`'s VNNI panel packing.
pub(crate) unsafe fn gemm(l: &GemmInt8, b: &[i8], m: usize, a: &[u8], c: &mut [u8], par: Par<'_>) {
    let (k, n) = (l.q.spec.in_channels, l.q.spec.out_channels);
    // AMX-INT8 takes whole 16-row blocks where it can; `vpdpbusd` the rest.
    let done = if l.amx {
        // SAFETY: `amx` is set at prepare only where `isa::amx_int8()` and `amx::fits`.
        unsafe { super::amx::gemm(l, b, m, a, c, par) }
    } else {
        0
    };
    let (m, a, c) = (m - done, &a[done * k..], &mut c[done * n..]);
    if m == 0 {
        return;
    }
    let panel = k.div_ceil(4) * 256;
    for_each_tile((m, n), (MR, NR), c, par, |row, p, cols, cp| {
        // SAFETY: panel `p` lies inside `b`; rows `row..` of `a` and the tile at `cp` are
        // inside the checked buffers (`for_each_tile`).
        unsafe {
            let (ap, bp, c0) = (a.as_ptr().add(row * k), b.as_ptr().add(p * panel), p * NR);
            match m - row {
                1 => tile::<1>(l, ap, bp, cp, c0, cols),
                2 => tile::<2>(l, ap, bp, cp, c0, cols),
                3 => tile::<3>(l, ap, bp, cp, c0, cols),
                4 => tile::<4>(l, ap, bp, cp, c0, cols),
                5 => tile::<5>(l, ap, bp, cp, c0, cols),
                _ => tile::<MR>(l, ap, bp, cp, c0, cols),
            }
        }
    });
}

/// Depthwise output rows `rows.first_row..` (over the batch) into `rows.out` (whole rows):
/// 16 channels per `zmm` as i32, `x * w` by `vpmaddwd` (both fit i16; the weights' upper
/// halves are zero, so the other product is 0). Interior pixels of 3x3 layers go four at a
/// time on raw `x` (the zero point folded into their bias); the other pixels sum
/// `(x - z_x) * w` over their taps inside the image ([`DwInt8::walk_rows`]).
///
/// # Safety
/// The CPU has AVX-512F/BW/VL; `band` was checked, and `l`'s packed weights
/// hold `taps * cpad` i32 (`cpad` a multiple of 16).
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(crate) unsafe fn dw_rows(l: &DwInt8, band: RowBand<'_, u8>) {
    // SAFETY: forwarded contract; `Dw` inlines into this AVX-512 context.
    unsafe { l.walk_rows(&Dw::<false>::of(l), band) }
}

/// [`dw_rows`] with AVX512_VNNI: the interior tiles multiply-accumulate with `vpdpwssd`
/// (one instruction for `vpmaddwd` + `vpaddd`).
///
/// # Safety
/// As [`dw_rows`], and the CPU has AVX512_VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn dw_rows_vnni(l: &DwInt8, band: RowBand<'_, u8>) {
    // SAFETY: forwarded contract; `Dw` inlines into this AVX-512 VNNI context.
    unsafe { l.walk_rows(&Dw::<true>::of(l), band) }
}

/// The AVX-512 depthwise code (`VNNI`: `vpdpwssd` in the interior tiles): the
/// requantization constants (zero point, clamp bounds) and the input's zero point.
struct Dw<const VNNI: bool> {
    requant: (__m512i, __m512, __m512),
    zx: __m512i,
}

impl<const VNNI: bool> Dw<VNNI> {
    /// `l`'s constants as vectors (inlined into the caller's AVX-512 context).
    #[inline(always)]
    fn of(l: &DwInt8) -> Self {
        // SAFETY: a register broadcast (AVX-512F, in the callers' target-feature context).
        Dw { requant: requant_consts(&l.q.requant), zx: unsafe { _mm512_set1_epi32(l.q.input_zero_point) } }
    }
}

impl<const VNNI: bool> DwKernel for Dw<VNNI> {
    const LANES: usize = 16;
    type Acc = __m512i;
    type Tail = __mmask16;
    #[inline(always)]
    fn tail(left: usize) -> __mmask16 {
        lanes(left)
    }
    #[inline(always)]
    unsafe fn load(p: *const i32) -> __m512i {
        // SAFETY: (the caller) `p` holds 16 i32; AVX-512F in the caller's context.
        unsafe { _mm512_loadu_si512(p.cast()) }
    }
    #[inline(always)]
    unsafe fn mac_centered(&self, acc: __m512i, x: *const u8, mask: __mmask16, w: *const i32) -> __m512i {
        // SAFETY: (the caller) `x` holds the masked bytes, `w` 16 i32.
        unsafe {
            let x = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mask, x.cast()));
            let w = _mm512_loadu_si512(w.cast());
            _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_sub_epi32(x, self.zx), w))
        }
    }
    #[inline(always)]
    unsafe fn store(&self, acc: __m512i, mult: *const f32, dst: *mut u8, mask: __mmask16) {
        let (zp, lo, hi) = self.requant;
        // SAFETY: forwarded contract.
        unsafe { store16(acc, mult, zp, lo, hi, dst, mask) }
    }

    /// Per kernel row, the `3 + 3 (S - 1) + 3` input pixels are loaded once and each of the
    /// three weight vectors once, for 12 multiply-adds.
    #[inline(always)]
    unsafe fn tile<const S: usize>(&self, l: &DwInt8, src: *const u8, in_row: usize, dst: *mut u8, c: usize) {
        const R: usize = 4;
        let (zp, lo, hi) = self.requant;
        let cpad = l.cpad;
        for ch in (0..c).step_by(16) {
            let mask = lanes(c - ch);
            // SAFETY: (the caller) the tile's taps are inside the image; masked channel tails.
            unsafe {
                let bias = _mm512_loadu_si512(l.interior_bias.as_ptr().add(ch).cast());
                let mut acc = [bias; R];
                for ky in 0..3 {
                    let row = src.add(ky * in_row + ch);
                    let w = [0, 1, 2].map(|kx| {
                        _mm512_loadu_si512(l.weights.as_ptr().add((ky * 3 + kx) * cpad + ch).cast())
                    });
                    // Input columns 0 ..= S * (R - 1) + 2.
                    let mut x = [_mm512_setzero_si512(); 3 * R];
                    for (i, xi) in x.iter_mut().enumerate().take(S * (R - 1) + 3) {
                        *xi = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mask, row.add(i * c).cast()));
                    }
                    for (p, acc_p) in acc.iter_mut().enumerate() {
                        for kx in 0..3 {
                            *acc_p = if VNNI {
                                _mm512_dpwssd_epi32(*acc_p, x[S * p + kx], w[kx])
                            } else {
                                _mm512_add_epi32(*acc_p, _mm512_madd_epi16(x[S * p + kx], w[kx]))
                            };
                        }
                    }
                }
                for (p, &acc_p) in acc.iter().enumerate() {
                    store16(acc_p, l.multiplier.as_ptr().add(ch), zp, lo, hi, dst.add(p * c + ch), mask);
                }
            }
        }
    }
}
