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
//!   K = 32); rows in blocks of 32, the last block (`m % 32` rows) from a copy of its rows
//!   in scratch, so the tile loads never read past A and no row is left to `vpdpbusd`.
//! - **Epilogue**: the i32 block goes to a 4 KiB stack buffer, then the folded bias and the
//!   requantization of [`Pack64`] (two rows, four vectors, per pack), bit-identical to every
//!   other path.

use std::arch::asm;
use std::arch::x86_64::*;

use super::avx512::Pack64;
use super::gemm::GemmInt8;
use crate::gemm::amx_bf16::{copy_tail, for_each_block, k_step, store_block};
use crate::pool::{Par, SharedOut};

/// Whether [`gemm`] can run a `k x n` layer.
pub(crate) fn fits(k: usize, n: usize) -> bool {
    k > 0 && n > 0 && k.is_multiple_of(64) && n.is_multiple_of(32)
}

/// The int8 GEMM, every row: 32-row blocks read A in place; the last `m % 32` rows come from
/// their copy in `scratch` (`amx_bf16::copy_tail`).
///
/// # Safety
/// `crate::isa::amx_int8()` holds (the CPU has AMX-INT8, the tile state is granted, and the
/// ceiling allows AMX, so AVX-512 too); `fits(k, n)`; `a` holds `m * k` bytes, `c` `m * n`,
/// `scratch` at least `amx_bf16::tail_len(m, k)` bytes, and `b` is `l`'s VNNI panel packing.
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
    let full = copy_tail(a, m, k, k, scratch);
    let tail = SharedOut(scratch.as_mut_ptr());
    let (a_in, c_out) = (SharedOut(a.as_ptr().cast_mut()), SharedOut(c.as_mut_ptr()));
    // SAFETY: the caller guarantees AMX-INT8 and the buffers; each (block, group) is inside
    // `m` rows and `n` columns and written by one task; the tail block's 32 rows of A lie
    // inside the scratch.
    unsafe {
        for_each_block(m.div_ceil(32), n / 32, par, |rb, g| {
            let i = rb * 32;
            let a_ptr = if i < full { a_in.get().add(i * k) } else { tail.get() };
            block(l, a_ptr.cast_const(), b, g * 32, (m - i).min(32), c_out.get().add(i * n));
        });
    }
}

/// One block of `rows` (1..=32) rows x 32 channels from channel `j`, over the whole K: one
/// 16-row A tile where `rows <= 16`, else two.
///
/// # Safety
/// As [`gemm`], with the tile configuration loaded on this thread; `a` holds 16 or 32 rows
/// of `k` bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn block(l: &GemmInt8, a: *const u8, b: &[i8], j: usize, rows: usize, c: *mut u8) {
    let (k, n) = (l.q.spec.in_channels, l.q.spec.out_channels);
    let groups = k / 4;
    // Panel of channel `j`, and the 16-channel vector inside it (0 or 2: j is a multiple of 32).
    let (p, v) = (j / 64, (j % 64) / 16);
    let two = rows > 16;
    // SAFETY: (whole body) A tiles are 16 rows of 64 bytes at K offset `s`, inside A; B
    // tiles are 16 k-groups x 16 channels inside panel `p`; the stack buffer holds the 32 x
    // 32 i32 block; stores are 32 bytes inside the `n` columns of each of `rows` rows.
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
        // Two rows (four vectors) per pack; an odd last row is packed with itself.
        let pack = Pack64::new(&l.q.requant, l.in_range);
        let bias = [0, 16].map(|h| _mm512_loadu_si512(l.bias.as_ptr().add(j + h).cast()));
        let mult = [0, 16].map(|h| _mm512_loadu_ps(l.multiplier.as_ptr().add(j + h)));
        for r in (0..rows).step_by(2) {
            let r1 = (r + 1).min(rows - 1);
            let mut q = [_mm512_setzero_si512(); 4];
            for (i, q) in q.iter_mut().enumerate() {
                let (row, h) = (if i < 2 { r } else { r1 }, i % 2);
                let acc = _mm512_add_epi32(_mm512_loadu_si512(o.add(row * 32 + h * 16).cast()), bias[h]);
                *q = pack.round(acc, mult[h]);
            }
            pack.store_row_pair(q, c.add(r * n + j), (r1 > r).then(|| c.add(r1 * n + j)));
        }
    }
}
