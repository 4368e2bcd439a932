//! aarch64 Advanced SIMD: `float32x4_t`, 4 lanes, 32 q registers. No masked loads: tails go
//! through a stack buffer (the trait's default). The clamp uses `fmaxnm`/`fminnm` (IEEE
//! maxNum), so a NaN becomes `lo` as on x86; plain `fmax` would propagate it. Tested under
//! qemu-aarch64 (emulated timings mean nothing).

use std::arch::aarch64::*;

use super::{Simd, SimdOp};
use crate::isa::Isa;

/// The NEON token: exists only once [`Isa::Neon`] is available.
#[derive(Debug, Clone, Copy)]
pub struct Neon(());

#[target_feature(enable = "neon")]
fn run_neon<Op: SimdOp>(s: Neon, op: Op) -> Op::Output {
    op.run(s)
}

// SAFETY: `Simd::new` hands out the token only where `isa::available(Isa::Neon)`; every
// method below is reached only through it.
unsafe impl Simd for Neon {
    type V = float32x4_t;
    const LANES: usize = 4;
    const REGISTERS: usize = 32;
    const LEVEL: Isa = Isa::Neon;
    const NAME: &'static str = "neon";

    unsafe fn assume() -> Neon {
        Neon(())
    }
    #[inline(always)]
    fn vectorize<Op: SimdOp>(self, op: Op) -> Op::Output {
        // SAFETY: the token proves NEON.
        unsafe { run_neon(self, op) }
    }
    #[inline(always)]
    fn splat(self, x: f32) -> float32x4_t {
        // SAFETY: the token proves NEON.
        unsafe { vdupq_n_f32(x) }
    }
    #[inline(always)]
    fn add(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: the token proves NEON.
        unsafe { vaddq_f32(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: the token proves NEON.
        unsafe { vsubq_f32(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: the token proves NEON.
        unsafe { vmulq_f32(a, b) }
    }
    #[inline(always)]
    fn fma(self, a: float32x4_t, b: float32x4_t, c: float32x4_t) -> float32x4_t {
        // SAFETY: the token proves NEON (`fmla`: c + a * b, fused).
        unsafe { vfmaq_f32(c, a, b) }
    }
    #[inline(always)]
    fn max(self, x: float32x4_t, lo: float32x4_t) -> float32x4_t {
        // SAFETY: the token proves NEON. maxNum: a NaN `x` gives `lo`.
        unsafe { vmaxnmq_f32(x, lo) }
    }
    #[inline(always)]
    fn min(self, x: float32x4_t, hi: float32x4_t) -> float32x4_t {
        // SAFETY: the token proves NEON.
        unsafe { vminnmq_f32(x, hi) }
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> float32x4_t {
        // SAFETY: the token proves NEON; the caller passes 4 readable f32s.
        unsafe { vld1q_f32(p) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: float32x4_t) {
        // SAFETY: the token proves NEON; the caller passes 4 writable f32s.
        unsafe { vst1q_f32(p, v) }
    }
    #[inline(always)]
    fn any_nan(self, v: float32x4_t) -> bool {
        // SAFETY: the token proves NEON. A lane equals itself unless it is NaN.
        unsafe { vminvq_u32(vceqq_f32(v, v)) == 0 }
    }
}
