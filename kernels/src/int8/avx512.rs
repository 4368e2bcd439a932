//! AVX-512 int8 kernels: the `vpdpbusd` GEMM (AVX512_VNNI) and the depthwise rows
//! (AVX-512BW), both with the requantizing store of [`super::Requant`].

use std::arch::x86_64::*;

use super::depthwise::DwInt8;
use super::gemm::GemmInt8;
use super::REQUANT_LIMIT;
use crate::gemm::split_tasks;
use crate::pool::{Par, SharedOut};
use crate::spec::Dims;

/// Rows per GEMM tile: 6 rows x 4 `zmm` of 16 channels = 24 accumulators, plus 4 B vectors
/// and a broadcast, of the 32 registers.
const MR: usize = 6;
/// Channels per packed panel (4 `zmm` of 16 i32 lanes).
const NR: usize = 64;

/// The requantizing store of 16 biased accumulators (i32) of 16 channels.
#[inline(always)]
unsafe fn store16(x: __m512i, mult: *const f32, zp: __m512i, lo: __m512i, hi: __m512i, dst: *mut u8, mask: __mmask16) {
    // SAFETY (caller): `mult` holds 16 values; `dst` holds the lanes of `mask`.
    unsafe {
        let lim = _mm512_set1_ps(REQUANT_LIMIT);
        let f = _mm512_mul_ps(_mm512_cvtepi32_ps(x), _mm512_loadu_ps(mult));
        let f = _mm512_min_ps(_mm512_max_ps(f, _mm512_sub_ps(_mm512_setzero_ps(), lim)), lim);
        // Round to nearest even (the MXCSR default), as `f32::round_ties_even`.
        let i = _mm512_add_epi32(_mm512_cvtps_epi32(f), zp);
        let i = _mm512_min_epi32(_mm512_max_epi32(i, lo), hi);
        _mm512_mask_cvtepi32_storeu_epi8(dst.cast(), mask, i);
    }
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
    let mut acc = [[_mm512_setzero_si512(); 4]; R];
    let full = k / 4;
    // SAFETY: the caller passes `R` rows of `k` bytes at `a`, a panel of `ceil(k/4) * 256`
    // bytes at `b`, and `R` rows of `n` bytes at `c` with `c0 + cols <= n`.
    unsafe {
        for g in 0..full {
            let bp = b.add(g * 256);
            let bv = [
                _mm512_loadu_si512(bp.cast()),
                _mm512_loadu_si512(bp.add(64).cast()),
                _mm512_loadu_si512(bp.add(128).cast()),
                _mm512_loadu_si512(bp.add(192).cast()),
            ];
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_epi32(a.add(r * lda + g * 4).cast::<i32>().read_unaligned());
                for v in 0..4 {
                    acc_r[v] = _mm512_dpbusd_epi32(acc_r[v], av, bv[v]);
                }
            }
        }
        if k % 4 != 0 {
            // The last group, zero-padded (its B bytes are zero too).
            let bp = b.add(full * 256);
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let mut word = [0u8; 4];
                for (kk, wb) in word.iter_mut().enumerate().take(k % 4) {
                    *wb = *a.add(r * lda + full * 4 + kk);
                }
                let av = _mm512_set1_epi32(i32::from_le_bytes(word));
                for (v, acc_v) in acc_r.iter_mut().enumerate() {
                    *acc_v = _mm512_dpbusd_epi32(*acc_v, av, _mm512_loadu_si512(bp.add(v * 64).cast()));
                }
            }
        }
        let rq = &l.q.requant;
        let (zp, lo, hi) = (_mm512_set1_epi32(rq.zero_point), _mm512_set1_epi32(rq.lo), _mm512_set1_epi32(rq.hi));
        for (r, acc_r) in acc.iter().enumerate() {
            for (v, &acc_v) in acc_r.iter().enumerate() {
                if v * 16 < cols {
                    let ch = c0 + v * 16;
                    let dst = c.add(r * ldc + ch);
                    let x = _mm512_add_epi32(acc_v, _mm512_loadu_si512(l.bias.as_ptr().add(ch).cast()));
                    store16(x, l.multiplier.as_ptr().add(ch), zp, lo, hi, dst, lanes(cols - v * 16));
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
    let panel = k.div_ceil(4) * 256;
    let (row_blocks, panels) = (m.div_ceil(MR), n.div_ceil(NR));
    let out = SharedOut(c.as_mut_ptr());
    let a = a.as_ptr() as usize;
    split_tasks(row_blocks, panels, par, |(r0, r1), (p0, p1)| {
        let (a, c) = (a as *const u8, out.get());
        for p in p0..p1 {
            let (c0, cols) = (p * NR, NR.min(n - p * NR));
            // SAFETY: panel `p` lies inside `b`; task rows and panels are disjoint, so each
            // output tile is written by one task; rows `< m`.
            unsafe {
                let bp = b.as_ptr().add(p * panel);
                for rb in r0..r1 {
                    let row = rb * MR;
                    let (ap, cp) = (a.add(row * k), c.add(row * n));
                    match m - row {
                        1 => tile::<1>(l, ap, bp, cp, c0, cols),
                        2 => tile::<2>(l, ap, bp, cp, c0, cols),
                        3 => tile::<3>(l, ap, bp, cp, c0, cols),
                        4 => tile::<4>(l, ap, bp, cp, c0, cols),
                        5 => tile::<5>(l, ap, bp, cp, c0, cols),
                        _ => tile::<MR>(l, ap, bp, cp, c0, cols),
                    }
                }
            }
        }
    });
}

/// Depthwise output rows `first_row..` (over the batch) into `out` (whole rows): 16
/// channels per `zmm` as i32, `(x - z_x) * w` by `vpmaddwd` (both fit i16; the weights'
/// upper halves are zero, so the other product is 0).
///
/// # Safety
/// The CPU has AVX-512F/BW/VL; `input` holds `in_dims`, `out` whole output rows inside the
/// output, and `l`'s packed weights hold `taps * cpad` i32 (`cpad` a multiple of 16).
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(crate) unsafe fn dw_rows(l: &DwInt8, input: &[u8], in_dims: Dims, o: Dims, first_row: usize, out: &mut [u8]) {
    let spec = &l.q.spec;
    let (c, cpad) = (o.c, l.cpad);
    let rq = &l.q.requant;
    let (zp, lo, hi) = (_mm512_set1_epi32(rq.zero_point), _mm512_set1_epi32(rq.lo), _mm512_set1_epi32(rq.hi));
    let zx = _mm512_set1_epi32(l.q.input_zero_point);
    let row = o.w * c;
    let blocks = c.div_ceil(16);
    for (r, out_row) in out.chunks_exact_mut(row).enumerate() {
        let (b, oy) = ((first_row + r) / o.h, (first_row + r) % o.h);
        let (ky0, ky1) = l.tap_range(oy, spec.stride_h, spec.padding.top, spec.kernel_h, in_dims.h);
        for ox in 0..o.w {
            let (kx0, kx1) = l.tap_range(ox, spec.stride_w, spec.padding.left, spec.kernel_w, in_dims.w);
            for cb in 0..blocks {
                let ch = cb * 16;
                let mask = lanes(c - ch);
                // SAFETY: every tap read is inside the image (the tap ranges), masked to the
                // `c - ch` channels left; weights and bias are padded to `cpad`.
                unsafe {
                    let mut acc = _mm512_loadu_si512(l.bias.as_ptr().add(ch).cast());
                    for ky in ky0..ky1 {
                        let iy = oy * spec.stride_h + ky - spec.padding.top;
                        let base = (b * in_dims.h + iy) * in_dims.w;
                        for kx in kx0..kx1 {
                            let ix = ox * spec.stride_w + kx - spec.padding.left;
                            let px = input.as_ptr().add((base + ix) * c + ch);
                            let x = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mask, px.cast()));
                            let w = _mm512_loadu_si512(l.weights.as_ptr().add((ky * spec.kernel_w + kx) * cpad + ch).cast());
                            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_sub_epi32(x, zx), w));
                        }
                    }
                    let dst = out_row.as_mut_ptr().add(ox * c + ch);
                    store16(acc, l.multiplier.as_ptr().add(ch), zp, lo, hi, dst, mask);
                }
            }
        }
    }
}
