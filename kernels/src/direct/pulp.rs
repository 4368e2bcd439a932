//! pulp: the same body, vectorised by pulp's `Simd` trait and dispatched at run time
//! (`Arch::dispatch`: x86-64-v3 AVX2+FMA here, NEON on aarch64, scalar elsewhere; the
//! workspace builds pulp without its `x86-v4` feature, so no AVX-512 level).
//!
//! Only this adapter is pulp-specific: full loads and stores are unaligned reads of
//! `S::f32s`, channel tails use pulp's `partial_load_f32s` / `partial_store_f32s` (masked
//! on x86-64-v3). The register tile is 4 pixels, as for AVX2 (16 ymm registers).

use pulp::{Arch, Simd, WithSimd};

use super::{rows, Job, Lanes};
use crate::isa::{self, Isa};

/// Output pixels per register tile.
const R: usize = 4;

/// Channel blocks per register tile.
const RB: usize = 1;

#[derive(Clone, Copy)]
struct P<S>(S);

impl<S: Simd> Lanes for P<S> {
    type V = S::f32s;
    const N: usize = S::F32_LANES;
    // SAFETY (every method): pulp's token `S` proves its ISA is available; pointers are
    // valid for the lanes accessed (the trait contract); `S::f32s` is plain old data.
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> S::f32s {
        unsafe { p.cast::<S::f32s>().read_unaligned() }
    }
    #[inline(always)]
    unsafe fn load_partial(self, p: *const f32, n: usize) -> S::f32s {
        self.0.partial_load_f32s(unsafe { std::slice::from_raw_parts(p, n) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: S::f32s) {
        unsafe { p.cast::<S::f32s>().write_unaligned(v) }
    }
    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, v: S::f32s, n: usize) {
        self.0.partial_store_f32s(unsafe { std::slice::from_raw_parts_mut(p, n) }, v)
    }
    #[inline(always)]
    unsafe fn splat(self, x: f32) -> S::f32s {
        self.0.splat_f32s(x)
    }
    #[inline(always)]
    unsafe fn fma(self, a: S::f32s, b: S::f32s, c: S::f32s) -> S::f32s {
        self.0.mul_add_e_f32s(a, b, c)
    }
    #[inline(always)]
    unsafe fn max(self, x: S::f32s, lo: S::f32s) -> S::f32s {
        // `x > lo ? x : lo`, not `max_f32s`: NEON's `fmax` propagates NaN, and the contract
        // is x86 `maxps` semantics (a NaN `x` gives `lo`) on every level.
        self.0.select_f32s(self.0.greater_than_f32s(x, lo), x, lo)
    }
    #[inline(always)]
    unsafe fn min(self, x: S::f32s, hi: S::f32s) -> S::f32s {
        self.0.min_f32s(x, hi)
    }
}

/// The pulp operation: one chunk of output rows, kernel side `K` (0 = any, taps checked).
struct DwconvF32Pulp<'a, 'b, const K: usize> {
    job: &'a Job<'b>,
    first_row: usize,
    out: &'a mut [f32],
}

impl<const K: usize> WithSimd for DwconvF32Pulp<'_, '_, K> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        // SAFETY: `simd` proves its ISA; `job` is built consistently by the driver and
        // `K` matches it (chosen by `rows_pulp`).
        unsafe { rows::<P<S>, K, R, RB>(P(simd), self.job, self.first_row, self.out) }
    }
}

/// pulp's level, capped by `KERNELS_ISA` (so `KERNELS_ISA=scalar` runs pulp's scalar body).
fn arch() -> Arch {
    if isa::available(Isa::Avx2) || isa::available(Isa::Neon) {
        Arch::new()
    } else {
        Arch::Scalar
    }
}

/// Depthwise 3x3 (stride 1 or 2, register-tiled interior) in pulp.
fn dwconv3x3_f32_pulp(job: &Job, first_row: usize, out: &mut [f32]) {
    arch().dispatch(DwconvF32Pulp::<3> { job, first_row, out })
}

/// Depthwise 5x5 (stride 1 or 2, register-tiled interior) in pulp.
fn dwconv5x5_f32_pulp(job: &Job, first_row: usize, out: &mut [f32]) {
    arch().dispatch(DwconvF32Pulp::<5> { job, first_row, out })
}

/// Depthwise with any kernel and stride, every tap checked, in pulp.
fn dwconv_f32_pulp(job: &Job, first_row: usize, out: &mut [f32]) {
    arch().dispatch(DwconvF32Pulp::<0> { job, first_row, out })
}

fn rows_pulp(job: &Job, first_row: usize, out: &mut [f32]) {
    match (job.kh, job.kw) {
        (3, 3) => dwconv3x3_f32_pulp(job, first_row, out),
        (5, 5) => dwconv5x5_f32_pulp(job, first_row, out),
        _ => dwconv_f32_pulp(job, first_row, out),
    }
}

super::direct_algorithm!(
    /// Direct depthwise convolution in pulp (portable SIMD, run-time dispatch).
    DirectPulp, "direct-pulp", "pulp", Isa::Scalar, rows_pulp
);
