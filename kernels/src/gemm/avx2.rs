//! AVX2 + FMA microkernels: 6x16 broadcast tiles (12 ymm accumulators, 2 B vectors and one
//! broadcast: 15 of the 16 ymm registers), and 5x16 for row counts that 6 divides badly.

use std::arch::x86_64::*;

use super::{tile_body, Epilogue, Flavour, KSteps, Lanes, Tile};
use crate::isa::Isa;

#[derive(Clone, Copy)]
pub(crate) struct Avx2;

// SAFETY (every method): only reached from `#[target_feature(enable = "avx2,fma")]` entry
// points, which `Flavour::available` gates on the detected CPU.
impl Lanes for Avx2 {
    type V = __m256;
    const LANES: usize = 8;
    #[inline(always)]
    unsafe fn zero(self) -> __m256 {
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn splat(self, x: f32) -> __m256 {
        unsafe { _mm256_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> __m256 {
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: __m256) {
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn fma(self, a: __m256, b: __m256, c: __m256) -> __m256 {
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn add(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn max(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_max_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn min(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_min_ps(a, b) }
    }
}

macro_rules! avx2_tile {
    ($name:ident, $mr:literal, $nv:literal, $u:literal) => {
        /// An AVX2+FMA microkernel (see [`super::KernelFn`]).
        ///
        /// # Safety
        /// See [`super::KernelFn`]; the CPU must have AVX2 and FMA.
        #[target_feature(enable = "avx2,fma")]
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
            // SAFETY: forwarded contract; AVX2+FMA enabled on this function.
            unsafe { tile_body::<Avx2, $mr, $nv, $u>(Avx2, k, a, lda, b, c, ldc, mr, nr, ep) }
        }
    };
}

avx2_tile!(sgemm_6x16_avx2, 6, 2, 1);
avx2_tile!(sgemm_5x16_avx2, 5, 2, 1);
// Small-M tiles (a fully connected layer at batch 1..4): K split over U accumulator sets
// so that each keeps 8 FMA chains in flight (see `tile_body`).
avx2_tile!(sgemm_1x16_avx2, 1, 2, 4);
avx2_tile!(sgemm_2x16_avx2, 2, 2, 2);
avx2_tile!(sgemm_4x16_avx2, 4, 2, 1);
// Measured on full tiles (pw7 shape, B in L2): 1x16 44, 2x16 79, 4x16 78 vs 6x16 93
// GFLOP/s; FC 1024 -> 1000 at M = 1: 1x16 0.136 ms vs 6x16 0.171 ms.

static TILES: [Tile; 5] = [
    Tile { name: "sgemm_6x16_avx2", mr: 6, nr: 16, speed: 1.0, kernel: sgemm_6x16_avx2 },
    // Measured 8-10% slower than 6x16 on full tiles (85 vs 94 GFLOP/s on pw6..pw11), so it
    // is chosen only where it saves more than that in padding rows.
    Tile { name: "sgemm_5x16_avx2", mr: 5, nr: 16, speed: 0.91, kernel: sgemm_5x16_avx2 },
    Tile { name: "sgemm_1x16_avx2", mr: 1, nr: 16, speed: 0.47, kernel: sgemm_1x16_avx2 },
    Tile { name: "sgemm_2x16_avx2", mr: 2, nr: 16, speed: 0.85, kernel: sgemm_2x16_avx2 },
    Tile { name: "sgemm_4x16_avx2", mr: 4, nr: 16, speed: 0.84, kernel: sgemm_4x16_avx2 },
];

pub static FLAVOUR: Flavour = Flavour { name: "avx2", isa: Isa::Avx2, tiles: || &TILES };
