//! One vector trait, implemented once per instruction set: the layer every kernel family
//! (`gemm`, `im2col`, `direct`, `winograd`) is written over.
//!
//! - [`Simd`] is the vocabulary: `LANES` f32 lanes per vector, loads and stores (full and
//!   partial), `fma`, `max`/`min` with one NaN rule, and [`Simd::vectorize`], which runs an
//!   operation compiled for the implementation's target features. A value of an
//!   implementation's type is a *token*: it exists only once the CPU is known to have the
//!   instructions (and `KERNELS_ISA` allows them), so arithmetic on it is safe.
//! - The implementations, one file each: [`scalar`] (plain `f32`), `avx2` (AVX2 + FMA),
//!   `avx512` (AVX-512F), `neon`, and the portable crates as implementations of the *same*
//!   trait: `pulp` (run-time dispatch to x86-64-v4 / v3 / NEON / scalar) and `wide`
//!   (`f32x8`, fixed at compile time). "Portable SIMD against hand-written intrinsics" is
//!   then one kernel body under two implementations.
//! - [`Backend`] is the **one backend table**: the registry, the kernel-set flavours, the
//!   ISA-ceiling checks and the error messages are all walked from it.
//! - [`Element`] is the storage axis: f32, f16 and bf16 activations are widened to f32
//!   lanes on load and narrowed on store, so one body serves every precision.
//!
//! # The contracts every implementation keeps
//!
//! - **NaN:** `max(x, lo)` returns `lo` when `x` is NaN (x86 `maxps` with `x` first, IEEE
//!   `maxNum`, `f32::max`); `min(x, hi)` is only called with a non-NaN `x`. So the fused
//!   clamp `min(max(x, lo), hi)` maps NaN to `lo`, as [`crate::Activation::apply`] does.
//!   An implementation whose native `max` propagates NaN (NEON `fmax`, pulp's NEON level)
//!   must not use it.
//! - **FMA:** `fma(a, b, c) = a * b + c`, fused where the ISA has FMA. Where it has none
//!   (`scalar`, `wide` on baseline x86-64, pulp's scalar level) it is a multiply and an add,
//!   never a libm `fmaf` call (one function call per multiply-add).
//! - **Tails:** `load_partial` / `store_partial` touch exactly `n < LANES` elements (masked
//!   instructions or a stack buffer), never memory past them.
//! - **Determinism:** an implementation computes the same bits on every run; the kernels'
//!   results depend only on the kernel set and the thread count.

use std::fmt;

use crate::error::{KernelError, Result};
use half::{bf16, f16};

use crate::isa::{self, Isa};
use crate::spec::Activation;
use crate::tensor::Plain;

/// The widest vector of any implementation, in f32 lanes (AVX-512): sizes stack buffers
/// and channel padding.
pub const MAX_LANES: usize = 16;

/// An operation written once over [`Simd`] and run by [`Simd::vectorize`] or
/// [`Backend::dispatch`].
pub trait SimdOp {
    type Output;
    /// Runs the operation with the token `s`. Implementations are `#[inline(always)]`, so the
    /// body is compiled inside `s`'s target-feature context and the intrinsics inline.
    fn run<S: Simd>(self, s: S) -> Self::Output;
}

/// A vector of `LANES` f32 lanes and the operations the kernel bodies use.
///
/// # Safety
/// For implementors: a value of the type may exist only when the CPU can execute the
/// instructions of [`Simd::LEVEL`] and `KERNELS_ISA` allows that level (construct it
/// through [`Simd::new`]); the safe methods rely on it.
pub unsafe trait Simd: Copy + Send + Sync + 'static {
    /// One vector.
    type V: Copy;
    /// f32 lanes per vector; divides [`MAX_LANES`].
    const LANES: usize;
    /// Architectural vector registers (16 for AVX2, 32 for AVX-512 and NEON): the families
    /// size their register tiles from it.
    const REGISTERS: usize;
    /// The instruction level the token's code executes at (for pulp, the level it dispatched
    /// to; for `wide`, the level of the compile-time target).
    const LEVEL: Isa;
    /// The implementation's name in kernel names (`avx512`, `pulp`, ...).
    const NAME: &'static str;

    /// Makes a token without checking the CPU.
    ///
    /// # Safety
    /// The CPU must have the instructions of [`Simd::LEVEL`], and `KERNELS_ISA` allow them.
    unsafe fn assume() -> Self;

    /// The token, if this CPU has [`Simd::LEVEL`] and `KERNELS_ISA` allows it.
    fn new() -> Option<Self> {
        // SAFETY: `isa::available` checked the CPU and the ceiling.
        isa::available(Self::LEVEL).then(|| unsafe { Self::assume() })
    }

    /// Runs `op` inside a function compiled with this implementation's target features.
    fn vectorize<Op: SimdOp>(self, op: Op) -> Op::Output;

    fn splat(self, x: f32) -> Self::V;
    #[inline(always)]
    fn zero(self) -> Self::V {
        self.splat(0.0)
    }
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    fn sub(self, a: Self::V, b: Self::V) -> Self::V;
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a * b + c`, fused where the ISA has FMA (see the module docs).
    fn fma(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `max(x, lo)`; a NaN `x` gives `lo` (see the module docs).
    fn max(self, x: Self::V, lo: Self::V) -> Self::V;
    /// `min(x, hi)` for a non-NaN `x`.
    fn min(self, x: Self::V, hi: Self::V) -> Self::V;

    /// Loads `LANES` f32s from `p` (no alignment needed).
    ///
    /// # Safety
    /// `p` is valid for reading `LANES` f32s.
    unsafe fn load(self, p: *const f32) -> Self::V;
    /// Stores `LANES` f32s to `p` (no alignment needed).
    ///
    /// # Safety
    /// `p` is valid for writing `LANES` f32s.
    unsafe fn store(self, p: *mut f32, v: Self::V);

    /// Loads `n <= LANES` f32s; the other lanes are zero; nothing past `p + n` is touched.
    ///
    /// # Safety
    /// `p` is valid for reading `n` f32s.
    #[inline(always)]
    unsafe fn load_partial(self, p: *const f32, n: usize) -> Self::V {
        let mut buf = [0.0f32; MAX_LANES];
        // SAFETY: `p` holds `n <= LANES <= MAX_LANES` f32s; `buf` holds `LANES`.
        unsafe {
            std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n.min(Self::LANES));
            self.load(buf.as_ptr())
        }
    }
    /// Stores the first `n <= LANES` lanes; nothing past `p + n` is touched.
    ///
    /// # Safety
    /// `p` is valid for writing `n` f32s.
    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, v: Self::V, n: usize) {
        let mut buf = [0.0f32; MAX_LANES];
        // SAFETY: `buf` holds `LANES` f32s; `p` holds `n <= LANES`.
        unsafe {
            self.store(buf.as_mut_ptr(), v);
            std::ptr::copy_nonoverlapping(buf.as_ptr(), p, n.min(Self::LANES));
        }
    }

    /// Loads `LANES` f16s, widened to f32 (default: lane by lane through `half`).
    ///
    /// # Safety
    /// `p` is valid for reading `LANES` f16s.
    #[inline(always)]
    unsafe fn load_f16(self, p: *const f16) -> Self::V {
        // SAFETY: forwarded contract.
        unsafe { widen_lanes(self, p) }
    }
    /// Stores `LANES` lanes narrowed to f16, round to nearest even (default: through `half`).
    ///
    /// # Safety
    /// `p` is valid for writing `LANES` f16s.
    #[inline(always)]
    unsafe fn store_f16(self, p: *mut f16, v: Self::V) {
        // SAFETY: forwarded contract.
        unsafe { narrow_lanes(self, p, v) }
    }
    /// Loads `LANES` bf16s, widened to f32 (exact: a 16-bit shift).
    ///
    /// # Safety
    /// `p` is valid for reading `LANES` bf16s.
    #[inline(always)]
    unsafe fn load_bf16(self, p: *const bf16) -> Self::V {
        // SAFETY: forwarded contract.
        unsafe { widen_lanes(self, p) }
    }
    /// Stores `LANES` lanes narrowed to bf16, round to nearest even, NaN kept quiet.
    ///
    /// # Safety
    /// `p` is valid for writing `LANES` bf16s.
    #[inline(always)]
    unsafe fn store_bf16(self, p: *mut bf16, v: Self::V) {
        // SAFETY: forwarded contract.
        unsafe { narrow_lanes(self, p, v) }
    }

    /// Whether the implementation has 32 architectural vector registers (AVX-512, NEON) rather
    /// than 16: the families pick their register tiles with it. An associated constant, not
    /// a comparison, so that `if S::REGISTERS_32` is decided when the body is instantiated
    /// and only the taken branch is compiled.
    const REGISTERS_32: bool = Self::REGISTERS >= 32;
    /// Whether vectors have one lane (scalar), for the same reason.
    const ONE_LANE: bool = Self::LANES == 1;

    /// Whether any lane of `v` is NaN (rare-path checks; not for inner loops).
    #[inline(always)]
    fn any_nan(self, v: Self::V) -> bool {
        let mut buf = [0.0f32; MAX_LANES];
        // SAFETY: `buf` holds `MAX_LANES >= LANES` f32s.
        unsafe { self.store(buf.as_mut_ptr(), v) };
        buf[..Self::LANES].iter().any(|x| x.is_nan())
    }
}

/// The fused activation of every family: `min(max(x, lo), hi)` when `on` (NaN -> `lo`, see
/// the module docs); `on == false` (`Activation::None`) passes every value, NaN included.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clamp {
    pub lo: f32,
    pub hi: f32,
    pub on: bool,
}

impl Clamp {
    /// No clamp.
    pub const OFF: Clamp = Clamp { lo: f32::NEG_INFINITY, hi: f32::INFINITY, on: false };

    /// The clamp of a (validated) activation.
    pub fn of(activation: Activation) -> Clamp {
        let (lo, hi) = activation.bounds();
        Clamp { lo, hi, on: activation != Activation::None }
    }

    /// This clamp if `last` (the store that finishes an output), else none.
    pub fn if_last(self, last: bool) -> Clamp {
        if last {
            self
        } else {
            Clamp::OFF
        }
    }

    /// The bounds as vectors, splatted once per call of a kernel.
    #[inline(always)]
    pub fn splat<S: Simd>(self, s: S) -> ClampV<S> {
        ClampV { lo: s.splat(self.lo), hi: s.splat(self.hi), on: self.on }
    }

    /// The clamp of one value, with the same NaN rule.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        if self.on {
            x.max(self.lo).min(self.hi)
        } else {
            x
        }
    }
}

/// A [`Clamp`] with its bounds splatted for `S`.
#[derive(Clone, Copy)]
pub struct ClampV<S: Simd> {
    lo: S::V,
    hi: S::V,
    on: bool,
}

impl<S: Simd> ClampV<S> {
    #[inline(always)]
    pub fn apply(self, s: S, v: S::V) -> S::V {
        if self.on {
            s.min(s.max(v, self.lo), self.hi)
        } else {
            v
        }
    }
}

/// A float storage type of activations (and, rounded, of weights), computed in f32 lanes:
/// `f32`, `half::f16`, `half::bf16` (see [`crate::Precision`]).
///
/// The kernel bodies are written once over `E: Element` and read and write their
/// activations through [`Element::load`] / [`Element::store`], which widen to and narrow from
/// f32 lanes with the implementation's converter: the hand-written x86 implementations
/// use F16C (`vcvtph2ps` / `vcvtps2ph`) for f16 and integer shifts for bf16; the others
/// ([`Simd::load_f16`]'s default) convert lane by lane through `half`, the reference.
/// Narrowing rounds to nearest, ties to even; NaN stays NaN. Quantized types are not
/// `Element`s: they need a scale and a zero point to mean a number (`crate::int8`).
///
/// # Safety
/// For implementors: the [`Plain`] contract (every bit pattern valid, at most 4 bytes).
pub unsafe trait Element: Plain + PartialEq + fmt::Debug {
    /// Whether the type is f32 itself (loads and stores convert nothing).
    const IS_F32: bool = false;
    fn to_f32(self) -> f32;
    /// Rounds to nearest, ties to even.
    fn from_f32(x: f32) -> Self;

    /// Loads `LANES` elements from `p`, widened to f32.
    ///
    /// # Safety
    /// `p` is valid for reading `S::LANES` elements.
    unsafe fn load<S: Simd>(s: S, p: *const Self) -> S::V;
    /// Stores `LANES` lanes to `p`, narrowed.
    ///
    /// # Safety
    /// `p` is valid for writing `S::LANES` elements.
    unsafe fn store<S: Simd>(s: S, p: *mut Self, v: S::V);

    /// Loads `n <= LANES` elements, widened; the other lanes are zero; nothing past `p + n`
    /// is touched.
    ///
    /// # Safety
    /// `p` is valid for reading `n` elements.
    #[inline(always)]
    unsafe fn load_partial<S: Simd>(s: S, p: *const Self, n: usize) -> S::V {
        let mut buf = [Self::default(); MAX_LANES];
        // SAFETY: `p` holds `n <= LANES <= MAX_LANES` elements; `buf` holds `LANES`.
        unsafe {
            std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n.min(S::LANES));
            Self::load(s, buf.as_ptr())
        }
    }
    /// Stores the first `n <= LANES` lanes, narrowed; nothing past `p + n` is touched.
    ///
    /// # Safety
    /// `p` is valid for writing `n` elements.
    #[inline(always)]
    unsafe fn store_partial<S: Simd>(s: S, p: *mut Self, v: S::V, n: usize) {
        let mut buf = [Self::default(); MAX_LANES];
        // SAFETY: `buf` holds `LANES` elements; `p` holds `n <= LANES`.
        unsafe {
            Self::store(s, buf.as_mut_ptr(), v);
            std::ptr::copy_nonoverlapping(buf.as_ptr(), p, n.min(S::LANES));
        }
    }
}

// SAFETY: f32 is 4 bytes, align 4, every bit pattern valid.
unsafe impl Element for f32 {
    const IS_F32: bool = true;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(x: f32) -> f32 {
        x
    }
    #[inline(always)]
    unsafe fn load<S: Simd>(s: S, p: *const f32) -> S::V {
        // SAFETY: forwarded contract.
        unsafe { s.load(p) }
    }
    #[inline(always)]
    unsafe fn store<S: Simd>(s: S, p: *mut f32, v: S::V) {
        // SAFETY: forwarded contract.
        unsafe { s.store(p, v) }
    }
    #[inline(always)]
    unsafe fn load_partial<S: Simd>(s: S, p: *const f32, n: usize) -> S::V {
        // SAFETY: forwarded contract.
        unsafe { s.load_partial(p, n) }
    }
    #[inline(always)]
    unsafe fn store_partial<S: Simd>(s: S, p: *mut f32, v: S::V, n: usize) {
        // SAFETY: forwarded contract.
        unsafe { s.store_partial(p, v, n) }
    }
}

/// The two 16-bit float types: conversions from `half`, vector loads and stores through
/// the implementation's own converters (`$load`, `$store`).
macro_rules! half_element {
    ($t:ident, $load:ident, $store:ident) => {
        // SAFETY: `f16` and `bf16` are `repr(transparent)` over u16: 2 bytes, align 2, every
        // bit pattern valid.
        unsafe impl Element for $t {
            #[inline(always)]
            fn to_f32(self) -> f32 {
                $t::to_f32(self)
            }
            #[inline(always)]
            fn from_f32(x: f32) -> $t {
                $t::from_f32(x)
            }
            #[inline(always)]
            unsafe fn load<S: Simd>(s: S, p: *const $t) -> S::V {
                // SAFETY: forwarded contract.
                unsafe { s.$load(p) }
            }
            #[inline(always)]
            unsafe fn store<S: Simd>(s: S, p: *mut $t, v: S::V) {
                // SAFETY: forwarded contract.
                unsafe { s.$store(p, v) }
            }
        }
    };
}

half_element!(f16, load_f16, store_f16);
half_element!(bf16, load_bf16, store_bf16);

/// Row converters of one implementation for storage type `E`: what code outside a
/// [`SimdOp`] (the GEMM loop nest, which calls microkernels through function pointers)
/// uses to widen A rows and narrow C tiles with the implementation's vector converters.
pub struct Convert<E> {
    /// `rows` rows of `n` elements widened: `dst[r * dst_stride..][..n] =
    /// src[r * src_stride..][..n]`. One call per tile, not per row: at pw1's K = 32 a call
    /// per row cost about as much as the tile's FMAs.
    pub widen:
        unsafe fn(src: *const E, src_stride: usize, dst: *mut f32, dst_stride: usize, rows: usize, n: usize),
    /// As `widen`, narrowed (round to nearest even).
    pub narrow:
        unsafe fn(src: *const f32, src_stride: usize, dst: *mut E, dst_stride: usize, rows: usize, n: usize),
}

impl<E> Clone for Convert<E> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E> Copy for Convert<E> {}

/// The [`SimdOp`] that returns an implementation's [`Convert`]:
/// `backend.dispatch(ConvertOp::<E>::new())`.
pub struct ConvertOp<E>(std::marker::PhantomData<fn() -> E>);

impl<E> ConvertOp<E> {
    pub fn new() -> Self {
        ConvertOp(std::marker::PhantomData)
    }
}

impl<E> Default for ConvertOp<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: Element> SimdOp for ConvertOp<E> {
    type Output = Convert<E>;
    #[inline(always)]
    fn run<S: Simd>(self, _: S) -> Convert<E> {
        Convert { widen: convert_rows::<S, E, f32>, narrow: convert_rows::<S, f32, E> }
    }
}

/// `rows` rows of `n` values from `A` to `B` through the vector registers: widening is
/// `A = E, B = f32`, narrowing `A = f32, B = E` (f32 is an [`Element`] too).
///
/// # Safety
/// `src` holds `rows` rows of `n` readable values `src_stride` apart, `dst` as many rows of
/// writable values `dst_stride` apart, and the CPU has `S`'s level (the function pointer
/// came from [`ConvertOp`] run with a token of `S`).
unsafe fn convert_rows<S: Simd, A: Element, B: Element>(
    src: *const A,
    src_stride: usize,
    dst: *mut B,
    dst_stride: usize,
    rows: usize,
    n: usize,
) {
    struct Rows<A, B>(*const A, usize, *mut B, usize, usize, usize);
    impl<A: Element, B: Element> SimdOp for Rows<A, B> {
        type Output = ();
        #[inline(always)]
        fn run<S: Simd>(self, s: S) {
            let Rows(src, ls, dst, ld, rows, n) = self;
            let full = n - n % S::LANES;
            // SAFETY: `i + LANES <= full <= n` values of rows `r < rows` on both sides; the
            // tail is partial.
            unsafe {
                for r in 0..rows {
                    let (src, dst) = (src.add(r * ls), dst.add(r * ld));
                    for i in (0..full).step_by(S::LANES) {
                        B::store(s, dst.add(i), A::load(s, src.add(i)));
                    }
                    if full < n {
                        B::store_partial(
                            s,
                            dst.add(full),
                            A::load_partial(s, src.add(full), n - full),
                            n - full,
                        );
                    }
                }
            }
        }
    }
    // SAFETY: the caller guarantees the level (a token of `S` existed).
    unsafe { S::assume() }.vectorize(Rows(src, src_stride, dst, dst_stride, rows, n))
}

/// Widens `LANES` elements lane by lane through a stack buffer: the default of
/// [`Simd::load_f16`] and [`Simd::load_bf16`].
///
/// # Safety
/// `p` is valid for reading `S::LANES` elements.
#[inline(always)]
unsafe fn widen_lanes<S: Simd, E: Element>(s: S, p: *const E) -> S::V {
    let mut buf = [0.0f32; MAX_LANES];
    for (i, b) in buf.iter_mut().enumerate().take(S::LANES) {
        // SAFETY: `i < LANES` elements are readable.
        *b = unsafe { p.add(i).read_unaligned() }.to_f32();
    }
    // SAFETY: `buf` holds `MAX_LANES >= LANES` f32s.
    unsafe { s.load(buf.as_ptr()) }
}

/// Narrows `LANES` lanes one by one through a stack buffer (the default stores).
///
/// # Safety
/// `p` is valid for writing `S::LANES` elements.
#[inline(always)]
unsafe fn narrow_lanes<S: Simd, E: Element>(s: S, p: *mut E, v: S::V) {
    let mut buf = [0.0f32; MAX_LANES];
    // SAFETY: `buf` holds `MAX_LANES >= LANES` f32s; `p` holds `LANES` elements.
    unsafe {
        s.store(buf.as_mut_ptr(), v);
        for (i, &b) in buf.iter().enumerate().take(S::LANES) {
            p.add(i).write_unaligned(E::from_f32(b));
        }
    }
}

/// A row of the backend table: how to run an operation on this implementation now.
///
/// Every [`Simd`] token is one (at its one level); pulp's row is a dispatcher that picks
/// the best of its levels that `KERNELS_ISA` allows.
pub trait Implementation {
    /// The level [`Implementation::dispatch`] would run at now; `None` if it cannot run.
    fn level() -> Option<Isa>;
    /// What [`Implementation::dispatch`] would run with now: lanes, registers, level.
    fn shape() -> Option<Shape> {
        Self::dispatch(Describe)
    }
    /// Runs `op` at that level; `None` if the implementation cannot run here.
    fn dispatch<Op: SimdOp>(op: Op) -> Option<Op::Output>;
}

impl<S: Simd> Implementation for S {
    fn level() -> Option<Isa> {
        S::new().map(|_| S::LEVEL)
    }
    fn dispatch<Op: SimdOp>(op: Op) -> Option<Op::Output> {
        S::new().map(|s| s.vectorize(op))
    }
}

/// The register shape of an implementation at the level it runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub lanes: usize,
    pub registers: usize,
    pub level: Isa,
}

/// The [`SimdOp`] that reports a token's [`Shape`].
struct Describe;

impl SimdOp for Describe {
    type Output = Shape;
    #[inline(always)]
    fn run<S: Simd>(self, _: S) -> Shape {
        Shape { lanes: S::LANES, registers: S::REGISTERS, level: S::LEVEL }
    }
}

/// `add`, `sub` and `mul` of a [`Simd`] implementation whose vector type `$v` has the
/// arithmetic operators (`scalar`'s f32, `wide`'s f32x8).
macro_rules! operator_lanes {
    ($v:ty) => {
        #[inline(always)]
        fn add(self, a: $v, b: $v) -> $v {
            a + b
        }
        #[inline(always)]
        fn sub(self, a: $v, b: $v) -> $v {
            a - b
        }
        #[inline(always)]
        fn mul(self, a: $v, b: $v) -> $v {
            a * b
        }
    };
}

/// The part of a [`Simd`] implementation on `core::arch` intrinsics (`avx2`, `avx512`,
/// `neon`) that is the same in each: the consts, the token's constructor, `vectorize`
/// through a `#[target_feature]` entry (`run`), and the lane-wise methods that are one
/// intrinsic each (`fma = f` is `f(a, b, c) = a * b + c`). The methods that differ follow
/// in the invocation, inside the same impl.
#[cfg(any(
    all(any(feature = "avx2", feature = "avx512"), target_arch = "x86_64"),
    all(feature = "neon", target_arch = "aarch64")
))]
macro_rules! intrinsic_simd {
    (
        $token:ident, V = $v:ty, LANES = $lanes:literal, REGISTERS = $registers:literal,
        LEVEL = $level:expr, NAME = $name:literal, features = $features:literal;
        splat = $splat:path, add = $add:path, sub = $sub:path, mul = $mul:path, fma = $fma:path,
        max = $max:path, min = $min:path, load = $load:path, store = $store:path;
        $($rest:tt)*
    ) => {
        #[target_feature(enable = $features)]
        fn run<Op: SimdOp>(s: $token, op: Op) -> Op::Output {
            op.run(s)
        }

        // SAFETY: `Simd::new` hands out the token only where `isa::available(LEVEL)` (the
        // features `run` enables detected, allowed by KERNELS_ISA); every method below is
        // reached only through it.
        unsafe impl Simd for $token {
            type V = $v;
            const LANES: usize = $lanes;
            const REGISTERS: usize = $registers;
            const LEVEL: Isa = $level;
            const NAME: &'static str = $name;

            unsafe fn assume() -> $token {
                $token(())
            }
            #[inline(always)]
            fn vectorize<Op: SimdOp>(self, op: Op) -> Op::Output {
                // SAFETY: the token proves the features `run` enables.
                unsafe { run(self, op) }
            }
            #[inline(always)]
            fn splat(self, x: f32) -> $v {
                // SAFETY: (this and every lane-wise method below) the token proves the ISA.
                unsafe { $splat(x) }
            }
            #[inline(always)]
            fn add(self, a: $v, b: $v) -> $v {
                // SAFETY: as above.
                unsafe { $add(a, b) }
            }
            #[inline(always)]
            fn sub(self, a: $v, b: $v) -> $v {
                // SAFETY: as above.
                unsafe { $sub(a, b) }
            }
            #[inline(always)]
            fn mul(self, a: $v, b: $v) -> $v {
                // SAFETY: as above.
                unsafe { $mul(a, b) }
            }
            #[inline(always)]
            fn fma(self, a: $v, b: $v, c: $v) -> $v {
                // SAFETY: as above.
                unsafe { $fma(a, b, c) }
            }
            #[inline(always)]
            fn max(self, x: $v, lo: $v) -> $v {
                // SAFETY: as above.
                unsafe { $max(x, lo) }
            }
            #[inline(always)]
            fn min(self, x: $v, hi: $v) -> $v {
                // SAFETY: as above.
                unsafe { $min(x, hi) }
            }
            #[inline(always)]
            unsafe fn load(self, p: *const f32) -> $v {
                // SAFETY: as above; the caller passes `LANES` readable f32s.
                unsafe { $load(p) }
            }
            #[inline(always)]
            unsafe fn store(self, p: *mut f32, v: $v) {
                // SAFETY: as above; the caller passes `LANES` writable f32s.
                unsafe { $store(p, v) }
            }
            $($rest)*
        }
    };
}

/// Declares the backend table: for each row, the enum variant, its implementation (a
/// module of this folder and the type in it), its name, the lowest [`Isa`] level the CPU
/// needs for it to run at all, and the `cfg` that compiles it in.
macro_rules! backends {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $module:ident::$imp:ident, $name:literal, $isa:expr, cfg($($cfg:tt)*);
    )*) => {
        $( #[cfg($($cfg)*)] pub mod $module; )*

        /// An implementation of [`Simd`]: a row of the backend table, best first.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Backend {
            $( $(#[$doc])* $variant, )*
        }

        impl Backend {
            /// Every row, compiled in or not, most preferred first.
            pub const ALL: &'static [Backend] = &[$(Backend::$variant),*];

            /// The name in kernel names (`gemm-avx2`), kernel sets and `KERNELS_ISA`-style
            /// listings.
            pub fn name(self) -> &'static str {
                match self { $(Backend::$variant => $name,)* }
            }

            /// Whether this build compiled the implementation in (its cargo feature and
            /// target architecture).
            pub fn compiled(self) -> bool {
                match self { $(Backend::$variant => cfg!($($cfg)*),)* }
            }

            /// The lowest instruction level the CPU (and `KERNELS_ISA`) must allow for this
            /// implementation to run at all (pulp: scalar, it dispatches upwards from there).
            pub fn isa(self) -> Isa {
                match self { $(Backend::$variant => $isa,)* }
            }

            /// The level the implementation runs at now, `None` if it cannot run here.
            pub fn level(self) -> Option<Isa> {
                match self { $(
                    Backend::$variant => {
                        #[cfg($($cfg)*)]
                        let level = <$module::$imp as Implementation>::level();
                        #[cfg(not($($cfg)*))]
                        let level = None;
                        level
                    }
                )* }
            }

            /// Runs `op` on this implementation at the best level `KERNELS_ISA` allows.
            /// Errors (never SIGILL) when it is not compiled in or cannot run here.
            pub fn dispatch<Op: SimdOp>(self, op: Op) -> Result<Op::Output> {
                let out = match self { $(
                    Backend::$variant => {
                        #[cfg($($cfg)*)]
                        let out = <$module::$imp as Implementation>::dispatch(op);
                        #[cfg(not($($cfg)*))]
                        let out = { drop(op); None };
                        out
                    }
                )* };
                out.ok_or_else(|| self.unavailable())
            }
        }
    };
}

backends! {
    /// AVX-512F (+VL/BW/DQ): 16 lanes, 32 registers, masked tails.
    Avx512 = avx512::Avx512, "avx512", Isa::Avx512, cfg(all(feature = "avx512", target_arch = "x86_64"));
    /// AVX2 + FMA: 8 lanes, 16 registers, `vmaskmovps` tails.
    Avx2 = avx2::Avx2, "avx2", Isa::Avx2, cfg(all(feature = "avx2", target_arch = "x86_64"));
    /// aarch64 Advanced SIMD: 4 lanes, 32 registers.
    Neon = neon::Neon, "neon", Isa::Neon, cfg(all(feature = "neon", target_arch = "aarch64"));
    /// `pulp`: run-time dispatch to x86-64-v4, x86-64-v3, NEON or scalar.
    Pulp = pulp::PulpBest, "pulp", Isa::Scalar, cfg(feature = "pulp");
    /// `wide::f32x8`: fixed at compile time by the target features.
    Wide = wide::Wide, "wide", Isa::TARGET, cfg(feature = "wide");
    /// Plain `f32`: one lane, runs everywhere.
    Scalar = scalar::Scalar, "scalar", Isa::Scalar, cfg(all());
}

pub use scalar::Scalar;

impl Backend {
    /// Every row compiled into this build, best first.
    pub fn compiled_in() -> impl Iterator<Item = Backend> {
        Backend::ALL.iter().copied().filter(|b| b.compiled())
    }

    /// Parses a backend name.
    pub fn parse(name: &str) -> Option<Backend> {
        Backend::ALL.iter().copied().find(|b| b.name() == name)
    }

    /// Whether it can run here now.
    pub fn available(self) -> bool {
        self.level().is_some()
    }

    /// Lanes, registers and level at which it runs now.
    pub fn shape(self) -> Result<Shape> {
        self.dispatch(Describe)
    }

    fn unavailable(self) -> KernelError {
        KernelError::Isa(crate::isa::IsaError::Unavailable {
            isa: self.isa(),
            reason: if self.compiled() {
                "the CPU or KERNELS_ISA does not allow this backend"
            } else {
                "this backend is not compiled into this build (cargo feature or target architecture)"
            },
        })
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks the contracts of the module docs on the token `S`.
    struct Contracts;

    impl SimdOp for Contracts {
        type Output = ();
        #[inline(always)]
        fn run<S: Simd>(self, s: S) {
            let n = S::LANES;
            assert!(MAX_LANES.is_multiple_of(n));
            let src: Vec<f32> = (0..MAX_LANES).map(|i| i as f32 - 3.5).collect();
            let mut dst = [7.0f32; MAX_LANES + 1];
            // Partial loads and stores touch exactly `k` lanes.
            for k in 0..=n {
                // SAFETY: `src` holds k <= n f32s; `dst` holds n + 1.
                unsafe {
                    let v = s.load_partial(src.as_ptr(), k);
                    let mut full = [1.0f32; MAX_LANES];
                    s.store(full.as_mut_ptr(), v);
                    for i in 0..n {
                        assert_eq!(full[i], if i < k { src[i] } else { 0.0 }, "{} load_partial {k}", S::NAME);
                    }
                    dst.fill(7.0);
                    s.store_partial(dst.as_mut_ptr(), s.load(src.as_ptr()), k);
                    for (i, &d) in dst.iter().enumerate() {
                        assert_eq!(d, if i < k { src[i] } else { 7.0 }, "{} store_partial {k}", S::NAME);
                    }
                }
            }
            // NaN rule of the clamp, per lane.
            let mut x = [0.5f32; MAX_LANES];
            x[0] = f32::NAN;
            if n > 1 {
                x[n - 1] = f32::INFINITY;
            }
            if n > 2 {
                x[1] = f32::NEG_INFINITY;
            }
            let clamp = Clamp { lo: 0.0, hi: 6.0, on: true };
            let mut out = [0.0f32; MAX_LANES];
            // SAFETY: both arrays hold MAX_LANES >= n f32s.
            unsafe { s.store(out.as_mut_ptr(), clamp.splat(s).apply(s, s.load(x.as_ptr()))) };
            for i in 0..n {
                assert_eq!(out[i].to_bits(), clamp.apply(x[i]).to_bits(), "{} clamp lane {i}", S::NAME);
            }
            // SAFETY: as above.
            let v = unsafe { s.load(x.as_ptr()) };
            assert!(s.any_nan(v));
            assert!(!s.any_nan(s.splat(1.0)));
            // fma is a*b+c (exact on these small integers whether fused or not).
            let (a, b, c) = (s.splat(3.0), s.splat(-2.0), s.splat(1.0));
            // SAFETY: as above.
            unsafe { s.store(out.as_mut_ptr(), s.fma(a, b, c)) };
            assert!(out[..n].iter().all(|&y| y == -5.0), "{} fma", S::NAME);
        }
    }

    #[test]
    fn every_available_backend_keeps_the_contracts() {
        for b in Backend::compiled_in() {
            match b.dispatch(Contracts) {
                Ok(()) => {}
                Err(e) => eprintln!("SKIPPED: backend {b}: {e}"),
            }
        }
    }

    #[test]
    fn the_table_is_consistent() {
        assert_eq!(Backend::ALL.last(), Some(&Backend::Scalar));
        assert!(Backend::Scalar.available(), "scalar runs everywhere");
        for &b in Backend::ALL {
            assert_eq!(Backend::parse(b.name()), Some(b));
            if let Ok(shape) = b.shape() {
                assert!(shape.level.within(isa::ceiling().unwrap()), "{b} runs above the ceiling");
                assert!(b.isa().within(shape.level), "{b} runs below its own lowest level");
            } else {
                assert!(!b.available());
            }
        }
    }
}
