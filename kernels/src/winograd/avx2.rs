//! AVX2 + FMA: `Vf` for `__m256` (8 lanes) and the `#[target_feature]` entry points.
//! The GEMM tile is 6 tiles x 16 output channels: 12 accumulators + 2 B vectors + 1
//! broadcast of the 16 ymm registers.

use std::arch::x86_64::*;

use super::body::{self, DensePlan, DwPlan, Geometry, Vf};
use super::transforms::Tile;

/// GEMM register tile: `MR` tiles x `NV` vectors.
pub(crate) const MR: usize = 6;
pub(crate) const NV: usize = 2;
/// Output channels per packed weight panel.
pub(crate) const NR: usize = NV * 8;

// SAFETY: every method is an AVX/FMA intrinsic; the bodies reach them only through the
// `#[target_feature(enable = "avx2,fma")]` entry points below, which `supports()` guards.
unsafe impl Vf for __m256 {
    const W: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        _mm256_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        _mm256_storeu_ps(p, self)
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        _mm256_add_ps(self, o)
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        _mm256_sub_ps(self, o)
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        _mm256_mul_ps(self, o)
    }
    #[inline(always)]
    unsafe fn fma(self, b: Self, c: Self) -> Self {
        _mm256_fmadd_ps(self, b, c)
    }
    // vmaxps returns its second operand when either is NaN: NaN -> lo, as `f32::max`.
    #[inline(always)]
    unsafe fn max(self, lo: Self) -> Self {
        _mm256_max_ps(self, lo)
    }
    #[inline(always)]
    unsafe fn min(self, hi: Self) -> Self {
        _mm256_min_ps(self, hi)
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn conv3x3s1_winograd_f32_avx2_tf<T: Tile>(
    plan: &DensePlan,
    g: &Geometry,
    input: &[f32],
    rows: (usize, usize),
    out: &mut [f32],
    scratch: &mut [f32],
) {
    body::dense_band::<T, __m256, MR, NV>(plan, g, input, rows.0, rows.1, out, scratch)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dwconv3x3s1_winograd_f32_avx2_tf<T: Tile>(
    plan: &DwPlan,
    g: &Geometry,
    input: &[f32],
    rows: (usize, usize),
    out: &mut [f32],
) {
    body::dw_band::<T, __m256>(plan, g, input, rows.0, rows.1, out)
}

/// Dense band (see [`body::dense_band`]).
pub(crate) fn conv3x3s1_winograd_f32_avx2<T: Tile>(
    plan: &DensePlan,
    g: &Geometry,
    input: &[f32],
    rows: (usize, usize),
    out: &mut [f32],
    scratch: &mut [f32],
) {
    // SAFETY: reachable only from plans built by an algorithm whose `prepare` checked
    // `isa::available(Isa::Avx2)` (AVX2 + FMA detected).
    unsafe { conv3x3s1_winograd_f32_avx2_tf::<T>(plan, g, input, rows, out, scratch) }
}

/// Depthwise band (see [`body::dw_band`]).
pub(crate) fn dwconv3x3s1_winograd_f32_avx2<T: Tile>(
    plan: &DwPlan,
    g: &Geometry,
    input: &[f32],
    rows: (usize, usize),
    out: &mut [f32],
) {
    // SAFETY: as above, AVX2 + FMA were detected before this plan was built.
    unsafe { dwconv3x3s1_winograd_f32_avx2_tf::<T>(plan, g, input, rows, out) }
}
