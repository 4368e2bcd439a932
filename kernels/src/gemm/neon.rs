//! NEON microkernel: 8x12 broadcast tile (24 q-register accumulators, 3 B vectors and one
//! broadcast: 28 of the 32 vector registers), the shape of the 8x12 class that aarch64
//! BLAS libraries use for SGEMM.

use std::arch::aarch64::*;

use super::{tile_body, Epilogue, Flavour, KSteps, Lanes, Tile};
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

macro_rules! neon_tile {
    ($name:ident, $mr:literal, $nv:literal, $u:literal) => {
        /// A NEON microkernel (see [`super::KernelFn`]).
        ///
        /// # Safety
        /// See [`super::KernelFn`]; the CPU must have NEON.
        #[target_feature(enable = "neon")]
        #[allow(clippy::too_many_arguments)]
        pub unsafe fn $name(
            k: KSteps,
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
            unsafe { tile_body::<Neon, $mr, $nv, $u>(Neon, k, a, lda, b, c, ldc, mr, nr, ep) }
        }
    };
}

neon_tile!(sgemm_8x12_neon, 8, 3, 1);
// Small-M tiles (a fully connected layer at batch 1..4): K split over U accumulator sets
// so that each keeps 8 or more FMA chains in flight (see `tile_body`).
neon_tile!(sgemm_1x12_neon, 1, 3, 3);
neon_tile!(sgemm_2x12_neon, 2, 3, 2);
neon_tile!(sgemm_4x12_neon, 4, 3, 1);

// Speeds of the small tiles: not measured on an aarch64 machine; the AVX-512 ratios at the
// same chain counts (see avx512.rs).
static TILES: [Tile; 4] = [
    Tile { name: "sgemm_8x12_neon", mr: 8, nr: 12, speed: 1.0, kernel: sgemm_8x12_neon },
    Tile { name: "sgemm_1x12_neon", mr: 1, nr: 12, speed: 0.33, kernel: sgemm_1x12_neon },
    Tile { name: "sgemm_2x12_neon", mr: 2, nr: 12, speed: 0.65, kernel: sgemm_2x12_neon },
    Tile { name: "sgemm_4x12_neon", mr: 4, nr: 12, speed: 0.83, kernel: sgemm_4x12_neon },
];
pub static FLAVOUR: Flavour = Flavour { name: "neon", isa: Isa::Neon, tiles: || &TILES };
