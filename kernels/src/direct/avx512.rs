//! AVX-512F: 16 channels per `__m512`, a register tile of 8 output pixels.
//!
//! 32 zmm registers: at 3x3 stride 1 a tile holds 8 accumulators, 3 weights and the 10
//! input vectors of one kernel row (21 live). Zen 4 executes a 512-bit FMA as two 256-bit
//! halves, so the gain over AVX2 is fewer instructions and loads per FLOP and the larger
//! tile, not more FLOPs per cycle. Channel tails use `k` masks (`vmovups{k}{z}`), which
//! suppress faults on masked-off lanes.

use std::arch::x86_64::*;

use super::{rows, Job, Lanes};
use crate::isa::Isa;

/// Output pixels per register tile.
const R: usize = 8;

/// Channel blocks per register tile.
const RB: usize = 1;

#[derive(Clone, Copy)]
struct Avx512;

#[inline(always)]
fn mask(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

impl Lanes for Avx512 {
    type V = __m512;
    const N: usize = 16;
    // SAFETY (every method): the trait contract: AVX-512F is available, pointers are valid
    // for the lanes accessed (masked-off lanes are never touched).
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> __m512 {
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn load_partial(self, p: *const f32, n: usize) -> __m512 {
        unsafe { _mm512_maskz_loadu_ps(mask(n), p) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: __m512) {
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, v: __m512, n: usize) {
        unsafe { _mm512_mask_storeu_ps(p, mask(n), v) }
    }
    #[inline(always)]
    unsafe fn splat(self, x: f32) -> __m512 {
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn fma(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn max(self, x: __m512, lo: __m512) -> __m512 {
        // vmaxps returns the second operand when either is NaN: NaN -> lo.
        unsafe { _mm512_max_ps(x, lo) }
    }
    #[inline(always)]
    unsafe fn min(self, x: __m512, hi: __m512) -> __m512 {
        unsafe { _mm512_min_ps(x, hi) }
    }
}

/// Depthwise 3x3 (stride 1 or 2, register-tiled interior) on AVX-512F.
///
/// # Safety
/// AVX-512F must be available; `job` as [`super::rows`] requires.
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) unsafe fn dwconv3x3_f32_avx512(job: &Job, first_row: usize, out: &mut [f32]) {
    // SAFETY: forwarded contract.
    unsafe { rows::<Avx512, 3, R, RB>(Avx512, job, first_row, out) }
}

/// Depthwise 5x5 (stride 1 or 2, register-tiled interior) on AVX-512F.
///
/// # Safety
/// As [`dwconv3x3_f32_avx512`].
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) unsafe fn dwconv5x5_f32_avx512(job: &Job, first_row: usize, out: &mut [f32]) {
    // SAFETY: forwarded contract.
    unsafe { rows::<Avx512, 5, R, RB>(Avx512, job, first_row, out) }
}

/// Depthwise with any kernel and stride, every tap checked, on AVX-512F.
///
/// # Safety
/// As [`dwconv3x3_f32_avx512`].
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) unsafe fn dwconv_f32_avx512(job: &Job, first_row: usize, out: &mut [f32]) {
    // SAFETY: forwarded contract.
    unsafe { rows::<Avx512, 0, R, RB>(Avx512, job, first_row, out) }
}

fn rows_avx512(job: &Job, first_row: usize, out: &mut [f32]) {
    // SAFETY: only reachable through a layer prepared by `DirectAvx512`, whose `prepare`
    // checked `isa::available(Isa::Avx512)` (AVX-512F/VL/BW/DQ + AVX2 + FMA).
    unsafe {
        match (job.kh, job.kw) {
            (3, 3) => dwconv3x3_f32_avx512(job, first_row, out),
            (5, 5) => dwconv5x5_f32_avx512(job, first_row, out),
            _ => dwconv_f32_avx512(job, first_row, out),
        }
    }
}

super::direct_algorithm!(
    /// Direct depthwise convolution on AVX-512F.
    DirectAvx512, "direct-avx512", "avx512", Isa::Avx512, rows_avx512
);
