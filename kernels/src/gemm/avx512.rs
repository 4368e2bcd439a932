//! AVX-512F microkernels. Zen 4 double-pumps 512-bit FMAs, so AVX-512 has the same FLOP
//! peak as AVX2; it pays through 32 registers (bigger tiles, fewer loads per FMA) and the
//! broadcast folded into the FMA (`vfmadd231ps zmm, zmm, [a]{1to16}`).
//!
//! Tiles (NR = 32, so one B packing serves all): 14x32 (28 accumulators), 12x32 (24), and
//! 7x32 for the 7x7 layers' 49 rows; 6x64 (24 accumulators, NR = 64) for short K.

use std::arch::x86_64::*;

use super::{tile_body, Epilogue, Flavour, KSteps, Lanes, Tile};
use crate::isa::Isa;

#[derive(Clone, Copy)]
pub(crate) struct Avx512;

// SAFETY (every method): only reached from `#[target_feature(enable = "avx512f,...")]`
// entry points, which `Flavour::available` gates on the detected CPU.
impl Lanes for Avx512 {
    type V = __m512;
    const LANES: usize = 16;
    #[inline(always)]
    unsafe fn zero(self) -> __m512 {
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn splat(self, x: f32) -> __m512 {
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> __m512 {
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: __m512) {
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn fma(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn add(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn max(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_max_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn min(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_min_ps(a, b) }
    }
}

macro_rules! avx512_tile {
    ($name:ident, $mr:literal, $nv:literal, $u:literal) => {
        /// An AVX-512F microkernel (see [`super::KernelFn`]).
        ///
        /// # Safety
        /// See [`super::KernelFn`]; the CPU must have AVX-512F/VL/BW/DQ and FMA.
        #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
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
            // SAFETY: forwarded contract; AVX-512 enabled on this function.
            unsafe { tile_body::<Avx512, $mr, $nv, $u>(Avx512, k, a, lda, b, c, ldc, mr, nr, ep) }
        }
    };
}

avx512_tile!(sgemm_12x32_avx512, 12, 2, 1);
avx512_tile!(sgemm_14x32_avx512, 14, 2, 1);
avx512_tile!(sgemm_7x32_avx512, 7, 2, 1);
avx512_tile!(sgemm_6x64_avx512, 6, 4, 1);
// Small-M tiles (a fully connected layer at batch 1..4), K split over U accumulator sets so
// that each keeps 8 FMA chains in flight (see `tile_body`).
avx512_tile!(sgemm_1x32_avx512, 1, 2, 4);
avx512_tile!(sgemm_2x32_avx512, 2, 2, 2);
avx512_tile!(sgemm_4x32_avx512, 4, 2, 1);

// Measured (bench `gemm`, one thread, Xeon model 207): 14x32 >= 12x32 on every shape
// (pw6..pw11: 188 vs 179 GFLOP/s); 7x32 within 1% of 14x32 on full tiles and far ahead at
// M = 49 (pw12: 174 vs 96 GFLOP/s). 14 divides every MobileNetV1 pixel count except 49.
// The small-M tiles on full tiles (pw7 shape, B in L2): 1x32 62, 2x32 122, 4x32 156 vs
// 14x32 188 GFLOP/s (1x32 is bound by L2 -> L1 bandwidth: 128 B of B per 2 FMAs); they
// win only when M is small (see `choose_tile`).
static TILES: [Tile; 7] = [
    Tile { name: "sgemm_14x32_avx512", mr: 14, nr: 32, speed: 1.0, kernel: sgemm_14x32_avx512 },
    Tile { name: "sgemm_7x32_avx512", mr: 7, nr: 32, speed: 0.99, kernel: sgemm_7x32_avx512 },
    Tile { name: "sgemm_12x32_avx512", mr: 12, nr: 32, speed: 0.97, kernel: sgemm_12x32_avx512 },
    Tile { name: "sgemm_1x32_avx512", mr: 1, nr: 32, speed: 0.33, kernel: sgemm_1x32_avx512 },
    Tile { name: "sgemm_2x32_avx512", mr: 2, nr: 32, speed: 0.65, kernel: sgemm_2x32_avx512 },
    Tile { name: "sgemm_4x32_avx512", mr: 4, nr: 32, speed: 0.83, kernel: sgemm_4x32_avx512 },
    // Used for K <= 128 (see `Flavour::nr_for`).
    Tile { name: "sgemm_6x64_avx512", mr: 6, nr: 64, speed: 1.0, kernel: sgemm_6x64_avx512 },
];

pub static FLAVOUR: Flavour = Flavour { name: "avx512", isa: Isa::Avx512, tiles: || &TILES };
