//! wide: the same body on `wide::f32x8`, whose instructions are fixed at compile time by
//! the target features (`-C target-cpu`). The default x86-64 build has only SSE2, so
//! `f32x8` is two `__m128` halves and `mul_add` is a multiply then an add; build with
//! `RUSTFLAGS="-C target-cpu=native"` to get AVX2+FMA. Channel tails go through an 8-float
//! stack buffer. Register tile: 4 pixels.

use wide::f32x8;

use super::{rows, Job, Lanes};
use crate::isa::Isa;

/// Output pixels per register tile.
const R: usize = 4;

/// Channel blocks per register tile.
const RB: usize = 1;

#[derive(Clone, Copy)]
struct Wide;

impl Lanes for Wide {
    type V = f32x8;
    const N: usize = 8;
    // SAFETY (every method): pointers are valid for the lanes accessed (the trait
    // contract); `f32x8` is 8 plain f32s, read and written unaligned. No ISA beyond the
    // compile-time target is used.
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> f32x8 {
        unsafe { p.cast::<f32x8>().read_unaligned() }
    }
    #[inline(always)]
    unsafe fn load_partial(self, p: *const f32, n: usize) -> f32x8 {
        let mut buf = [0.0f32; 8];
        unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n) };
        f32x8::from(buf)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: f32x8) {
        unsafe { p.cast::<f32x8>().write_unaligned(v) }
    }
    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, v: f32x8, n: usize) {
        let buf = v.to_array();
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), p, n) };
    }
    #[inline(always)]
    unsafe fn splat(self, x: f32) -> f32x8 {
        f32x8::splat(x)
    }
    #[inline(always)]
    unsafe fn fma(self, a: f32x8, b: f32x8, c: f32x8) -> f32x8 {
        a.mul_add(b, c)
    }
    #[inline(always)]
    unsafe fn max(self, x: f32x8, lo: f32x8) -> f32x8 {
        // wide's `max` picks `lo` for a NaN `x` (as x86 maxps): NaN -> lo.
        x.max(lo)
    }
    #[inline(always)]
    unsafe fn min(self, x: f32x8, hi: f32x8) -> f32x8 {
        x.min(hi)
    }
}

/// Depthwise 3x3 (stride 1 or 2, register-tiled interior) in `wide`.
fn dwconv3x3_f32_wide(job: &Job, first_row: usize, out: &mut [f32]) {
    // SAFETY: `Wide` needs no run-time ISA; `job` is built consistently by the driver.
    unsafe { rows::<Wide, 3, R, RB>(Wide, job, first_row, out) }
}

/// Depthwise 5x5 (stride 1 or 2, register-tiled interior) in `wide`.
fn dwconv5x5_f32_wide(job: &Job, first_row: usize, out: &mut [f32]) {
    // SAFETY: as in `dwconv3x3_f32_wide`.
    unsafe { rows::<Wide, 5, R, RB>(Wide, job, first_row, out) }
}

/// Depthwise with any kernel and stride, every tap checked, in `wide`.
fn dwconv_f32_wide(job: &Job, first_row: usize, out: &mut [f32]) {
    // SAFETY: as in `dwconv3x3_f32_wide`.
    unsafe { rows::<Wide, 0, R, RB>(Wide, job, first_row, out) }
}

fn rows_wide(job: &Job, first_row: usize, out: &mut [f32]) {
    match (job.kh, job.kw) {
        (3, 3) => dwconv3x3_f32_wide(job, first_row, out),
        (5, 5) => dwconv5x5_f32_wide(job, first_row, out),
        _ => dwconv_f32_wide(job, first_row, out),
    }
}

super::direct_algorithm!(
    /// Direct depthwise convolution in `wide` (portable SIMD, compile-time ISA).
    DirectWide, "direct-wide", "wide", Isa::Scalar, rows_wide
);
