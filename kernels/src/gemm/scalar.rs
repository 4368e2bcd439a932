//! The reference microkernel: plain `f32` arithmetic through the shared tile body, on every
//! CPU. Its tile (4x8) is small enough that the 32 accumulators stay in registers or L1
//! whatever the compiler does with them.

use super::{tile_body, Epilogue, Flavour, KSteps, Lanes, Tile};
use crate::isa::Isa;

#[derive(Clone, Copy)]
pub(crate) struct Scalar;

impl Lanes for Scalar {
    type V = f32;
    const LANES: usize = 1;
    #[inline(always)]
    unsafe fn zero(self) -> f32 {
        0.0
    }
    #[inline(always)]
    unsafe fn splat(self, x: f32) -> f32 {
        x
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> f32 {
        // SAFETY: the caller passes a readable pointer.
        unsafe { *p }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: f32) {
        // SAFETY: the caller passes a writable pointer.
        unsafe { *p = v }
    }
    #[inline(always)]
    unsafe fn fma(self, a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
    #[inline(always)]
    unsafe fn add(self, a: f32, b: f32) -> f32 {
        a + b
    }
    #[inline(always)]
    unsafe fn max(self, a: f32, b: f32) -> f32 {
        a.max(b)
    }
    #[inline(always)]
    unsafe fn min(self, a: f32, b: f32) -> f32 {
        a.min(b)
    }
}

macro_rules! scalar_tile {
    ($name:ident, $mr:literal, $nv:literal, $u:literal) => {
        /// A scalar microkernel (see [`super::KernelFn`]).
        ///
        /// # Safety
        /// See [`super::KernelFn`].
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
            // SAFETY: forwarded contract.
            unsafe { tile_body::<Scalar, $mr, $nv, $u>(Scalar, k, a, lda, b, c, ldc, mr, nr, ep) }
        }
    };
}

// Small-M tiles (a fully connected layer at batch 1 or 2): 8 independent accumulators
// already, so no K split. Speeds are estimates (fewer A reuses per B load).
scalar_tile!(sgemm_4x8_scalar, 4, 8, 1);
scalar_tile!(sgemm_1x8_scalar, 1, 8, 1);
scalar_tile!(sgemm_2x8_scalar, 2, 8, 1);

static TILES: [Tile; 3] = [
    Tile { name: "sgemm_4x8_scalar", mr: 4, nr: 8, speed: 1.0, kernel: sgemm_4x8_scalar },
    Tile { name: "sgemm_1x8_scalar", mr: 1, nr: 8, speed: 0.5, kernel: sgemm_1x8_scalar },
    Tile { name: "sgemm_2x8_scalar", mr: 2, nr: 8, speed: 0.8, kernel: sgemm_2x8_scalar },
];

pub static FLAVOUR: Flavour = Flavour { name: "scalar", isa: Isa::Scalar, tiles: || &TILES };
