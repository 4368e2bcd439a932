//! The `pulp` microkernels: the shared tile body over `pulp::Simd`, dispatched at run time
//! to the best level `KERNELS_ISA` allows: x86-64-v4 (14x32, as the AVX-512 tile),
//! x86-64-v3 (6x16, as the AVX2 tile), aarch64 NEON (8x12) or scalar (4x8). The level is
//! fixed once (`isa::ceiling` is cached), so the NR that B was packed for never changes.

use pulp::{Simd, WithSimd};

use super::{tile_body, Epilogue, Flavour, KSteps, Lanes, Tile};
use crate::isa::{self, Isa};

#[derive(Clone, Copy)]
pub(crate) struct P<S>(S);

impl<S: Simd> Lanes for P<S> {
    type V = S::f32s;
    const LANES: usize = S::F32_LANES;
    #[inline(always)]
    unsafe fn zero(self) -> S::f32s {
        self.0.splat_f32s(0.0)
    }
    #[inline(always)]
    unsafe fn splat(self, x: f32) -> S::f32s {
        self.0.splat_f32s(x)
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> S::f32s {
        // SAFETY: the caller passes LANES readable f32s; unaligned read of a Pod vector.
        unsafe { p.cast::<S::f32s>().read_unaligned() }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: S::f32s) {
        // SAFETY: the caller passes LANES writable f32s; unaligned write of a Pod vector.
        unsafe { p.cast::<S::f32s>().write_unaligned(v) }
    }
    #[inline(always)]
    unsafe fn fma(self, a: S::f32s, b: S::f32s, c: S::f32s) -> S::f32s {
        self.0.mul_add_f32s(a, b, c)
    }
    #[inline(always)]
    unsafe fn add(self, a: S::f32s, b: S::f32s) -> S::f32s {
        self.0.add_f32s(a, b)
    }
    #[inline(always)]
    unsafe fn max(self, a: S::f32s, b: S::f32s) -> S::f32s {
        self.0.max_f32s(a, b)
    }
    #[inline(always)]
    unsafe fn min(self, a: S::f32s, b: S::f32s) -> S::f32s {
        self.0.min_f32s(a, b)
    }
}

/// The arguments of one microkernel call, run by `pulp` at the level it dispatches to.
struct Call<'a, const MR: usize, const NV: usize, const U: usize> {
    k: KSteps,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    mr: usize,
    nr: usize,
    ep: &'a Epilogue,
}

impl<const MR: usize, const NV: usize, const U: usize> WithSimd for Call<'_, MR, NV, U> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        // SAFETY: `vectorize` runs this inside a function compiled for `S`'s features, which
        // `S::try_new` verified; the pointer contract is forwarded from `KernelFn`.
        unsafe {
            tile_body::<P<S>, MR, NV, U>(
                P(simd),
                self.k,
                self.a,
                self.lda,
                self.b,
                self.c,
                self.ldc,
                self.mr,
                self.nr,
                self.ep,
            )
        }
    }
}

macro_rules! pulp_tile {
    ($name:ident, $level:ty, $mr:literal, $nv:literal, $u:literal) => {
        /// A `pulp` microkernel (see [`super::KernelFn`]); a no-op if the level is missing
        /// (never reached: `tiles()` only lists levels `isa::available` allows).
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
            if let Some(simd) = <$level>::try_new() {
                Simd::vectorize(simd, Call::<$mr, $nv, $u> { k, a, lda, b, c, ldc, mr, nr, ep });
            }
        }
    };
}

/// pulp's scalar level, wrapped so the macro can call `try_new` on it like the others.
struct ScalarLevel;
impl ScalarLevel {
    fn try_new() -> Option<pulp::Scalar> {
        Some(pulp::Scalar::new())
    }
}

// Each level also has small-M tiles (a fully connected layer at batch 1..4) with K split
// over U accumulator sets (see `tile_body`); speeds as the AVX-512 ones (avx512.rs).
pulp_tile!(sgemm_4x8_pulp, ScalarLevel, 4, 8, 1);
pulp_tile!(sgemm_1x8_pulp, ScalarLevel, 1, 8, 1);
static TILES_SCALAR: [Tile; 2] = [
    Tile { name: "sgemm_4x8_pulp", mr: 4, nr: 8, speed: 1.0, kernel: sgemm_4x8_pulp },
    Tile { name: "sgemm_1x8_pulp", mr: 1, nr: 8, speed: 0.5, kernel: sgemm_1x8_pulp },
];

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    pulp_tile!(sgemm_6x16_pulp, pulp::x86::V3, 6, 2, 1);
    pulp_tile!(sgemm_14x32_pulp, pulp::x86::V4, 14, 2, 1);
    pulp_tile!(sgemm_1x16_pulp, pulp::x86::V3, 1, 2, 4);
    pulp_tile!(sgemm_2x16_pulp, pulp::x86::V3, 2, 2, 2);
    pulp_tile!(sgemm_1x32_pulp, pulp::x86::V4, 1, 2, 4);
    pulp_tile!(sgemm_4x32_pulp, pulp::x86::V4, 4, 2, 1);
    pub(super) static TILES_V3: [Tile; 3] = [
        Tile { name: "sgemm_6x16_pulp", mr: 6, nr: 16, speed: 1.0, kernel: sgemm_6x16_pulp },
        Tile { name: "sgemm_1x16_pulp", mr: 1, nr: 16, speed: 0.33, kernel: sgemm_1x16_pulp },
        Tile { name: "sgemm_2x16_pulp", mr: 2, nr: 16, speed: 0.65, kernel: sgemm_2x16_pulp },
    ];
    pub(super) static TILES_V4: [Tile; 3] = [
        Tile { name: "sgemm_14x32_pulp", mr: 14, nr: 32, speed: 1.0, kernel: sgemm_14x32_pulp },
        Tile { name: "sgemm_1x32_pulp", mr: 1, nr: 32, speed: 0.33, kernel: sgemm_1x32_pulp },
        Tile { name: "sgemm_4x32_pulp", mr: 4, nr: 32, speed: 0.83, kernel: sgemm_4x32_pulp },
    ];
}
#[cfg(target_arch = "x86_64")]
pub use x86::{
    sgemm_14x32_pulp, sgemm_1x16_pulp, sgemm_1x32_pulp, sgemm_2x16_pulp, sgemm_4x32_pulp, sgemm_6x16_pulp,
};

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::*;
    pulp_tile!(sgemm_8x12_pulp, pulp::aarch64::Neon, 8, 3, 1);
    pulp_tile!(sgemm_1x12_pulp, pulp::aarch64::Neon, 1, 3, 3);
    pub(super) static TILES_NEON: [Tile; 2] = [
        Tile { name: "sgemm_8x12_pulp", mr: 8, nr: 12, speed: 1.0, kernel: sgemm_8x12_pulp },
        Tile { name: "sgemm_1x12_pulp", mr: 1, nr: 12, speed: 0.33, kernel: sgemm_1x12_pulp },
    ];
}
#[cfg(target_arch = "aarch64")]
pub use arm::{sgemm_1x12_pulp, sgemm_8x12_pulp};

fn tiles() -> &'static [Tile] {
    #[cfg(target_arch = "x86_64")]
    {
        if isa::available(Isa::Avx512) && pulp::x86::V4::try_new().is_some() {
            return &x86::TILES_V4;
        }
        if isa::available(Isa::Avx2) && pulp::x86::V3::try_new().is_some() {
            return &x86::TILES_V3;
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if isa::available(Isa::Neon) && pulp::aarch64::Neon::try_new().is_some() {
            return &arm::TILES_NEON;
        }
    }
    &TILES_SCALAR
}

pub static FLAVOUR: Flavour = Flavour { name: "pulp", isa: Isa::Scalar, tiles };
