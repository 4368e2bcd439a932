//! int8 GEMM on AMX tiles (Sapphire and Emerald Rapids): `tdpbusd tC, tA, tB` adds a 16 x 64
//! u8 tile of A times a 64 x 16 s8 tile of B (stored as 16 rows of 16 columns x 4 k) into a
//! 16 x 16 i32 tile: 16,384 multiply-adds per instruction.
//!
//! - **Tiles** as the bf16 AMX GEMM (`gemm/amx_bf16.rs`, whose task driver and tile store it
//!   shares):
//!   tmm0..3 a 32 x 32 block of C, tmm4/5 two 16-row A tiles of a 64-wide K step, tmm6/7 two
//!   16-column B tiles.
//! - **A** is loaded straight from the NHWC u8 rows (row stride `K` bytes); **B** is the VNNI
//!   packing of `gemm.rs` unchanged: in a 64-channel panel each k-group of 4 is 256 bytes,
//!   so a 16-column B tile is 16 rows of 64 bytes, 256 bytes apart.
//! - **Shapes**: K a multiple of 64, N of 32 (every MobileNetV1 pointwise layer but pw1,
//!   K = 32); rows in blocks of 32, then one of 16; the last `m % 16` rows are left to the
//!   caller's `vpdpbusd` path ([`gemm`] returns how many it did).
//! - **Epilogue**: the i32 block goes to a 4 KiB stack buffer, then the folded bias and the
//!   requantizing store of `avx512.rs`, so the result is bit-identical to every other path.

use std::arch::asm;
use std::arch::x86_64::*;

use super::gemm::GemmInt8;
use crate::gemm::amx_bf16::{for_each_block, k_step, store_block};
use crate::pool::{Par, SharedOut};

/// Whether [`gemm`] can run a `k x n` layer.
pub(crate) fn fits(k: usize, n: usize) -> bool {
    k > 0 && n > 0 && k.is_multiple_of(64) && n.is_multiple_of(32)
}

/// Rows `0..done` of the int8 GEMM, `done = m / 16 * 16`; returns `done`.
///
/// # Safety
/// `crate::isa::amx_int8()` holds (the CPU has AMX-INT8, the tile state is granted, and the
/// ceiling allows AMX, so AVX-512 too); `fits(k, n)`; `a` holds `m * k` bytes, `c` `m * n`,
/// and `b` is `l`'s VNNI panel packing.
pub(crate) unsafe fn gemm(l: &GemmInt8, b: &[i8], m: usize, a: &[u8], c: &mut [u8], par: Par<'_>) -> usize {
    let (k, n) = (l.q.spec.in_channels, l.q.spec.out_channels);
    let done = m / 16 * 16;
    let (blocks, groups) = (done.div_ceil(32), n / 32);
    let (a_in, c_out) = (SharedOut(a.as_ptr().cast_mut()), SharedOut(c.as_mut_ptr()));
    // SAFETY: the caller guarantees AMX-INT8 and the buffers; each (block, group) is inside
    // `done` rows and `n` columns and written by one task.
    unsafe {
        for_each_block(blocks, groups, par, |rb, g| {
            let (a_ptr, c_ptr) = (a_in.get().cast_const(), c_out.get());
            let i = rb * 32;
            block(l, a_ptr.add(i * k), b, g * 32, (done - i).min(32), c_ptr.add(i * n));
        });
    }
    done
}

/// One block of `rows` (16 or 32) rows x 32 channels from channel `j`, over the whole K.
///
/// # Safety
/// As [`gemm`], with the tile configuration loaded on this thread.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn block(l: &GemmInt8, a: *const u8, b: &[i8], j: usize, rows: usize, c: *mut u8) {
    let (k, n) = (l.q.spec.in_channels, l.q.spec.out_channels);
    let groups = k / 4;
    // Panel of channel `j`, and the 16-channel vector inside it (0 or 2: j is a multiple of 32).
    let (p, v) = (j / 64, (j % 64) / 16);
    let two = rows == 32;
    // SAFETY: (whole body) A tiles are `rows` rows of 64 bytes at K offset `s`, inside A; B
    // tiles are 16 k-groups x 16 channels inside panel `p`; the stack buffer holds the 32 x
    // 32 i32 block; stores are 16 bytes inside the `n` columns of each row.
    unsafe {
        let panel = b.as_ptr().add(p * groups * 256 + v * 64);
        asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
        for s in (0..k).step_by(64) {
            let ap = a.add(s);
            let bp = panel.add((s / 4) * 256);
            k_step!("tdpbusd", ap, ap.add(16 * k), k, bp, bp.add(64), 256usize, two);
        }
        let mut out = [0i32; 32 * 32];
        let o = out.as_mut_ptr();
        store_block(o.cast());
        let rq = &l.q.requant;
        let (lo, hi) = rq.bounds();
        let (zp, lo, hi) = (_mm512_set1_epi32(rq.zero_point), _mm512_set1_ps(lo), _mm512_set1_ps(hi));
        let bias = [
            _mm512_loadu_si512(l.bias.as_ptr().add(j).cast()),
            _mm512_loadu_si512(l.bias.as_ptr().add(j + 16).cast()),
        ];
        for r in 0..rows {
            for (h, &bv) in bias.iter().enumerate() {
                let acc = _mm512_add_epi32(_mm512_loadu_si512(o.add(r * 32 + h * 16).cast()), bv);
                super::avx512::store16(
                    acc,
                    l.multiplier.as_ptr().add(j + h * 16),
                    zp,
                    lo,
                    hi,
                    c.add(r * n + j + h * 16),
                    0xffff,
                );
            }
        }
    }
}
