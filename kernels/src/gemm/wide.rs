//! The `wide` microkernel: the shared tile body over `wide::f32x8`, whose implementation is
//! fixed at compile time by the crate's target features. In a default x86-64 build that
//! means two SSE halves and a separate multiply and add (no FMA); built with
//! `-C target-cpu=native` it becomes AVX2+FMA. Measuring that gap is the point.

use wide::f32x8;

use super::{tile_body, Epilogue, Flavour, KSteps, Lanes, Tile};
use crate::isa::Isa;

#[derive(Clone, Copy)]
pub(crate) struct Wide;

impl Lanes for Wide {
    type V = f32x8;
    const LANES: usize = 8;
    #[inline(always)]
    unsafe fn zero(self) -> f32x8 {
        f32x8::ZERO
    }
    #[inline(always)]
    unsafe fn splat(self, x: f32) -> f32x8 {
        f32x8::splat(x)
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> f32x8 {
        // SAFETY: the caller passes 8 readable f32s; unaligned read.
        unsafe { p.cast::<f32x8>().read_unaligned() }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: f32x8) {
        // SAFETY: the caller passes 8 writable f32s; unaligned write.
        unsafe { p.cast::<f32x8>().write_unaligned(v) }
    }
    #[inline(always)]
    unsafe fn fma(self, a: f32x8, b: f32x8, c: f32x8) -> f32x8 {
        a.mul_add(b, c)
    }
    #[inline(always)]
    unsafe fn add(self, a: f32x8, b: f32x8) -> f32x8 {
        a + b
    }
    #[inline(always)]
    unsafe fn max(self, a: f32x8, b: f32x8) -> f32x8 {
        // wide's `max` returns `b` when `a` is NaN, as the epilogue requires.
        a.max(b)
    }
    #[inline(always)]
    unsafe fn min(self, a: f32x8, b: f32x8) -> f32x8 {
        a.min(b)
    }
}

macro_rules! wide_tile {
    ($name:ident, $mr:literal, $nv:literal, $u:literal) => {
        /// A `wide` microkernel (see [`super::KernelFn`]).
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
            // SAFETY: forwarded contract; wide needs no runtime ISA.
            unsafe { tile_body::<Wide, $mr, $nv, $u>(Wide, k, a, lda, b, c, ldc, mr, nr, ep) }
        }
    };
}

// Small-M tiles (a fully connected layer at batch 1..4): K split over U accumulator sets
// (see `tile_body`); speeds as the AVX-512 ones at the same chain counts (avx512.rs).
wide_tile!(sgemm_6x16_wide, 6, 2, 1);
wide_tile!(sgemm_1x16_wide, 1, 2, 4);
wide_tile!(sgemm_2x16_wide, 2, 2, 2);
wide_tile!(sgemm_4x16_wide, 4, 2, 1);

static TILES: [Tile; 4] = [
    Tile { name: "sgemm_6x16_wide", mr: 6, nr: 16, speed: 1.0, kernel: sgemm_6x16_wide },
    Tile { name: "sgemm_1x16_wide", mr: 1, nr: 16, speed: 0.33, kernel: sgemm_1x16_wide },
    Tile { name: "sgemm_2x16_wide", mr: 2, nr: 16, speed: 0.65, kernel: sgemm_2x16_wide },
    Tile { name: "sgemm_4x16_wide", mr: 4, nr: 16, speed: 0.83, kernel: sgemm_4x16_wide },
];

pub static FLAVOUR: Flavour = Flavour { name: "wide", isa: Isa::Scalar, tiles: || &TILES };
