//! NEON (aarch64): `Vf` for `float32x4_t` (4 lanes) and the `#[target_feature]` entry
//! points. The GEMM tile is 8 tiles x 8 output channels: 16 accumulators + 2 B vectors + 1
//! broadcast of the 32 q registers.

use std::arch::aarch64::*;

use super::body::{self, DensePlan, DwPlan, Geometry, Vf};
use super::transforms::Tile;

/// GEMM register tile: `MR` tiles x `NV` vectors.
pub(crate) const MR: usize = 8;
pub(crate) const NV: usize = 2;
/// Output channels per packed weight panel.
pub(crate) const NR: usize = NV * 4;

// SAFETY: every method is a NEON intrinsic; the bodies reach them only through the
// `#[target_feature(enable = "neon")]` entry points below, which `supports()` guards.
unsafe impl Vf for float32x4_t {
    const W: usize = 4;
    #[inline(always)]
    unsafe fn zero() -> Self {
        vdupq_n_f32(0.0)
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        vdupq_n_f32(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        vld1q_f32(p)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        vst1q_f32(p, self)
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        vaddq_f32(self, o)
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        vsubq_f32(self, o)
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        vmulq_f32(self, o)
    }
    #[inline(always)]
    unsafe fn fma(self, b: Self, c: Self) -> Self {
        vfmaq_f32(c, self, b)
    }
    // fmaxnm is IEEE maxNum: NaN -> lo, as `f32::max`.
    #[inline(always)]
    unsafe fn max(self, lo: Self) -> Self {
        vmaxnmq_f32(self, lo)
    }
    #[inline(always)]
    unsafe fn min(self, hi: Self) -> Self {
        vminnmq_f32(self, hi)
    }
}

#[target_feature(enable = "neon")]
unsafe fn conv3x3s1_winograd_f32_neon_tf<T: Tile>(
    plan: &DensePlan,
    g: &Geometry,
    input: &[f32],
    rows: (usize, usize),
    out: &mut [f32],
    scratch: &mut [f32],
) {
    body::dense_band::<T, float32x4_t, MR, NV>(plan, g, input, rows.0, rows.1, out, scratch)
}

#[target_feature(enable = "neon")]
unsafe fn dwconv3x3s1_winograd_f32_neon_tf<T: Tile>(
    plan: &DwPlan,
    g: &Geometry,
    input: &[f32],
    rows: (usize, usize),
    out: &mut [f32],
) {
    body::dw_band::<T, float32x4_t>(plan, g, input, rows.0, rows.1, out)
}

/// Dense band (see [`body::dense_band`]).
pub(crate) fn conv3x3s1_winograd_f32_neon<T: Tile>(
    plan: &DensePlan,
    g: &Geometry,
    input: &[f32],
    rows: (usize, usize),
    out: &mut [f32],
    scratch: &mut [f32],
) {
    // SAFETY: reachable only from plans built by an algorithm whose `prepare` checked
    // `isa::available(Isa::Neon)`.
    unsafe { conv3x3s1_winograd_f32_neon_tf::<T>(plan, g, input, rows, out, scratch) }
}

/// Depthwise band (see [`body::dw_band`]).
pub(crate) fn dwconv3x3s1_winograd_f32_neon<T: Tile>(
    plan: &DwPlan,
    g: &Geometry,
    input: &[f32],
    rows: (usize, usize),
    out: &mut [f32],
) {
    // SAFETY: as above, NEON was detected before this plan was built.
    unsafe { dwconv3x3s1_winograd_f32_neon_tf::<T>(plan, g, input, rows, out) }
}
