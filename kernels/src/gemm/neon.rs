//! NEON microkernel: 8x12 broadcast tile (24 q-register accumulators, 3 B vectors and one
//! broadcast: 28 of the 32 vector registers), the shape of the 8x12 class that aarch64
//! BLAS libraries use for SGEMM.

use std::arch::aarch64::*;

use super::{tile_body, Epilogue, Flavour, Lanes, Tile};
use crate::isa::Isa;

#[derive(Clone, Copy)]
pub(crate) struct Neon;

// SAFETY (every method): only reached from `#[target_feature(enable = "neon")]` entry
// points, which `Flavour::available` gates on the detected CPU.
impl Lanes for Neon {
    type V = float32x4_t;
    const LANES: usize = 4;
    #[inline(always)]
    unsafe fn zero(self) -> float32x4_t {
        unsafe { vdupq_n_f32(0.0) }
    }
    #[inline(always)]
    unsafe fn splat(self, x: f32) -> float32x4_t {
        unsafe { vdupq_n_f32(x) }
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> float32x4_t {
        unsafe { vld1q_f32(p) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: float32x4_t) {
        unsafe { vst1q_f32(p, v) }
    }
    #[inline(always)]
    unsafe fn fma(self, a: float32x4_t, b: float32x4_t, c: float32x4_t) -> float32x4_t {
        unsafe { vfmaq_f32(c, a, b) }
    }
    #[inline(always)]
    unsafe fn add(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        unsafe { vaddq_f32(a, b) }
    }
    #[inline(always)]
    unsafe fn max(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // IEEE maxNum: a NaN `a` gives `b`, as the epilogue requires (`vmaxq` would give NaN).
        unsafe { vmaxnmq_f32(a, b) }
    }
    #[inline(always)]
    unsafe fn min(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        unsafe { vminnmq_f32(a, b) }
    }
}

/// The 8x12 NEON tile.
///
/// # Safety
/// See [`super::KernelFn`]; the CPU must have NEON.
#[target_feature(enable = "neon")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_8x12_neon(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    mr: usize,
    nr: usize,
    ep: &Epilogue,
) {
    // SAFETY: forwarded contract; NEON enabled on this function.
    unsafe { tile_body::<Neon, 8, 3>(Neon, kc, a, lda, b, c, ldc, mr, nr, ep) }
}

static TILES: [Tile; 1] =
    [Tile { name: "sgemm_8x12_neon", mr: 8, nr: 12, speed: 1.0, kernel: sgemm_8x12_neon }];

pub static FLAVOUR: Flavour = Flavour { name: "neon", isa: Isa::Neon, tiles: || &TILES };
