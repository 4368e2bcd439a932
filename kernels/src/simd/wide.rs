//! `wide::f32x8`: 8 lanes whose instructions are fixed at compile time by the target
//! features. In a default x86-64 build that is two SSE halves and a separate multiply and
//! add (no FMA); with `-C target-cpu=native` it becomes AVX2 + FMA. Its level is the
//! compile-time target's ([`Isa::TARGET`]), so `KERNELS_ISA` below that level disables it
//! rather than letting it run above the ceiling. Measuring the gap to the hand-written
//! implementations is the point.

use wide::f32x8;

use super::{Simd, SimdOp};
use crate::isa::Isa;

/// The `wide` token: exists where the compile-time level is allowed.
#[derive(Debug, Clone, Copy)]
pub struct Wide(());

// SAFETY: `wide` uses only the compile-time target's instructions, which every CPU this
// binary starts on has; `Simd::new` still refuses it under a lower `KERNELS_ISA`.
unsafe impl Simd for Wide {
    type V = f32x8;
    const LANES: usize = 8;
    const REGISTERS: usize = 16;
    const LEVEL: Isa = Isa::TARGET;
    const NAME: &'static str = "wide";

    unsafe fn assume() -> Wide {
        Wide(())
    }
    #[inline(always)]
    fn vectorize<Op: SimdOp>(self, op: Op) -> Op::Output {
        op.run(self)
    }
    #[inline(always)]
    fn splat(self, x: f32) -> f32x8 {
        f32x8::splat(x)
    }
    operator_lanes!(f32x8);
    #[inline(always)]
    fn fma(self, a: f32x8, b: f32x8, c: f32x8) -> f32x8 {
        // wide's `mul_add` is `vfmadd` with FMA enabled at compile time, else mul + add
        // (never a libm call).
        a.mul_add(b, c)
    }
    #[inline(always)]
    fn max(self, x: f32x8, lo: f32x8) -> f32x8 {
        // wide's `max` is x86 `maxps(x, lo)`-like: a NaN `x` gives `lo`.
        x.max(lo)
    }
    #[inline(always)]
    fn min(self, x: f32x8, hi: f32x8) -> f32x8 {
        x.min(hi)
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> f32x8 {
        // SAFETY: the caller passes 8 readable f32s; unaligned read of a plain-data vector.
        unsafe { p.cast::<f32x8>().read_unaligned() }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: f32x8) {
        // SAFETY: the caller passes 8 writable f32s; unaligned write.
        unsafe { p.cast::<f32x8>().write_unaligned(v) }
    }
}
