//! AVX-512 int8 kernels: the `vpdpbusd` GEMM (AVX512_VNNI) and the depthwise rows
//! (AVX-512BW), both with the requantizing store of [`super::Requant`].

use std::arch::x86_64::*;

use super::depthwise::DwInt8;
use super::gemm::GemmInt8;
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
/// channels per `zmm` as i32, `x * w` by `vpmaddwd` (both fit i16; the weights' upper
/// halves are zero, so the other product is 0). Interior pixels of 3x3 layers go four at a
/// time through [`dw3_tile`] on raw `x` (the zero point folded into their bias); the other
/// pixels sum `(x - z_x) * w` over their taps inside the image.
///
/// # Safety
/// The CPU has AVX-512F/BW/VL; `input` holds `in_dims`, `out` whole output rows inside the
/// output, and `l`'s packed weights hold `taps * cpad` i32 (`cpad` a multiple of 16).
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(crate) unsafe fn dw_rows(
    l: &DwInt8,
    input: &[u8],
    in_dims: Dims,
    o: Dims,
    first_row: usize,
    out: &mut [u8],
) {
    // SAFETY: forwarded contract.
    unsafe { dw_rows_body::<false>(l, input, in_dims, o, first_row, out) }
}

/// [`dw_rows`] with AVX512_VNNI: the interior tiles multiply-accumulate with `vpdpwssd`
/// (one instruction for `vpmaddwd` + `vpaddd`).
///
/// # Safety
/// As [`dw_rows`], and the CPU has AVX512_VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn dw_rows_vnni(
    l: &DwInt8,
    input: &[u8],
    in_dims: Dims,
    o: Dims,
    first_row: usize,
    out: &mut [u8],
) {
    // SAFETY: forwarded contract.
    unsafe { dw_rows_body::<true>(l, input, in_dims, o, first_row, out) }
}

/// The body of [`dw_rows`] and [`dw_rows_vnni`].
#[inline(always)]
unsafe fn dw_rows_body<const VNNI: bool>(
    l: &DwInt8,
    input: &[u8],
    in_dims: Dims,
    o: Dims,
    first_row: usize,
    out: &mut [u8],
) {
    let spec = &l.q.spec;
    let c = o.c;
    let rq = &l.q.requant;
    let (zp, lo, hi) = requant_consts(rq);
    let row = o.w * c;
    let tiled =
        spec.kernel_h == 3 && spec.kernel_w == 3 && spec.stride_h == spec.stride_w && spec.stride_w <= 2;
    let (ix0, ix1) = if tiled { l.interior(o.w, in_dims.w) } else { (0, 0) };
    for (r, out_row) in out.chunks_exact_mut(row).enumerate() {
        let (b, oy) = ((first_row + r) / o.h, (first_row + r) % o.h);
        let (ky0, ky1) = l.tap_range(oy, spec.stride_h, spec.padding.top, spec.kernel_h, in_dims.h);
        let (mut ox, full_rows) = (0, ky1 - ky0 == spec.kernel_h);
        while ox < o.w {
            if full_rows && ox >= ix0 && ox + 4 <= ix1 {
                let iy = oy * spec.stride_h - spec.padding.top;
                let ix = ox * spec.stride_w - spec.padding.left;
                // SAFETY: the 4 pixels' 3x3 taps are inside the image (interior columns,
                // full rows); the output pixels are inside `out_row`.
                unsafe {
                    let src = input.as_ptr().add(((b * in_dims.h + iy) * in_dims.w + ix) * c);
                    let dst = out_row.as_mut_ptr().add(ox * c);
                    if spec.stride_w == 1 {
                        dw3_tile::<1, VNNI>(l, src, in_dims.w * c, dst, c, (zp, lo, hi));
                    } else {
                        dw3_tile::<2, VNNI>(l, src, in_dims.w * c, dst, c, (zp, lo, hi));
                    }
                }
                ox += 4;
                continue;
            }
            let (kx0, kx1) = l.tap_range(ox, spec.stride_w, spec.padding.left, spec.kernel_w, in_dims.w);
            // SAFETY: taps from the ranges lie inside the image; `ox < o.w`.
            unsafe {
                dw_pixel(
                    l,
                    input,
                    in_dims,
                    (b, oy, ox),
                    (ky0, ky1, kx0, kx1),
                    out_row.as_mut_ptr().add(ox * c),
                    (zp, lo, hi),
                )
            };
            ox += 1;
        }
    }
}

/// One output pixel of any depthwise layer: `(x - z_x) * w` over the taps `ky0..ky1` x
/// `kx0..kx1`, which must lie inside the image.
#[inline(always)]
unsafe fn dw_pixel(
    l: &DwInt8,
    input: &[u8],
    in_dims: Dims,
    (b, oy, ox): (usize, usize, usize),
    (ky0, ky1, kx0, kx1): (usize, usize, usize, usize),
    dst: *mut u8,
    (zp, lo, hi): (__m512i, __m512, __m512),
) {
    let spec = &l.q.spec;
    let (c, cpad) = (in_dims.c, l.cpad);
    let zx = _mm512_set1_epi32(l.q.input_zero_point);
    for ch in (0..c).step_by(16) {
        let mask = lanes(c - ch);
        // SAFETY: (the caller) taps inside the image, masked to the channels left; weights and
        // bias padded to `cpad`.
        unsafe {
            let mut acc = _mm512_loadu_si512(l.bias.as_ptr().add(ch).cast());
            for ky in ky0..ky1 {
                let iy = oy * spec.stride_h + ky - spec.padding.top;
                let base = (b * in_dims.h + iy) * in_dims.w;
                for kx in kx0..kx1 {
                    let ix = ox * spec.stride_w + kx - spec.padding.left;
                    let px = input.as_ptr().add((base + ix) * c + ch);
                    let x = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mask, px.cast()));
                    let w = _mm512_loadu_si512(
                        l.weights.as_ptr().add((ky * spec.kernel_w + kx) * cpad + ch).cast(),
                    );
                    acc = _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_sub_epi32(x, zx), w));
                }
            }
            store16(acc, l.multiplier.as_ptr().add(ch), zp, lo, hi, dst.add(ch), mask);
        }
    }
}

/// Four horizontally adjacent interior output pixels of a 3x3 layer at stride `S`: per
/// kernel row, the `3 + 3 (S - 1) + 3` input pixels are loaded once and each of the three
/// weight vectors once, for 12 multiply-adds.
#[inline(always)]
unsafe fn dw3_tile<const S: usize, const VNNI: bool>(
    l: &DwInt8,
    src: *const u8,
    in_row: usize,
    dst: *mut u8,
    c: usize,
    (zp, lo, hi): (__m512i, __m512, __m512),
) {
    const R: usize = 4;
    let cpad = l.cpad;
    for ch in (0..c).step_by(16) {
        let mask = lanes(c - ch);
        // SAFETY: (the caller) the tile's taps are inside the image; masked channel tails.
        unsafe {
            let bias = _mm512_loadu_si512(l.interior_bias.as_ptr().add(ch).cast());
            let mut acc = [bias; R];
            for ky in 0..3 {
                let row = src.add(ky * in_row + ch);
                let w = [0, 1, 2]
                    .map(|kx| _mm512_loadu_si512(l.weights.as_ptr().add((ky * 3 + kx) * cpad + ch).cast()));
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
