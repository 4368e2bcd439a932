//! AVX-512 int8 kernels: the `vpdpbusd` GEMM (AVX512_VNNI) and the depthwise rows
//! (AVX-512BW), both with the requantizing store of [`super::Requant`].

use std::arch::x86_64::*;

use super::depthwise::{DwInt8, DwKernel, Quads, QUAD_BLOCK};
use super::gemm::{for_each_tile, GemmInt8};
use crate::algo::RowBand;
use crate::pool::Par;
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

/// The requantizing store of `Requant::apply` on 64 channels at a time, through packs: each
/// vector is rounded on its own ([`round`](Self::round)), then four are packed to 64 bytes
/// with saturation (i32 -> i16, the zero point added, i16 -> u8) and clamped as bytes. Against
/// [`store16`] per vector it saves the zero point's add, the float clamp where
/// `Requant::rounds_in_range` holds, and `vpmovusdb`'s two shuffles: 6 vector ops per 16
/// channels instead of 9.
#[derive(Clone, Copy)]
pub(crate) struct Pack64 {
    /// The float clamp's bounds less the zero point (`Requant::bounds`).
    flo: __m512,
    fhi: __m512,
    /// The zero point as i16 lanes, the bounds as bytes.
    zp16: __m512i,
    lo8: __m512i,
    hi8: __m512i,
    /// Whether [`round`](Self::round) clamps in float first (`!Requant::rounds_in_range`).
    clamp_in_float: bool,
}

impl Pack64 {
    /// `rq`'s constants, for accumulators that may leave the conversion's range unless
    /// `in_range` (inlined into the callers' AVX-512 context).
    #[inline(always)]
    pub(crate) fn new(rq: &super::Requant, in_range: bool) -> Self {
        let (lo, hi) = rq.bounds();
        // SAFETY: register broadcasts (AVX-512F/BW, in the callers' target-feature context).
        unsafe {
            Pack64 {
                flo: _mm512_set1_ps(lo),
                fhi: _mm512_set1_ps(hi),
                zp16: _mm512_set1_epi16(rq.zero_point as i16),
                lo8: _mm512_set1_epi8(rq.lo as u8 as i8),
                hi8: _mm512_set1_epi8(rq.hi as u8 as i8),
                clamp_in_float: !in_range,
            }
        }
    }

    /// `round_even(acc * mult)` as i32 (the zero point not yet added).
    #[inline(always)]
    pub(crate) fn round(&self, acc: __m512i, mult: __m512) -> __m512i {
        // SAFETY: register operations (AVX-512F, in the callers' target-feature context).
        unsafe {
            let f = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), mult);
            let f = if self.clamp_in_float { _mm512_min_ps(_mm512_max_ps(f, self.flo), self.fhi) } else { f };
            _mm512_cvtps_epi32(f)
        }
    }

    /// The output bytes of four rounded vectors, in the packs' order: 128-bit lane `l` holds
    /// lanes `4l..4l + 4` of `q[0]`, then of `q[1]`, `q[2]`, `q[3]`. The saturations are
    /// exact: every value outside -32768..=32767 is outside the bounds too.
    #[inline(always)]
    pub(crate) fn packs(&self, q: [__m512i; 4]) -> __m512i {
        // SAFETY: register operations (AVX-512BW, in the callers' target-feature context).
        unsafe {
            let a = _mm512_adds_epi16(_mm512_packs_epi32(q[0], q[1]), self.zp16);
            let b = _mm512_adds_epi16(_mm512_packs_epi32(q[2], q[3]), self.zp16);
            _mm512_min_epu8(_mm512_max_epu8(_mm512_packus_epi16(a, b), self.lo8), self.hi8)
        }
    }

    /// The output bytes of four rounded vectors in order: bytes `16 i..16 i + 16` are `q[i]`.
    #[inline(always)]
    pub(crate) fn bytes(&self, q: [__m512i; 4]) -> __m512i {
        // SAFETY: register operations (AVX-512F/BW, in the callers' target-feature context).
        unsafe {
            let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
            _mm512_permutexvar_epi32(order, self.packs(q))
        }
    }

    /// Two rows of 32 channels through one pack: `q` holds the first row's two rounded
    /// vectors, then the second's, stored at `dst` and `second`; `None` for an odd last row
    /// packed with itself (its copy is not stored).
    ///
    /// # Safety
    /// `dst` and `second` each hold 32 bytes.
    #[inline(always)]
    pub(crate) unsafe fn store_row_pair(&self, q: [__m512i; 4], dst: *mut u8, second: Option<*mut u8>) {
        // SAFETY: (the caller) 32 bytes at each pointer; AVX-512F in the callers' context.
        unsafe {
            let bytes = self.bytes(q);
            _mm256_storeu_si256(dst.cast(), _mm512_castsi512_si256(bytes));
            if let Some(d) = second {
                _mm256_storeu_si256(d.cast(), _mm512_extracti64x4_epi64::<1>(bytes));
            }
        }
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
        store_rows(l, &acc, c, ldc, c0, cols);
    }
}

/// The requantizing store of `R` rows of `V` accumulator vectors (16 channels each): channels
/// `c0..c0 + cols` of every row (`cols <= 16 V`), the rows `ldc` bytes apart from `c`. A whole
/// 64-channel panel goes out as one 64-byte store per row, 32 channels (conv0) two rows per
/// pack (an odd last row packed with itself), any other width vector by vector, masked.
///
/// # Safety
/// The CPU has AVX-512F/BW; `l`'s multipliers hold `c0 + 64` values (the packed width is a
/// multiple of 64); `c` holds `R` rows of `c0 + cols` bytes, `ldc` apart.
#[inline(always)]
unsafe fn store_rows<const R: usize, const V: usize>(
    l: &GemmInt8,
    acc: &[[__m512i; V]; R],
    c: *mut u8,
    ldc: usize,
    c0: usize,
    cols: usize,
) {
    let rq = &l.q.requant;
    // SAFETY: (the caller) every load of the multipliers and store to `c` is inside them.
    unsafe {
        if (V == 4 && cols == NR) || cols == NR / 2 {
            let pack = Pack64::new(rq, l.in_range);
            let mult = [0, 1, 2, 3].map(|v| _mm512_loadu_ps(l.multiplier.as_ptr().add(c0 + v * 16)));
            if cols == NR {
                for (r, acc_r) in acc.iter().enumerate() {
                    let q = [0, 1, 2, 3].map(|v| pack.round(acc_r[v], mult[v]));
                    _mm512_storeu_si512(c.add(r * ldc + c0).cast(), pack.bytes(q));
                }
            } else {
                for r in (0..R).step_by(2) {
                    let r1 = (r + 1).min(R - 1);
                    let q = [(r, 0), (r, 1), (r1, 0), (r1, 1)].map(|(r, v)| pack.round(acc[r][v], mult[v]));
                    pack.store_row_pair(q, c.add(r * ldc + c0), (r1 > r).then(|| c.add(r1 * ldc + c0)));
                }
            }
            return;
        }
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

/// `c[m][n] = requant(a[m][k] x B)` over `par`: on AMX-INT8 tiles where the layer has them
/// (`amx.rs`), else `vpdpbusd` tiles.
///
/// # Safety
/// The CPU has AVX-512F/BW and AVX512_VNNI; `a` holds `m * k` bytes, `c` `m * n`, `scratch`
/// at least `GemmInt8::scratch_len` bytes, and `b` is `l`'s VNNI panel packing.
pub(crate) unsafe fn gemm(
    l: &GemmInt8,
    b: &[i8],
    m: usize,
    a: &[u8],
    c: &mut [u8],
    scratch: &mut [u8],
    par: Par<'_>,
) {
    let (k, n) = (l.q.spec.in_channels, l.q.spec.out_channels);
    if l.amx {
        // SAFETY: `amx` is set at prepare only where `isa::amx_int8()` and `amx::fits`; the
        // caller sized the scratch by `GemmInt8::scratch_len`.
        unsafe { super::amx::gemm(l, b, m, a, c, scratch, par) };
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

/// 3x3 depthwise output rows (stride 1 or 2) by `vpdpbusd` on quads of vertical taps
/// ([`Quads`]): per output row and block of 64 channels, the row walk interleaves each input
/// column's three rows once (8 in-lane unpacks for 64 channels) and every output pixel that
/// reads that column reuses it, so a pixel costs 12 `vpdpbusd` for 64 channels x 9 taps plus
/// `1 / stride` columns of unpacks. Taps outside the image read the zero point, so the edges
/// run the same code as the interior.
///
/// # Safety
/// The CPU has AVX-512F/BW/VL and AVX512_VNNI; `band` was checked; `quads` is `l`'s (a 3x3
/// layer at stride 1 or 2).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn dw3x3_rows(l: &DwInt8, quads: &Quads, band: RowBand<'_, u8>) {
    // SAFETY: forwarded contract (the same target features).
    unsafe {
        if quads.pixels == 2 {
            row_pair_rows(l, quads, band)
        } else if quads.pixels > 1 {
            grouped_rows(l, quads, band)
        } else if l.q.spec.stride_w == 1 {
            quad_rows::<1>(l, quads, band)
        } else {
            quad_rows::<2>(l, quads, band)
        }
    }
}

/// The row walk of [`dw3x3_rows`] at stride `S` (its own target features, so that the
/// column closure inherits them).
///
/// # Safety
/// As [`dw3x3_rows`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn quad_rows<const S: usize>(l: &DwInt8, quads: &Quads, band: RowBand<'_, u8>) {
    let RowBand { input, in_dims: i, out_dims: o, first_row, out } = band;
    let (spec, c) = (&l.q.spec, o.c);
    let zx = _mm512_set1_epi8(l.q.input_zero_point as u8 as i8);
    let (pad_left, pad_top) = (spec.padding.left as isize, spec.padding.top as isize);
    for (r, out_row) in out.chunks_exact_mut(o.w * c).enumerate() {
        let (b, oy) = ((first_row + r) / o.h, (first_row + r) % o.h);
        let rows = input_rows(input, i, b, (oy * S) as isize - pad_top);
        for ch in (0..c).step_by(QUAD_BLOCK) {
            let blk = ch / QUAD_BLOCK;
            let mask: __mmask64 = if c - ch >= QUAD_BLOCK { !0 } else { (1u64 << (c - ch)) - 1 };
            // SAFETY: the quads hold whole blocks (768 weight bytes, 64 bias and multiplier
            // lanes each); the masked loads and the store touch the block's real channels of
            // rows inside the image and of `out_row`; columns outside the image are not read.
            unsafe {
                let block = QuadBlock::load(quads, blk, &l.q.requant);
                let column = |ix: isize| -> [__m512i; 4] {
                    if !(0..i.w as isize).contains(&ix) {
                        return [zx; 4];
                    }
                    let off = ix as usize * c + ch;
                    let [x0, x1, x2] =
                        rows.map(|p| p.map_or(zx, |p| _mm512_maskz_loadu_epi8(mask, p.add(off).cast())));
                    quad(x0, x1, x2)
                };
                let ix0 = -pad_left;
                let (mut c0, mut c1) = (column(ix0), column(ix0 + 1));
                for ox in 0..o.w {
                    let base = (ox * S) as isize + ix0;
                    if S == 2 {
                        c1 = column(base + 1);
                    }
                    let c2 = column(base + 2);
                    let u8s = block.pixels([&c0, &c1, &c2]);
                    _mm512_mask_storeu_epi8(out_row.as_mut_ptr().add(ox * c + ch).cast(), mask, u8s);
                    if S == 1 {
                        (c0, c1) = (c1, c2);
                    } else {
                        c0 = c2;
                    }
                }
            }
        }
    }
}

/// [`dw3x3_rows`] for a layer whose 64-byte block holds `quads.pixels` adjacent pixels (8
/// or 16 channels, stride 1; 32 channels go to [`row_pair_rows`]): per output row, each
/// group of that many output pixels loads its three input column groups (the pixels' taps
/// `kx = 0, 1, 2`) per input row, the bytes of columns outside the image replaced by the
/// zero point in the load (`vmovdqu8` with a merge mask).
///
/// # Safety
/// As [`dw3x3_rows`], with `quads.pixels > 2` (so `C = 64 / quads.pixels`, stride 1).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn grouped_rows(l: &DwInt8, quads: &Quads, band: RowBand<'_, u8>) {
    let RowBand { input, in_dims: i, out_dims: o, first_row, out } = band;
    let (spec, c, px) = (&l.q.spec, o.c, quads.pixels);
    let zx = _mm512_set1_epi8(l.q.input_zero_point as u8 as i8);
    let (pad_left, pad_top) = (spec.padding.left as isize, spec.padding.top as isize);
    let block = QuadBlock::load(quads, 0, &l.q.requant);
    // The bytes of columns `ix..ix + px` that lie inside the image.
    let inside = |ix: isize| -> __mmask64 {
        (0..px)
            .filter(|&p| (0..i.w as isize).contains(&(ix + p as isize)))
            .fold(0, |m, p| m | (((1u64 << c) - 1) << (p * c)))
    };
    for (r, out_row) in out.chunks_exact_mut(o.w * c).enumerate() {
        let (b, oy) = ((first_row + r) / o.h, (first_row + r) % o.h);
        let rows = input_rows(input, i, b, oy as isize - pad_top);
        let column = |ix: isize| -> [__m512i; 4] {
            let interior = ix >= 0 && ix + px as isize <= i.w as isize;
            let m = if interior { !0 } else { inside(ix) };
            let [x0, x1, x2] = rows.map(|p| {
                p.map_or(zx, |p| {
                    let at = p.wrapping_offset(ix * c as isize);
                    // SAFETY: the load reads only the bytes of `m`, columns inside row `iy`
                    // (the address of a column left of the row is formed, never read). The
                    // interior loads are plain: a merge-masked load is a load and a blend.
                    unsafe {
                        if interior {
                            _mm512_loadu_si512(at.cast())
                        } else {
                            _mm512_mask_loadu_epi8(zx, m, at.cast())
                        }
                    }
                })
            });
            quad(x0, x1, x2)
        };
        for x0 in (0..o.w).step_by(px) {
            let ix = x0 as isize - pad_left;
            let u8s = block.pixels([&column(ix), &column(ix + 1), &column(ix + 2)]);
            let n = px.min(o.w - x0) * c;
            let mask = if n >= 64 { !0 } else { (1u64 << n) - 1 };
            // SAFETY: pixels `x0..x0 + n / c` are inside `out_row`.
            unsafe { _mm512_mask_storeu_epi8(out_row.as_mut_ptr().add(x0 * c).cast(), mask, u8s) };
        }
    }
}

/// [`dw3x3_rows`] for a layer of 32 channels at stride 1 (dw1), two output rows at a time:
/// a block's lower half is a pixel of the first row, its upper half the pixel below it, so
/// each column of quads interleaves the 32 channels of input rows `iy..iy + 3` in one half
/// and `iy + 1..iy + 4` in the other, and serves three output pixels as in [`quad_rows`]
/// (one new column per output pixel, no shuffles across halves). A band's odd last row,
/// or a row pair across images, runs with both halves on the same row, the upper half not
/// stored.
///
/// # Safety
/// As [`dw3x3_rows`], with `quads.pixels == 2` (so `C = 32`, stride 1).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn row_pair_rows(l: &DwInt8, quads: &Quads, band: RowBand<'_, u8>) {
    const C: usize = 32;
    let RowBand { input, in_dims: i, out_dims: o, first_row, out } = band;
    let spec = &l.q.spec;
    let zx = _mm512_set1_epi8(l.q.input_zero_point as u8 as i8);
    let zx_half = _mm512_castsi512_si256(zx);
    let (pad_left, pad_top) = (spec.padding.left as isize, spec.padding.top as isize);
    let block = QuadBlock::load(quads, 0, &l.q.requant);
    let row_len = o.w * C;
    let rows = out.len() / row_len;
    let out_p = out.as_mut_ptr();
    let mut r = 0;
    while r < rows {
        let (b, oy) = ((first_row + r) / o.h, (first_row + r) % o.h);
        let pair = r + 1 < rows && oy + 1 < o.h;
        let upper = input_rows(input, i, b, oy as isize - pad_top);
        let lower = if pair { input_rows(input, i, b, oy as isize + 1 - pad_top) } else { upper };
        let half = |p: Option<*const u8>, ix: isize| -> __m256i {
            // SAFETY: column `ix` of an image row is inside the checked input.
            p.map_or(zx_half, |p| unsafe { _mm256_loadu_si256(p.add(ix as usize * C).cast()) })
        };
        let column = |ix: isize| -> [__m512i; 4] {
            if !(0..i.w as isize).contains(&ix) {
                return [zx; 4];
            }
            let [x0, x1, x2] = [0, 1, 2].map(|ky| {
                _mm512_inserti64x4::<1>(_mm512_castsi256_si512(half(upper[ky], ix)), half(lower[ky], ix))
            });
            quad(x0, x1, x2)
        };
        let ix0 = -pad_left;
        let (mut c0, mut c1) = (column(ix0), column(ix0 + 1));
        // SAFETY: rows `r` and (when `pair`) `r + 1` of the band, `row_len` bytes each.
        let (dst0, dst1) = unsafe { (out_p.add(r * row_len), out_p.add((r + 1).min(rows - 1) * row_len)) };
        for ox in 0..o.w {
            let c2 = column(ox as isize + ix0 + 2);
            let u8s = block.pixels([&c0, &c1, &c2]);
            // SAFETY: pixel `ox` of the rows above (inside the band).
            unsafe {
                _mm256_storeu_si256(dst0.add(ox * C).cast(), _mm512_castsi512_si256(u8s));
                if pair {
                    _mm256_storeu_si256(dst1.add(ox * C).cast(), _mm512_extracti64x4_epi64::<1>(u8s));
                }
            }
            (c0, c1) = (c1, c2);
        }
        r += if pair { 2 } else { 1 };
    }
}

/// The three input rows of image `b` from row `iy0` (of a 3x3 window); `None` above or
/// below the image.
#[inline(always)]
fn input_rows(input: &[u8], i: Dims, b: usize, iy0: isize) -> [Option<*const u8>; 3] {
    [0, 1, 2].map(|ky| {
        let iy = iy0 + ky;
        (0..i.h as isize).contains(&iy).then(|| {
            // SAFETY: row `iy` of image `b` is inside the checked input.
            unsafe { input.as_ptr().add((b * i.h + iy as usize) * i.w * i.c) }
        })
    })
}

/// One 64-byte block of [`Quads`] in registers: the weights of the three kernel columns,
/// the bias and multipliers, and the requantization constants.
struct QuadBlock {
    w: [[__m512i; 4]; 3],
    bias: [__m512i; 4],
    mult: [__m512; 4],
    pack: Pack64,
}

impl QuadBlock {
    /// Block `blk` of `quads` (inlined into the callers' AVX-512 context).
    #[inline(always)]
    fn load(quads: &Quads, blk: usize, rq: &super::Requant) -> QuadBlock {
        // SAFETY: the quads hold whole blocks (768 weight bytes, 64 bias and multiplier
        // lanes each); AVX-512F in the callers' target-feature context.
        unsafe {
            let wp = quads.weights.as_ptr().add(blk * 768);
            let (bp, mp) =
                (quads.bias.as_ptr().add(blk * QUAD_BLOCK), quads.multiplier.as_ptr().add(blk * QUAD_BLOCK));
            // Loops, not closures: a closure here would not inherit the callers' target
            // features, and its intrinsics would become calls (the kernel ran 30x slower).
            let mut b = QuadBlock {
                w: [[_mm512_setzero_si512(); 4]; 3],
                bias: [_mm512_setzero_si512(); 4],
                mult: [_mm512_setzero_ps(); 4],
                pack: Pack64::new(rq, quads.in_range),
            };
            for j in 0..4 {
                for kx in 0..3 {
                    b.w[kx][j] = _mm512_loadu_si512(wp.add((kx * 4 + j) * 64).cast());
                }
                b.bias[j] = _mm512_loadu_si512(bp.add(j * 16).cast());
                b.mult[j] = _mm512_loadu_ps(mp.add(j * 16));
            }
            b
        }
    }

    /// The block's 64 output bytes (in channel order) from the quads of its three input
    /// columns: 12 `vpdpbusd`, and the requantization and packs of [`Pack64`], whose order
    /// undoes the quads' channel order.
    #[inline(always)]
    fn pixels(&self, col: [&[__m512i; 4]; 3]) -> __m512i {
        // SAFETY: register operations (AVX-512F/BW/VNNI, in the callers' target-feature
        // context).
        unsafe {
            let mut q = [_mm512_setzero_si512(); 4];
            for (j, q) in q.iter_mut().enumerate() {
                let a = _mm512_dpbusd_epi32(self.bias[j], col[0][j], self.w[0][j]);
                let a = _mm512_dpbusd_epi32(a, col[1][j], self.w[1][j]);
                let a = _mm512_dpbusd_epi32(a, col[2][j], self.w[2][j]);
                *q = self.pack.round(a, self.mult[j]);
            }
            self.pack.packs(q)
        }
    }
}

/// Three 64-channel input rows interleaved into quads `(x0, x1, x2, 0)` per channel, in
/// [`Quads`]'s order: accumulator `j` holds channels `16 (d / 4) + 4 j + d % 4`.
#[inline(always)]
fn quad(x0: __m512i, x1: __m512i, x2: __m512i) -> [__m512i; 4] {
    // SAFETY: register shuffles (AVX-512BW, in the callers' target-feature context).
    unsafe {
        let z = _mm512_setzero_si512();
        let (p01l, p01h) = (_mm512_unpacklo_epi8(x0, x1), _mm512_unpackhi_epi8(x0, x1));
        let (p2l, p2h) = (_mm512_unpacklo_epi8(x2, z), _mm512_unpackhi_epi8(x2, z));
        [
            _mm512_unpacklo_epi16(p01l, p2l),
            _mm512_unpackhi_epi16(p01l, p2l),
            _mm512_unpacklo_epi16(p01h, p2h),
            _mm512_unpackhi_epi16(p01h, p2h),
        ]
    }
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

/// Pixels per tile of [`dense_pixels`]: 8 pixels x 2 `zmm` of 16 channels = 16 accumulators.
pub(crate) const DENSE_PIXELS: usize = 8;

/// Where one tile of [`dense_pixels`] reads its activations: pixel `r`'s kernel row `ky` is
/// `groups` dwords at `a + r * pixel_stride + ky * row_stride` (the kernel row's `kw * Cin`
/// bytes and up to 3 more, which meet zero weights).
#[derive(Clone, Copy)]
pub(crate) struct DenseTaps {
    pub(crate) a: *const u8,
    pub(crate) pixel_stride: usize,
    pub(crate) row_stride: usize,
    /// Kernel rows, and dwords per kernel row.
    pub(crate) rows: usize,
    pub(crate) groups: usize,
}

/// `R` output pixels of a dense convolution with at most 32 output channels, read in place
/// (no column buffer): per dword of a kernel row, one broadcast and two `vpdpbusd` into the
/// pixel's 32 channels. `l` is the GEMM over the padded columns `rows * groups * 4` (its
/// panels hold 64 channels, of which the first 32 are read); `c` holds `R` pixels of
/// `n <= 32` channels, `n` apart.
///
/// # Safety
/// The CPU has AVX-512F/BW and AVX512_VNNI; every dword `taps` names is readable; `b` is `l`'s
/// VNNI packing of `rows * groups * 4` columns; `c` holds `R * n` bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn dense_pixels<const R: usize>(l: &GemmInt8, b: *const i8, taps: DenseTaps, c: *mut u8) {
    let n = l.q.spec.out_channels;
    // SAFETY: the bias and multipliers hold the packed width (64); the caller's contract
    // covers the reads of `taps`, `b` and the stores to `c`.
    unsafe {
        let bias = [0, 1].map(|v| _mm512_loadu_si512(l.bias.as_ptr().add(v * 16).cast()));
        let mut acc = [bias; R];
        for ky in 0..taps.rows {
            let row = taps.a.add(ky * taps.row_stride);
            for g in 0..taps.groups {
                let bp = b.add((ky * taps.groups + g) * 256);
                let bv = [_mm512_loadu_si512(bp.cast()), _mm512_loadu_si512(bp.add(64).cast())];
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let word = row.add(r * taps.pixel_stride + g * 4).cast::<i32>().read_unaligned();
                    let av = _mm512_set1_epi32(word);
                    acc_r[0] = _mm512_dpbusd_epi32(acc_r[0], av, bv[0]);
                    acc_r[1] = _mm512_dpbusd_epi32(acc_r[1], av, bv[1]);
                }
            }
        }
        store_rows(l, &acc, c, n, 0, n);
    }
}
