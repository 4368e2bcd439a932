//! bf16 and f16 GEMM on AMX tiles: `C = act(A B + bias)` with A and C stored as bf16 (AMX-BF16:
//! Sapphire Rapids on) or f16 (AMX-FP16: Granite Rapids on), B packed in pairs of the same
//! type (the [`PackedPairs`] of `avx512_bf16.rs`), f32 accumulation in the tiles.
//!
//! `tdpbf16ps tC, tA, tB` adds a 16 x 32 bf16 tile of A times a 32 x 16 tile of B (stored
//! as 16 rows of 16 column pairs) into a 16 x 16 f32 tile: 8,192 multiply-adds per
//! instruction, 16 times an AVX-512 FMA's 512 per two ports. `tdpfp16ps` is the same on
//! f16 tiles, so the two types share every line here but the instruction and the narrowing
//! of C ([`Half::IS_F16`]).
//!
//! - **Tiles**: tmm0..3 hold a 32 x 32 block of C (2 x 2 tiles), tmm4/5 the two 16-row A
//!   tiles of a 32-wide K step, tmm6/7 the two 16-column B tiles. Per K step: 4 loads, 4
//!   `tdpbf16ps`.
//! - **A** is loaded straight from the NHWC bf16 rows (`tileloadd` takes a row stride), so
//!   no packing; **B** tiles are 16 consecutive pairs of a [`PackedPairs`] panel (row
//!   stride 256 bytes: 64 columns x 2 bf16).
//! - **Shapes**: K must be a multiple of 32 (every MobileNetV1 pointwise and FC layer); a
//!   last group of fewer than 32 columns (the FC layer's N = 1000) is stored masked; rows go
//!   in blocks of 32, the last `m % 32` from a copy in scratch ([`copy_tail`]).
//! - **Epilogue**: the C block is stored to a 4 KiB stack buffer, then bias, clamp and the
//!   narrowing (`vcvtneps2bf16`, `vcvtps2ph`; both round to nearest even) run on AVX-512.
//! - **State**: the tile configuration is per thread: each task loads it first and
//!   releases the tiles last (`ldtilecfg` / `tilerelease`). The process asked Linux for the
//!   tile state once ([`crate::isa::Isa::Amx`]).

use std::arch::asm;
use std::arch::x86_64::*;

use super::avx512_bf16::{Half, PackedPairs, PairsGemm, NR};
use super::driver::{split_tasks, Order, SharedOut};

use crate::pool::Par;
use crate::simd::Clamp;

/// The K and N granularity of the tiles.
pub(crate) const STEP: usize = 32;

/// The 64-byte tile configuration (palette 1): eight tiles of 16 rows x 64 bytes (the int8
/// GEMM, `int8/amx.rs`, loads the same one).
#[repr(C, align(64))]
pub(crate) struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

pub(crate) const CONFIG: TileConfig = TileConfig {
    palette: 1,
    start_row: 0,
    reserved: [0; 14],
    colsb: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
    rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
};

/// One K step of a block, in the caller's `unsafe`: `k_step!(op, a, a2, sa, b, b2, sb, two)`
/// loads A tile tmm4 from `a` (rows `sa` bytes apart) and B tiles tmm6/7 from `b` and `b2`
/// (rows `sb` apart) and runs `op` (`tdpbf16ps`, `tdpbusd`) into tmm0/1; where `two`, A
/// tile tmm5 from `a2` into tmm2/3. The int8 AMX GEMM shares it.
macro_rules! k_step {
    ($op:literal, $a:expr, $a2:expr, $sa:expr, $b:expr, $b2:expr, $sb:expr, $two:expr) => {
        asm!(
            "tileloadd tmm4, [{a} + {sa}*1]",
            "tileloadd tmm6, [{b} + {sb}*1]",
            "tileloadd tmm7, [{b2} + {sb}*1]",
            concat!($op, " tmm0, tmm4, tmm6"),
            concat!($op, " tmm1, tmm4, tmm7"),
            a = in(reg) $a,
            sa = in(reg) $sa,
            b = in(reg) $b,
            b2 = in(reg) $b2,
            sb = in(reg) $sb,
            options(nostack, readonly)
        );
        if $two {
            asm!(
                "tileloadd tmm5, [{a} + {sa}*1]",
                concat!($op, " tmm2, tmm5, tmm6"),
                concat!($op, " tmm3, tmm5, tmm7"),
                a = in(reg) $a2,
                sa = in(reg) $sa,
                options(nostack, readonly)
            );
        }
    };
}
pub(crate) use k_step;

/// Whether [`gemm`] can run a `k x n` B: K a multiple of [`STEP`] (any N: the packed
/// panels are zero past N, and the last column group's stores are masked).
pub(crate) fn fits(k: usize, n: usize) -> bool {
    k.is_multiple_of(STEP) && k > 0 && n > 0
}

/// `C = act(A B + bias)`, every row: 32-row blocks read A in place, the last `m % 32` rows
/// come from their copy in `tail` ([`copy_tail`]).
///
/// # Safety
/// The CPU has AMX-BF16 with the tile state granted and AVX512_BF16
/// (`isa::available(Isa::Amx)`), and for f16 AMX-FP16 too (`isa::amx_fp16()`);
/// `fits(b.k, b.n)`; A holds `m` rows of `b.k` values `lda` apart and C `m` rows of `b.n`
/// `ldc` apart; `tail` holds [`tail_len`]`(m, b.k)` values.
pub(crate) unsafe fn gemm<T: Half>(g: PairsGemm<'_, T>, tail: &mut [T], par: Par<'_>) {
    let PairsGemm { m, a, lda, b, clamp, c, ldc } = g;
    let full = copy_tail(a, m, b.k, lda, tail);
    let groups = b.n.div_ceil(STEP);
    let (a_in, c_out) =
        (SharedOut(a.as_ptr().cast::<u16>().cast_mut()), SharedOut(c.as_mut_ptr().cast::<u16>()));
    let tail = SharedOut(tail.as_mut_ptr().cast::<u16>());
    // SAFETY: the caller guarantees AMX and the buffers; blocks are inside `m` rows and `n`
    // columns, each (block, group) is written by one task; the tail block's 32 rows lie
    // inside `tail`.
    unsafe {
        for_each_block(m.div_ceil(32), groups, par, |rb, g| {
            let i = rb * 32;
            let (a_ptr, a_ld) = if i < full { (a_in.get().add(i * lda), lda) } else { (tail.get(), b.k) };
            let c_ptr = c_out.get().add(i * ldc);
            block(a_ptr.cast_const(), a_ld, b, g * STEP, (m - i).min(32), clamp, c_ptr, ldc);
        });
    }
}

/// The length (in elements) of the tail block of an `m x k` A: 32 rows of `k` where `m % 32`
/// rows are left after the whole blocks, else none.
pub(crate) fn tail_len(m: usize, k: usize) -> crate::error::Result<usize> {
    if m.is_multiple_of(32) {
        Ok(0)
    } else {
        crate::error::checked_product("AMX tail block", &[32, k])
    }
}

/// Copies the last `m % 32` rows of `a` (rows `lda` apart, `k` used) into `tail` (rows `k`
/// apart), so that the last block's tile loads never read past A; returns the rows of the
/// whole blocks before them. The tail's other rows keep whatever they held: their results
/// are computed but never stored. (Those rows went to the vector path before, one more pass
/// over all of B: for the single last row of pw13 it streamed the whole 1-2 MiB of weights
/// again: bf16 pw13 0.198 -> 0.159 ms, Xeon 6/167.)
pub(crate) fn copy_tail<T: Copy>(a: &[T], m: usize, k: usize, lda: usize, tail: &mut [T]) -> usize {
    let full = m / 32 * 32;
    for r in full..m {
        tail[(r - full) * k..][..k].copy_from_slice(&a[r * lda..][..k]);
    }
    full
}

/// Runs `block(rb, g)` for every 32-row block `rb < blocks` and 32-column group `g < groups`,
/// split over `par` (inline on one thread): each task loads the tile configuration first and
/// releases the tiles last (`ldtilecfg` / `tilerelease`). The int8 AMX GEMM shares it.
///
/// # Safety
/// The CPU has AMX with the tile state granted (`isa::available(Isa::Amx)`), and `block` is
/// sound to call for every `(rb, g)` from any task.
pub(crate) unsafe fn for_each_block(
    blocks: usize,
    groups: usize,
    par: Par<'_>,
    block: impl Fn(usize, usize) + Sync,
) {
    let task = |(rb0, rb1): (usize, usize), (g0, g1): (usize, usize)| {
        // SAFETY: the caller guarantees AMX; the configuration is a valid palette-1 one.
        unsafe { asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly)) };
        for g in g0..g1 {
            for rb in rb0..rb1 {
                block(rb, g);
            }
        }
        // SAFETY: as above.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    };
    if par.threads() <= 1 || blocks * groups < 2 {
        task((0, blocks), (0, groups));
    } else {
        // Rows, so the next layer reads its rows from the same core; but where there are
        // no more row blocks than threads, a thread's rows span every column, so each
        // would stream all of B: then columns. Measured at 2 threads, Xeon 6/167, 3
        // interleaved rounds, columns / rows: pw12, pw13 (2 row blocks) 0.82-0.88 at int8
        // and bf16; pw6..pw11 (7 row blocks) 1.06-1.15.
        let order = if blocks <= par.threads() { Order::Columns } else { Order::Rows };
        split_tasks(blocks, groups, par, order, task);
    }
}

/// Stores the 2 x 2 accumulator tiles tmm0..3 as one 32 x 32 block of 4-byte values (f32 or
/// i32) at `out`, rows 128 bytes apart.
///
/// # Safety
/// AMX as in [`for_each_block`], with the configuration loaded on this thread; `out` holds
/// 32 x 32 x 4 bytes.
#[inline(always)]
pub(crate) unsafe fn store_block(out: *mut u8) {
    // SAFETY: forwarded contract.
    unsafe {
        asm!(
            "tilestored [{o} + {s}*1], tmm0",
            "tilestored [{o1} + {s}*1], tmm1",
            "tilestored [{o2} + {s}*1], tmm2",
            "tilestored [{o3} + {s}*1], tmm3",
            o = in(reg) out,
            o1 = in(reg) out.add(64),
            o2 = in(reg) out.add(16 * 128),
            o3 = in(reg) out.add(16 * 128 + 64),
            s = in(reg) 128usize,
            options(nostack)
        );
    }
}

/// One block of `rows` (1..=32) rows x 32 columns starting at column `j`, over the whole K:
/// one 16-row A tile where `rows <= 16`, else two.
///
/// # Safety
/// As [`gemm`], with the tile configuration loaded on this thread; `a` holds 16 or 32 rows
/// (as `rows`) `lda` apart.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn block<T: Half>(
    a: *const u16,
    lda: usize,
    b: &PackedPairs<T>,
    j: usize,
    rows: usize,
    clamp: Clamp,
    c: *mut u16,
    ldc: usize,
) {
    let pairs = b.k / 2;
    let (q, z) = (j / NR, (j % NR) / 16);
    let panel = b.data_ptr().add(q * pairs * NR * 2 + z * 16 * 2);
    let (a_stride, b_stride) = (lda * 2, NR * 2 * 2);
    let two = rows > 16;
    // SAFETY: (whole body) A tile rows are 16 or 32 rows of 32 bf16 at K offset `s`, inside
    // A; B tiles are 16 pairs x 16 columns inside the panel; the stack buffer holds the
    // 32 x 32 f32 block; C stores are masked to the `n` columns of each row (the bias
    // holds whole panels, zero past `n`).
    unsafe {
        asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
        for s in (0..b.k).step_by(STEP) {
            let ap = a.add(s);
            let bp = panel.add((s / 2) * NR * 2);
            if T::IS_F16 {
                k_step!("tdpfp16ps", ap, ap.add(16 * lda), a_stride, bp, bp.add(32), b_stride, two);
            } else {
                k_step!("tdpbf16ps", ap, ap.add(16 * lda), a_stride, bp, bp.add(32), b_stride, two);
            }
        }
        let mut out = [0.0f32; 32 * 32];
        let o = out.as_mut_ptr();
        store_block(o.cast());
        let (lo, hi) = (_mm512_set1_ps(clamp.lo), _mm512_set1_ps(clamp.hi));
        let bias = [_mm512_loadu_ps(b.bias_ptr().add(j)), _mm512_loadu_ps(b.bias_ptr().add(j + 16))];
        // The valid columns of each 16-column half: all, some (the last group), or none.
        let valid = |h: usize| (b.n - j).saturating_sub(16 * h).min(16);
        let masks = [valid(0), valid(1)].map(|v| if v == 16 { !0 } else { ((1u32 << v) - 1) as __mmask16 });
        for r in 0..rows {
            for (h, &bv) in bias.iter().enumerate() {
                let v = _mm512_add_ps(_mm512_loadu_ps(o.add(r * 32 + h * 16)), bv);
                // `vmaxps` returns its second operand for a NaN first: NaN -> lo.
                let v = if clamp.on { _mm512_min_ps(_mm512_max_ps(v, lo), hi) } else { v };
                let n16 = if T::IS_F16 {
                    _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v)
                } else {
                    std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(v))
                };
                _mm256_mask_storeu_epi16(c.add(r * ldc + j + h * 16).cast(), masks[h], n16);
            }
        }
    }
}
