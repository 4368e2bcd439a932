//! The reference microkernel: plain `f32` arithmetic through the shared tile body, on every
//! CPU. Its tile (4x8) is small enough that the 32 accumulators stay in registers or L1
//! whatever the compiler does with them.

use super::{tile_body, Epilogue, Flavour, Lanes, Tile};
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

/// The 4x8 scalar tile.
///
/// # Safety
/// See [`super::KernelFn`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_4x8_scalar(
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
    // SAFETY: forwarded contract.
    unsafe { tile_body::<Scalar, 4, 8>(Scalar, kc, a, lda, b, c, ldc, mr, nr, ep) }
}

static TILES: [Tile; 1] =
    [Tile { name: "sgemm_4x8_scalar", mr: 4, nr: 8, speed: 1.0, kernel: sgemm_4x8_scalar }];

pub static FLAVOUR: Flavour = Flavour { name: "scalar", isa: Isa::Scalar, tiles: || &TILES };
