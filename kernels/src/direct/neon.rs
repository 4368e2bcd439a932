//! NEON (aarch64): 4 channels per `float32x4_t`, a register tile of 8 output pixels.
//!
//! 32 q registers: at 3x3 stride 1 a tile holds 8 accumulators, 3 weights and 10 inputs.
//! Channel tails go through a 4-float stack buffer (NEON has no masked loads).
//! The clamp uses `fmaxnm`/`fminnm` (IEEE maxNum), so a NaN becomes `lo` as on x86.
//! Tested under qemu-aarch64; emulated timings mean nothing.

use std::arch::aarch64::*;

use super::{rows, Job, Lanes};
use crate::isa::Isa;

/// Output pixels per register tile.
const R: usize = 8;

/// Channel blocks per register tile.
const RB: usize = 1;

#[derive(Clone, Copy)]
struct Neon;

impl Lanes for Neon {
    type V = float32x4_t;
    const N: usize = 4;
    // SAFETY (every method): the trait contract: NEON is available, pointers are valid for
    // the lanes accessed (partial accesses copy exactly `n` f32s).
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> float32x4_t {
        unsafe { vld1q_f32(p) }
    }
    #[inline(always)]
    unsafe fn load_partial(self, p: *const f32, n: usize) -> float32x4_t {
        let mut buf = [0.0f32; 4];
        unsafe {
            std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
            vld1q_f32(buf.as_ptr())
        }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: float32x4_t) {
        unsafe { vst1q_f32(p, v) }
    }
    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, v: float32x4_t, n: usize) {
        let mut buf = [0.0f32; 4];
        unsafe {
            vst1q_f32(buf.as_mut_ptr(), v);
            std::ptr::copy_nonoverlapping(buf.as_ptr(), p, n);
        }
    }
    #[inline(always)]
    unsafe fn splat(self, x: f32) -> float32x4_t {
        unsafe { vdupq_n_f32(x) }
    }
    #[inline(always)]
    unsafe fn fma(self, a: float32x4_t, b: float32x4_t, c: float32x4_t) -> float32x4_t {
        unsafe { vfmaq_f32(c, a, b) }
    }
    #[inline(always)]
    unsafe fn max(self, x: float32x4_t, lo: float32x4_t) -> float32x4_t {
        unsafe { vmaxnmq_f32(x, lo) }
    }
    #[inline(always)]
    unsafe fn min(self, x: float32x4_t, hi: float32x4_t) -> float32x4_t {
        unsafe { vminnmq_f32(x, hi) }
    }
}

/// Depthwise 3x3 (stride 1 or 2, register-tiled interior) on NEON.
///
/// # Safety
/// NEON must be available; `job` as [`super::rows`] requires.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn dwconv3x3_f32_neon(job: &Job, first_row: usize, out: &mut [f32]) {
    // SAFETY: forwarded contract.
    unsafe { rows::<Neon, 3, R, RB>(Neon, job, first_row, out) }
}

/// Depthwise 5x5 (stride 1 or 2, register-tiled interior) on NEON.
///
/// # Safety
/// As [`dwconv3x3_f32_neon`].
#[target_feature(enable = "neon")]
pub(crate) unsafe fn dwconv5x5_f32_neon(job: &Job, first_row: usize, out: &mut [f32]) {
    // SAFETY: forwarded contract.
    unsafe { rows::<Neon, 5, R, RB>(Neon, job, first_row, out) }
}

/// Depthwise with any kernel and stride, every tap checked, on NEON.
///
/// # Safety
/// As [`dwconv3x3_f32_neon`].
#[target_feature(enable = "neon")]
pub(crate) unsafe fn dwconv_f32_neon(job: &Job, first_row: usize, out: &mut [f32]) {
    // SAFETY: forwarded contract.
    unsafe { rows::<Neon, 0, R, RB>(Neon, job, first_row, out) }
}

fn rows_neon(job: &Job, first_row: usize, out: &mut [f32]) {
    // SAFETY: only reachable through a layer prepared by `DirectNeon`, whose `prepare`
    // checked `isa::available(Isa::Neon)`.
    unsafe {
        match (job.kh, job.kw) {
            (3, 3) => dwconv3x3_f32_neon(job, first_row, out),
            (5, 5) => dwconv5x5_f32_neon(job, first_row, out),
            _ => dwconv_f32_neon(job, first_row, out),
        }
    }
}

super::direct_algorithm!(
    /// Direct depthwise convolution on NEON.
    DirectNeon, "direct-neon", "neon", Isa::Neon, rows_neon
);
