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

/// `a * b + c` fused (`fmla` takes the addend first).
#[inline(always)]
unsafe fn fmla(a: float32x4_t, b: float32x4_t, c: float32x4_t) -> float32x4_t {
    // SAFETY: the caller's token proves NEON.
    unsafe { vfmaq_f32(c, a, b) }
}

intrinsic_simd! {
    Neon, V = float32x4_t, LANES = 4, REGISTERS = 32, LEVEL = Isa::Neon, NAME = "neon",
    features = "neon";
    // maxNum / minNum: a NaN `x` gives `lo` (plain `fmax` would propagate it).
    splat = vdupq_n_f32, add = vaddq_f32, sub = vsubq_f32, mul = vmulq_f32, fma = fmla,
    max = vmaxnmq_f32, min = vminnmq_f32, load = vld1q_f32, store = vst1q_f32;

    #[inline(always)]
    fn any_nan(self, v: float32x4_t) -> bool {
        // SAFETY: the token proves NEON. A lane equals itself unless it is NaN.
        unsafe { vminvq_u32(vceqq_f32(v, v)) == 0 }
    }
}
