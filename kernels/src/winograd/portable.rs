//! The portable path: the same body with `f32` as a one-lane "vector" (what LLVM
//! auto-vectorises of it, it may). Runs on every CPU; the GEMM tile is 4 tiles x 4 channels.

use super::body::{self, DensePlan, DwPlan, Geometry};
use super::transforms::Tile;

/// GEMM register tile: `MR` tiles x `NV` one-lane vectors.
pub(crate) const MR: usize = 4;
pub(crate) const NV: usize = 4;
/// Output channels per packed weight panel.
pub(crate) const NR: usize = NV;

/// Dense band (see [`body::dense_band`]).
pub(crate) fn conv3x3s1_winograd_f32_scalar<T: Tile>(
    plan: &DensePlan,
    g: &Geometry,
    input: &[f32],
    rows: (usize, usize),
    out: &mut [f32],
    scratch: &mut [f32],
) {
    // SAFETY: the f32 `Vf` is plain arithmetic; the GEMM's raw pointers stay inside the
    // slices its `assert!` checked.
    unsafe { body::dense_band::<T, f32, MR, NV>(plan, g, input, rows.0, rows.1, out, scratch) }
}

/// Depthwise band (see [`body::dw_band`]).
pub(crate) fn dwconv3x3s1_winograd_f32_scalar<T: Tile>(
    plan: &DwPlan,
    g: &Geometry,
    input: &[f32],
    rows: (usize, usize),
    out: &mut [f32],
) {
    // SAFETY: plain f32 arithmetic on bounds-checked slices.
    unsafe { body::dw_band::<T, f32>(plan, g, input, rows.0, rows.1, out) }
}
