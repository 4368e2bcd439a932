//! Plain `f32`: one lane, no intrinsics, runs on every CPU. The reference implementation,
//! the channel tails of the vector bodies, and the `*-scalar` kernels.
//!
//! `fma` is a multiply and an add: the baseline targets have no FMA instruction, and
//! `f32::mul_add` would be a libm `fmaf` call per multiply-add.

use super::{Simd, SimdOp};
use crate::isa::Isa;

/// The scalar token (always available).
#[derive(Debug, Clone, Copy, Default)]
pub struct Scalar;

// SAFETY: plain f32 arithmetic runs on every CPU, at every ceiling.
unsafe impl Simd for Scalar {
    type V = f32;
    const LANES: usize = 1;
    const REGISTERS: usize = 16;
    const LEVEL: Isa = Isa::Scalar;
    const NAME: &'static str = "scalar";

    unsafe fn assume() -> Scalar {
        Scalar
    }
    #[inline(always)]
    fn new() -> Option<Scalar> {
        Some(Scalar)
    }
    #[inline(always)]
    fn vectorize<Op: SimdOp>(self, op: Op) -> Op::Output {
        op.run(self)
    }
    #[inline(always)]
    fn splat(self, x: f32) -> f32 {
        x
    }
    operator_lanes!(f32);
    #[inline(always)]
    fn fma(self, a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
    #[inline(always)]
    fn max(self, x: f32, lo: f32) -> f32 {
        x.max(lo)
    }
    #[inline(always)]
    fn min(self, x: f32, hi: f32) -> f32 {
        x.min(hi)
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> f32 {
        // SAFETY: the caller passes a readable pointer.
        unsafe { p.read_unaligned() }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: f32) {
        // SAFETY: the caller passes a writable pointer.
        unsafe { p.write_unaligned(v) }
    }
    #[inline(always)]
    unsafe fn load_partial(self, p: *const f32, n: usize) -> f32 {
        if n == 0 {
            0.0
        } else {
            // SAFETY: `n` is 1 and `p` holds `n` f32s.
            unsafe { p.read_unaligned() }
        }
    }
    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, v: f32, n: usize) {
        if n != 0 {
            // SAFETY: `p` holds `n = 1` f32.
            unsafe { p.write_unaligned(v) }
        }
    }
    #[inline(always)]
    fn any_nan(self, v: f32) -> bool {
        v.is_nan()
    }
}
