//! `pulp`: the portable crate as an implementation of the same trait. `Pulp<L>` wraps one
//! of pulp's level tokens; [`PulpBest`] (the backend-table row) dispatches at run time to
//! the best level `KERNELS_ISA` allows: x86-64-v4 (16 lanes), x86-64-v3 (8), aarch64 NEON
//! (4) or pulp's scalar level (1). So `KERNELS_ISA=avx2` runs pulp at v3, never v4.
//!
//! What pulp gives differently from the hand-written files, and how this adapter keeps the
//! contracts of [`super`]:
//! - `max`: pulp's `max_f32s` is `vmaxq_f32` at the NEON level, which propagates NaN; here
//!   `max` is `x > lo ? x : lo` on every level (NaN compares false: NaN -> lo).
//! - `fma`: `mul_add_e_f32s`, fused where the level has FMA; at the scalar level a multiply
//!   and an add, where `mul_add_f32s` would call libm's `fmaf`.
//! - Tails: pulp's `partial_load_f32s` / `partial_store_f32s` (masked on x86).

use pulp::{Simd as PulpSimd, WithSimd};

use super::{Implementation, Simd, SimdOp};
use crate::isa::{self, Isa};

/// A pulp level token this crate dispatches to, with the facts pulp does not state.
pub trait PulpLevel: PulpSimd + Send + Sync + 'static {
    /// The [`Isa`] level whose instructions the token's code uses.
    const LEVEL: Isa;
    const REGISTERS: usize;
    /// The token without checks.
    ///
    /// # Safety
    /// The CPU has pulp's features for this level.
    unsafe fn assume() -> Self;
    /// pulp's own check for this level.
    fn detect() -> Option<Self>;
}

impl PulpLevel for pulp::Scalar {
    const LEVEL: Isa = Isa::Scalar;
    const REGISTERS: usize = 16;
    unsafe fn assume() -> Self {
        pulp::Scalar::new()
    }
    fn detect() -> Option<Self> {
        Some(pulp::Scalar::new())
    }
}

/// A level pulp checks at run time: `new_unchecked` and `try_new` are pulp's.
macro_rules! detected_level {
    ($arch:literal, $token:path, $level:expr, $registers:literal) => {
        #[cfg(target_arch = $arch)]
        impl PulpLevel for $token {
            const LEVEL: Isa = $level;
            const REGISTERS: usize = $registers;
            unsafe fn assume() -> Self {
                // SAFETY: forwarded contract.
                unsafe { <$token>::new_unchecked() }
            }
            fn detect() -> Option<Self> {
                <$token>::try_new()
            }
        }
    };
}

detected_level!("x86_64", pulp::x86::V3, Isa::Avx2, 16);
detected_level!("x86_64", pulp::x86::V4, Isa::Avx512, 32);
detected_level!("aarch64", pulp::aarch64::Neon, Isa::Neon, 32);

/// One pulp level as a [`Simd`] implementation.
#[derive(Debug, Clone, Copy)]
pub struct Pulp<L>(L);

/// Runs our operation inside pulp's `vectorize` (a function compiled for the level's
/// features) with our token, which pulp's own token argument duplicates.
struct InPulp<Op, T>(Op, T);

impl<Op: SimdOp, T: Simd> WithSimd for InPulp<Op, T> {
    type Output = Op::Output;
    #[inline(always)]
    fn with_simd<S: PulpSimd>(self, _: S) -> Op::Output {
        self.0.run(self.1)
    }
}

// SAFETY: `new` (below) hands out a token only where both `isa::available(L::LEVEL)` and
// pulp's own detection agree; the methods use only pulp's safe token-checked API.
unsafe impl<L: PulpLevel> Simd for Pulp<L> {
    type V = L::f32s;
    const LANES: usize = L::F32_LANES;
    const REGISTERS: usize = L::REGISTERS;
    const LEVEL: Isa = L::LEVEL;
    const NAME: &'static str = "pulp";

    unsafe fn assume() -> Self {
        // SAFETY: forwarded contract.
        Pulp(unsafe { L::assume() })
    }
    fn new() -> Option<Self> {
        if isa::available(L::LEVEL) {
            L::detect().map(Pulp)
        } else {
            None
        }
    }
    #[inline(always)]
    fn vectorize<Op: SimdOp>(self, op: Op) -> Op::Output {
        self.0.vectorize(InPulp(op, self))
    }
    #[inline(always)]
    fn splat(self, x: f32) -> L::f32s {
        self.0.splat_f32s(x)
    }
    #[inline(always)]
    fn add(self, a: L::f32s, b: L::f32s) -> L::f32s {
        self.0.add_f32s(a, b)
    }
    #[inline(always)]
    fn sub(self, a: L::f32s, b: L::f32s) -> L::f32s {
        self.0.sub_f32s(a, b)
    }
    #[inline(always)]
    fn mul(self, a: L::f32s, b: L::f32s) -> L::f32s {
        self.0.mul_f32s(a, b)
    }
    #[inline(always)]
    fn fma(self, a: L::f32s, b: L::f32s, c: L::f32s) -> L::f32s {
        self.0.mul_add_e_f32s(a, b, c)
    }
    #[inline(always)]
    fn max(self, x: L::f32s, lo: L::f32s) -> L::f32s {
        self.0.select_f32s(self.0.greater_than_f32s(x, lo), x, lo)
    }
    #[inline(always)]
    fn min(self, x: L::f32s, hi: L::f32s) -> L::f32s {
        self.0.select_f32s(self.0.less_than_f32s(x, hi), x, hi)
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> L::f32s {
        // SAFETY: the caller passes LANES readable f32s; `f32s` is plain old data.
        unsafe { p.cast::<L::f32s>().read_unaligned() }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: L::f32s) {
        // SAFETY: the caller passes LANES writable f32s.
        unsafe { p.cast::<L::f32s>().write_unaligned(v) }
    }
    #[inline(always)]
    unsafe fn load_partial(self, p: *const f32, n: usize) -> L::f32s {
        // SAFETY: the caller passes `n` readable f32s.
        self.0.partial_load_f32s(unsafe { std::slice::from_raw_parts(p, n) })
    }
    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, v: L::f32s, n: usize) {
        // SAFETY: the caller passes `n` writable f32s.
        self.0.partial_store_f32s(unsafe { std::slice::from_raw_parts_mut(p, n) }, v)
    }
}

/// The backend-table row: the best pulp level allowed here.
pub struct PulpBest;

impl Implementation for PulpBest {
    fn level() -> Option<Isa> {
        Self::dispatch(super::Describe).map(|s| s.level)
    }
    fn dispatch<Op: SimdOp>(op: Op) -> Option<Op::Output> {
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(s) = Pulp::<pulp::x86::V4>::new() {
                return Some(s.vectorize(op));
            }
            if let Some(s) = Pulp::<pulp::x86::V3>::new() {
                return Some(s.vectorize(op));
            }
        }
        #[cfg(target_arch = "aarch64")]
        if let Some(s) = Pulp::<pulp::aarch64::Neon>::new() {
            return Some(s.vectorize(op));
        }
        Pulp::<pulp::Scalar>::new().map(|s| s.vectorize(op))
    }
}
