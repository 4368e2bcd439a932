//! AVX2 + FMA: 8 channels per `__m256`, a register tile of 4 output pixels.
//!
//! 16 ymm registers: at 3x3 stride 1 a tile holds 4 accumulators, 3 weights of the current
//! kernel row and the 6 input vectors of its receptive field (13 live), so nothing spills.
//! Channel tails use `vmaskmovps`, which neither reads nor faults past the last channel.

use std::arch::x86_64::*;

use super::{rows, Job, Lanes};
use crate::isa::Isa;

/// Output pixels per register tile.
const R: usize = 4;

/// Channel blocks per register tile.
const RB: usize = 1;

#[derive(Clone, Copy)]
struct Avx2;

/// `vmaskmovps` masks: lanes `0..n` set, from a sliding window over this table.
static MASKS: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];

#[inline(always)]
unsafe fn mask(n: usize) -> __m256i {
    // SAFETY: n < 8, so the 8 i32s at 8 - n are inside MASKS; AVX is available (trait contract).
    unsafe { _mm256_loadu_si256(MASKS.as_ptr().add(8 - n).cast()) }
}

impl Lanes for Avx2 {
    type V = __m256;
    const N: usize = 8;
    // SAFETY (every method): the trait contract: AVX2+FMA are available, pointers are valid
    // for the lanes accessed.
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> __m256 {
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn load_partial(self, p: *const f32, n: usize) -> __m256 {
        unsafe { _mm256_maskload_ps(p, mask(n)) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: __m256) {
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, v: __m256, n: usize) {
        unsafe { _mm256_maskstore_ps(p, mask(n), v) }
    }
    #[inline(always)]
    unsafe fn splat(self, x: f32) -> __m256 {
        unsafe { _mm256_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn fma(self, a: __m256, b: __m256, c: __m256) -> __m256 {
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn max(self, x: __m256, lo: __m256) -> __m256 {
        // maxps returns the second operand when either is NaN: NaN -> lo.
        unsafe { _mm256_max_ps(x, lo) }
    }
    #[inline(always)]
    unsafe fn min(self, x: __m256, hi: __m256) -> __m256 {
        unsafe { _mm256_min_ps(x, hi) }
    }
}

/// Depthwise 3x3 (stride 1 or 2, register-tiled interior) on AVX2.
///
/// # Safety
/// AVX2 and FMA must be available; `job` as [`super::rows`] requires.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dwconv3x3_f32_avx2(job: &Job, first_row: usize, out: &mut [f32]) {
    // SAFETY: forwarded contract.
    unsafe { rows::<Avx2, 3, R, RB>(Avx2, job, first_row, out) }
}

/// Depthwise 5x5 (stride 1 or 2, register-tiled interior) on AVX2.
///
/// # Safety
/// As [`dwconv3x3_f32_avx2`].
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dwconv5x5_f32_avx2(job: &Job, first_row: usize, out: &mut [f32]) {
    // SAFETY: forwarded contract.
    unsafe { rows::<Avx2, 5, R, RB>(Avx2, job, first_row, out) }
}

/// Depthwise with any kernel and stride, every tap checked, on AVX2.
///
/// # Safety
/// As [`dwconv3x3_f32_avx2`].
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dwconv_f32_avx2(job: &Job, first_row: usize, out: &mut [f32]) {
    // SAFETY: forwarded contract.
    unsafe { rows::<Avx2, 0, R, RB>(Avx2, job, first_row, out) }
}

fn rows_avx2(job: &Job, first_row: usize, out: &mut [f32]) {
    // SAFETY: this function is only reachable through a layer prepared by `DirectAvx2`,
    // whose `prepare` checked `isa::available(Isa::Avx2)` (AVX2 + FMA); the driver builds
    // `job` consistently.
    unsafe {
        match (job.kh, job.kw) {
            (3, 3) => dwconv3x3_f32_avx2(job, first_row, out),
            (5, 5) => dwconv5x5_f32_avx2(job, first_row, out),
            _ => dwconv_f32_avx2(job, first_row, out),
        }
    }
}

super::direct_algorithm!(
    /// Direct depthwise convolution on AVX2 + FMA.
    DirectAvx2, "direct-avx2", "avx2", Isa::Avx2, rows_avx2
);
