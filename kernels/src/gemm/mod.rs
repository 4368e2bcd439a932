//! Packed BLIS-style SGEMM with a fused epilogue, and the `gemm-<flavour>` pointwise backends.
//!
//! `C[m x n] = act(A[m x k] B[k x n] + bias[n])`, with `A` and `C` row-major (any row stride)
//! and `B` packed once ([`PackedB`], the layer's weights at prepare time). An NHWC activation
//! is already the `[pixels x channels]` matrix `A`, so a 1x1 stride-1 convolution (and a fully
//! connected layer on a 1x1 image) is one [`sgemm`] call with no im2col.
//!
//! # The loop nest and its blocking (BLIS, Goto & van de Geijn 2008)
//!
//! ```text
//! for jc in 0..n step NC          B block (KC x NC, packed at prepare) stays in L2
//!   for pc in 0..k step KC        first pc adds the bias, last pc applies the clamp
//!     for ir in 0..m step MR      A micro-panel (MR rows x KC) stays in L1
//!       for jr in 0..NC step NR   B micro-panels stream from L2
//!         microkernel MR x NR     MR*NR/LANES accumulators in registers
//! ```
//!
//! - **A is not packed.** The microkernel broadcasts `A[i][p]` straight from the MR rows of
//!   the (row-major) activation: on Zen 4 a broadcast from any address is one load µop,
//!   packed or not, and packing A would cost a transposing copy of every activation once per
//!   NC block: for pw1 (K = 32, N = 64) that is 1 element copied per 128 FLOPs, 12-25% of
//!   the layer at 1-2 elements per cycle. Rows of the last, partial micro-panel are copied
//!   to a zero-padded stack buffer so the kernel never reads past `A`.
//! - **KC = 256 (at most).** The A micro-panel (MR x KC) must stay in the 32 KiB L1d while
//!   the B panels stream past it: 14 x 256 x 4 B = 14 KiB for the largest tile, leaving half
//!   of L1 for the streaming B micro-panel (KC x NR = 256 x 32 x 4 B = 32 KiB, touched once
//!   per panel, so only its lines in flight matter). K is split into equal blocks
//!   (K = 1024 -> 4 x 256), each extra block costs one read-modify-write of C, which is
//!   MR*NR*2 memory ops against MR*NR*KC/LANES FMAs (< 1% at KC = 256).
//! - **NC from L2.** The B block (KC x NC) is swept once per A micro-panel, so it must stay
//!   in the 1 MiB L2 with room for A, C and the other core's prefetches: KC x NC x 4 B <=
//!   512 KiB, i.e. NC = 512 at KC = 256 (all of MobileNetV1's N <= 1024 take 1 or 2 blocks).
//!   Streaming B from L2 needs NR x 4 B per MR x NR / 32 cycles: 10.7 B/cycle for 6x16,
//!   5.3 B/cycle for 12x32, well under Zen 4's 32 B/cycle L2 -> L1 bandwidth.
//! - **MR x NR per ISA** (the microkernel files): the tile is chosen per call from `m`
//!   ([`choose_tile`]): the 7x7 layers have 49 rows, which 12-row tiles cover with 11 rows
//!   of padding (82% useful work) and 7-row tiles cover exactly.
//!
//! # Threads
//!
//! `threads > 1` splits `(m, n)` into about `4 * threads` rectangles (whole MR x NR tiles,
//! rows first, columns too when `m` is small) run as rayon tasks on the current pool; each
//! task owns its C rectangle across every K block, so the epilogue stays fused.
//! `threads == 1` runs the loop nest inline without touching rayon.

use crate::error::{KernelError, Result};
use crate::isa::{self, Isa};
use crate::spec::Activation;
use crate::tensor::AlignedBuf;

pub mod conv;
pub mod scalar;

#[cfg(all(feature = "avx2", target_arch = "x86_64"))]
pub mod avx2;
#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
pub mod avx512;
#[cfg(all(feature = "neon", target_arch = "aarch64"))]
pub mod neon;
#[cfg(feature = "pulp")]
pub mod pulp;
#[cfg(feature = "wide")]
pub mod wide;

pub use conv::Gemm;

/// Largest K block (see the module docs).
pub const KC_MAX: usize = 256;
/// Bytes of L2 the packed B block may fill (half of Zen 4's 1 MiB).
const L2_B_BYTES: usize = 512 * 1024;
/// Largest MR of any tile (sizes the stack buffer for partial A micro-panels).
pub const MR_MAX: usize = 16;
/// Largest NR of any tile (sizes the stack buffer for partial C tiles).
pub const NR_MAX: usize = 64;

/// What the microkernel does on its store: add the bias (first K block) or the partial sum
/// already in C (later K blocks), then clamp (last K block, unless the activation is None).
#[derive(Debug, Clone, Copy)]
pub struct Epilogue {
    /// `bias[j]` for the tile's first column (read only when `first`).
    pub bias: *const f32,
    pub first: bool,
    pub clamp: bool,
    pub lo: f32,
    pub hi: f32,
}

/// The K steps of one microkernel call: `segs` runs of `len` consecutive A columns, run `s`
/// starting at `a + s * seg_stride` (every row `i` at `+ i * lda`), against `segs * len`
/// consecutive rows of the packed B micro-panel.
///
/// A plain GEMM is one run ([`KSteps::contiguous`]). A convolution on NHWC data with
/// `groups == 1` and no horizontal dilation is one run per kernel row: the `kw * Cin` taps
/// of kernel row `ky` of output pixel `x` are consecutive input floats, and output pixel
/// `x + 1` starts `stride * Cin` floats later (`lda`), so the microkernel reads its A
/// micro-panel straight from the input, with no im2col copy (see `crate::im2col`).
#[derive(Debug, Clone, Copy)]
pub struct KSteps {
    pub len: usize,
    pub segs: usize,
    pub seg_stride: usize,
}

impl KSteps {
    /// `kc` consecutive columns of A.
    pub const fn contiguous(kc: usize) -> Self {
        KSteps { len: kc, segs: 1, seg_stride: 0 }
    }
    /// The K steps in all: `len * segs`.
    pub const fn total(&self) -> usize {
        self.len * self.segs
    }
}

/// A microkernel: `C[0..mr][0..nr] = epilogue(sum_p A[i][p] * Bpanel[p][j])`, `p < k.total()`.
///
/// # Safety
/// `a` points at MR readable rows with row stride `lda`, each readable at the offsets
/// `s * k.seg_stride + 0..k.len` for `s < k.segs`; `b` at a packed `k.total() x NR`
/// micro-panel; `c` at `mr` writable rows of `nr` f32s with stride `ldc` (`mr <= MR`,
/// `nr <= NR`); `ep.bias` at `nr` f32s when `ep.first`; and the CPU has the tile's ISA.
pub type KernelFn = unsafe fn(
    k: KSteps,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    mr: usize,
    nr: usize,
    ep: &Epilogue,
);

/// One microkernel and the shape it computes.
#[derive(Clone, Copy)]
pub struct Tile {
    /// `sgemm_<mr>x<nr>_<flavour>`, the function's name and the bench id.
    pub name: &'static str,
    pub mr: usize,
    pub nr: usize,
    /// Throughput relative to the flavour's best tile on full tiles (measured, see each
    /// ISA file); [`choose_tile`] weighs it against the rows wasted on padding.
    pub speed: f32,
    pub kernel: KernelFn,
}

impl std::fmt::Debug for Tile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// A set of microkernels for one implementation flavour. B is packed for one NR at prepare
/// time ([`Flavour::nr_for`], from K and N); the run then picks the best tile of that NR
/// for M ([`choose_tile`]).
pub struct Flavour {
    /// `avx2`, `avx512`, `neon`, `pulp`, `wide` or `scalar`.
    pub name: &'static str,
    /// The ISA the CPU must have (and `KERNELS_ISA` allow).
    pub isa: Isa,
    /// The tiles runnable now (pulp's depend on the ISA level it dispatches to).
    pub tiles: fn() -> &'static [Tile],
}

impl Flavour {
    /// Whether this flavour may run now.
    pub fn available(&self) -> bool {
        isa::available(self.isa)
    }
    /// The NR to pack a `k x n` B for: the first tile's, or a wider tile's (listed after it)
    /// when `k <= 128` and it divides `n`. Short K makes the per-tile epilogue (one C load
    /// or bias add, clamp and store per accumulator) a large share of the work, and a wider
    /// tile reuses each A broadcast over more columns: measured 6x64 vs 14x32 on AVX-512,
    /// pw1 (K = 32) 170 vs 159, pw2 (K = 64) 182 vs 167, pw3 (K = 128) 175 vs 170 GFLOP/s,
    /// and no gain from K = 256 on.
    pub fn nr_for(&self, k: usize, n: usize) -> usize {
        let tiles = (self.tiles)();
        let primary = tiles[0].nr;
        tiles.iter().find(|t| t.nr > primary && k <= 128 && n.is_multiple_of(t.nr)).map_or(primary, |t| t.nr)
    }
}

/// Every flavour compiled in (runnable here or not), best first.
pub fn flavours() -> Vec<&'static Flavour> {
    vec![
        #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
        &avx512::FLAVOUR,
        #[cfg(all(feature = "avx2", target_arch = "x86_64"))]
        &avx2::FLAVOUR,
        #[cfg(all(feature = "neon", target_arch = "aarch64"))]
        &neon::FLAVOUR,
        #[cfg(feature = "pulp")]
        &pulp::FLAVOUR,
        #[cfg(feature = "wide")]
        &wide::FLAVOUR,
        &scalar::FLAVOUR,
    ]
}

/// The tile of width `nr` for `m` rows.
///
/// - **`m` up to the largest MR** (a fully connected layer at batch 1..14): the tile with
///   the fewest rows `>= m`, so B streams past once and the least padding is computed.
///   At these sizes B (4 MB for the 1024 -> 1000 FC layer) comes from L3, not L2, and one
///   pass over it is the floor: measured on AVX-512 (Xeon model 207, K = 1024, N = 1000,
///   one thread) m = 1: 1x32 0.137 ms, 4x32 0.140, 7x32 0.143, 14x32 0.183; m = 2: 2x32
///   0.138 vs 1x32 0.172; m = 4: 4x32 0.135 vs 2x32 0.176; m = 8: 12x32 0.192 vs 14x32 0.211.
/// - **larger `m`**: the least padded work per unit of measured speed
///   (`ceil(m / mr) * mr / speed`); ties go to the earlier (preferred) tile.
///
/// `None` if no tile has width `nr`.
pub fn choose_tile(tiles: &'static [Tile], m: usize, nr: usize) -> Option<&'static Tile> {
    let fit = tiles.iter().filter(|t| t.nr == nr && t.mr >= m).min_by_key(|t| t.mr);
    if fit.is_some() {
        return fit;
    }
    let cost = |t: &Tile| m.div_ceil(t.mr) as f32 * t.mr as f32 / t.speed;
    tiles.iter().filter(|t| t.nr == nr).fold(None, |best: Option<&'static Tile>, t| match best {
        Some(b) if cost(b) <= cost(t) => Some(b),
        _ => Some(t),
    })
}

/// The tiny SIMD vocabulary every microkernel body is written in (one implementation per
/// ISA file); the body [`tile_body`] is written once over it.
///
/// # Safety
/// Implementations are only called once the CPU is known to have their ISA.
pub(crate) trait Lanes: Copy {
    type V: Copy;
    const LANES: usize;
    unsafe fn zero(self) -> Self::V;
    unsafe fn splat(self, x: f32) -> Self::V;
    unsafe fn load(self, p: *const f32) -> Self::V;
    unsafe fn store(self, p: *mut f32, v: Self::V);
    /// `a * b + c` (fused where the ISA has it).
    unsafe fn fma(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn add(self, a: Self::V, b: Self::V) -> Self::V;
    /// `max(a, b)` returning `b` when `a` is NaN (x86 `maxps` operand order).
    unsafe fn max(self, a: Self::V, b: Self::V) -> Self::V;
    /// `min(a, b)`, `a` never NaN here.
    unsafe fn min(self, a: Self::V, b: Self::V) -> Self::V;
}

/// The one microkernel body: an `MR x (NV * LANES)` broadcast tile.
///
/// Per k step: NV vector loads of the packed B row, MR broadcasts of A (folded into the FMA
/// as an embedded broadcast on AVX-512), MR * NV FMAs into register accumulators.
///
/// `U > 1` splits K over `U` sets of accumulators (k step `p` adds into set `p % U`,
/// summed before the epilogue): the small-M tiles (MR = 1, 2) have only MR * NV
/// independent FMA chains, too few to cover the FMA latency (4 cycles, 2 ports: 8 chains
/// needed), so they take `U = 8 / (MR * NV)`.
///
/// # Safety
/// As [`KernelFn`], with `S`'s ISA present.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn tile_body<S: Lanes, const MR: usize, const NV: usize, const U: usize>(
    s: S,
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
    // SAFETY (whole body): the caller guarantees the pointer ranges of `KernelFn`.
    unsafe {
        let mut accs = [[[s.zero(); NV]; MR]; U];
        let mut b = b;
        for seg in 0..k.segs {
            let mut a = a.add(seg * k.seg_stride);
            let mut left = k.len;
            while left >= U {
                for (u, acc) in accs.iter_mut().enumerate() {
                    k_step::<S, MR, NV>(s, acc, a.add(u), lda, b.add(u * NV * S::LANES));
                }
                a = a.add(U);
                b = b.add(U * NV * S::LANES);
                left -= U;
            }
            for _ in 0..left {
                k_step::<S, MR, NV>(s, &mut accs[0], a, lda, b);
                a = a.add(1);
                b = b.add(NV * S::LANES);
            }
        }
        let mut acc = accs[0];
        for set in &accs[1..] {
            for (row, srow) in acc.iter_mut().zip(set) {
                for (v, &w) in row.iter_mut().zip(srow) {
                    *v = s.add(*v, w);
                }
            }
        }
        let (lo, hi) = (s.splat(ep.lo), s.splat(ep.hi));
        if mr == MR && nr == NV * S::LANES {
            for (i, row) in acc.iter().enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    let cp = c.add(i * ldc + j * S::LANES);
                    let base = if ep.first { s.load(ep.bias.add(j * S::LANES)) } else { s.load(cp) };
                    let mut v = s.add(v, base);
                    if ep.clamp {
                        v = s.min(s.max(v, lo), hi);
                    }
                    s.store(cp, v);
                }
            }
        } else {
            // Edge tile: spill the accumulators, then a scalar epilogue on the valid part.
            let mut tmp = [0.0f32; MR_MAX * NR_MAX];
            for (i, row) in acc.iter().enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    s.store(tmp.as_mut_ptr().add(i * NR_MAX + j * S::LANES), v);
                }
            }
            for i in 0..mr {
                for j in 0..nr {
                    let cp = c.add(i * ldc + j);
                    let base = if ep.first { *ep.bias.add(j) } else { *cp };
                    let mut v = tmp[i * NR_MAX + j] + base;
                    if ep.clamp {
                        v = v.max(ep.lo).min(ep.hi);
                    }
                    *cp = v;
                }
            }
        }
    }
}

/// One k step of [`tile_body`]: `acc[i][j] += A[i][0] * B[0][j]`.
///
/// # Safety
/// As [`tile_body`], for one column of A and one row of B.
#[inline(always)]
unsafe fn k_step<S: Lanes, const MR: usize, const NV: usize>(
    s: S,
    acc: &mut [[S::V; NV]; MR],
    a: *const f32,
    lda: usize,
    b: *const f32,
) {
    // SAFETY: forwarded contract.
    unsafe {
        let mut bv = [s.zero(); NV];
        for (j, v) in bv.iter_mut().enumerate() {
            *v = s.load(b.add(j * S::LANES));
        }
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = s.splat(*a.add(i * lda));
            for (accv, &bj) in row.iter_mut().zip(&bv) {
                *accv = s.fma(ai, bj, *accv);
            }
        }
    }
}

/// `B` (`k x n`) packed for tiles of width `nr`: NC column blocks, each split into KC row
/// blocks, each a sequence of `kc x nr` micro-panels (row-major, zero-padded past `n`).
#[derive(Debug, Clone)]
pub struct PackedB {
    data: AlignedBuf,
    k: usize,
    n: usize,
    kc: usize,
    nc: usize,
    nr: usize,
}

impl PackedB {
    /// Packs the `k x n` matrix whose element `(p, j)` is `b(p, j)`, for tiles of width `nr`.
    pub fn new(k: usize, n: usize, nr: usize, b: impl Fn(usize, usize) -> f32) -> Result<Self> {
        if k == 0 || n == 0 || nr == 0 || nr > NR_MAX {
            return Err(KernelError::ZeroSize { what: "GEMM k, n or nr" });
        }
        let kc = k.div_ceil(k.div_ceil(KC_MAX));
        let nc_max = (L2_B_BYTES / (kc * 4)).max(nr) / nr * nr;
        let nc = n.div_ceil(n.div_ceil(nc_max)).div_ceil(nr) * nr;
        let panels = n.div_ceil(nr);
        let mut data = AlignedBuf::zeros(crate::error::checked_product("packed B", &[panels, nr, k])?)?;
        for j0 in (0..n).step_by(nc) {
            let ncb = nc.min(n - j0);
            let np = ncb.div_ceil(nr);
            for p0 in (0..k).step_by(kc) {
                let kcb = kc.min(k - p0);
                let block = j0 * k + p0 * np * nr;
                for q in 0..np {
                    let panel = block + q * kcb * nr;
                    for p in 0..kcb {
                        for jj in 0..nr {
                            let j = j0 + q * nr + jj;
                            if j < n {
                                data[panel + p * nr + jj] = b(p0 + p, j);
                            }
                        }
                    }
                }
            }
        }
        Ok(PackedB { data, k, n, kc, nc, nr })
    }

    pub fn k(&self) -> usize {
        self.k
    }
    pub fn n(&self) -> usize {
        self.n
    }
    pub fn nr(&self) -> usize {
        self.nr
    }
    /// Whether K fits one KC block (then panel `q` is the `k x nr` block at `q * k * nr`).
    pub fn single_k_block(&self) -> bool {
        self.kc == self.k
    }
    /// The `k x nr` micro-panel of columns `q * nr..`, `q < n.div_ceil(nr)`, when K is one
    /// KC block (NC blocks are then consecutive runs of whole panels).
    pub(crate) fn panel(&self, q: usize) -> Option<&[f32]> {
        if !self.single_k_block() || q >= self.n.div_ceil(self.nr) {
            return None;
        }
        self.data.get(q * self.k * self.nr..(q + 1) * self.k * self.nr)
    }
}

/// A raw output pointer shared by tasks that write disjoint tiles.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: tasks write disjoint C rectangles (see `sgemm_tile`), so sharing the base pointer
// across threads creates no data race.
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

/// `C = act(A B + bias)` with the flavour's best tile for `m` (see [`sgemm_tile`]).
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    flavour: &Flavour,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB,
    bias: &[f32],
    activation: Activation,
    c: &mut [f32],
    ldc: usize,
    threads: usize,
) -> Result<()> {
    if !flavour.available() {
        return Err(KernelError::IsaUnavailable {
            isa: flavour.isa,
            reason: "GEMM flavour not runnable here",
        });
    }
    let tile = choose_tile((flavour.tiles)(), m, b.nr).ok_or_else(|| KernelError::ShapeMismatch {
        what: "packed B panel width",
        expected: format!("an NR of flavour {}", flavour.name),
        actual: format!("NR = {}", b.nr),
    })?;
    // SAFETY: the flavour's ISA was checked just above.
    unsafe { sgemm_tile(tile, m, a, lda, b, bias, activation, c, ldc, threads) }
}

/// `C[i][j] = act(bias[j] + sum_p A[i][p] B[p][j])` for `i < m`, `j < b.n()`, `p < b.k()`,
/// with `A[i][p] = a[i * lda + p]` and `C[i][j] = c[i * ldc + j]`, using `tile`.
///
/// Checks every length (an error, never a panic or an out-of-bounds access). `m == 0` is a
/// no-op. `threads > 1` runs rayon tasks on the current pool.
///
/// # Safety
/// The CPU must have `tile`'s ISA (the tile of a [`Flavour`] whose `available()` is true).
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_tile(
    tile: &Tile,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB,
    bias: &[f32],
    activation: Activation,
    c: &mut [f32],
    ldc: usize,
    threads: usize,
) -> Result<()> {
    let (k, n) = (b.k, b.n);
    if tile.nr != b.nr {
        return Err(KernelError::ShapeMismatch {
            what: "packed B panel width",
            expected: format!("NR = {}", tile.nr),
            actual: format!("NR = {}", b.nr),
        });
    }
    if m == 0 {
        return Ok(());
    }
    let need = |rows: usize, ld: usize, cols: usize, what| -> Result<usize> {
        if ld < cols {
            return Err(KernelError::ShapeMismatch {
                what,
                expected: format!("row stride >= {cols}"),
                actual: format!("{ld}"),
            });
        }
        (rows - 1).checked_mul(ld).and_then(|x| x.checked_add(cols)).ok_or(KernelError::Overflow { what })
    };
    let a_len = need(m, lda, k, "A")?;
    let c_len = need(m, ldc, n, "C")?;
    for (what, expected, actual) in [("A", a_len, a.len()), ("C", c_len, c.len()), ("bias", n, bias.len())] {
        if actual < expected {
            return Err(KernelError::BufferLength { what, expected, actual });
        }
    }
    activation.validate()?;
    let (lo, hi) = activation.bounds();
    let clamp = activation != Activation::None;
    let job = Job {
        tile,
        a: a.as_ptr(),
        lda,
        b,
        bias: bias.as_ptr(),
        clamp,
        lo,
        hi,
        c: SharedOut(c.as_mut_ptr()),
        ldc,
    };
    let (mp, np) = (m.div_ceil(tile.mr), n.div_ceil(tile.nr));
    if threads <= 1 {
        // SAFETY: lengths checked above; the caller guarantees the ISA.
        unsafe { job.run(0, m, 0, n) };
        return Ok(());
    }
    use rayon::prelude::*;
    let target = threads * 4;
    let tm = mp.min(target);
    let tn = np.min(target.div_ceil(tm));
    (0..tm * tn).into_par_iter().for_each(|t| {
        let (ti, tj) = (t / tn, t % tn);
        let m0 = (mp * ti / tm * tile.mr).min(m);
        let m1 = (mp * (ti + 1) / tm * tile.mr).min(m);
        let n0 = (np * tj / tn * tile.nr).min(n);
        let n1 = (np * (tj + 1) / tn * tile.nr).min(n);
        // SAFETY: rectangles are disjoint and inside C; lengths checked above.
        unsafe { job.run(m0, m1, n0, n1) };
    });
    Ok(())
}

struct Job<'a> {
    tile: &'a Tile,
    a: *const f32,
    lda: usize,
    b: &'a PackedB,
    bias: *const f32,
    clamp: bool,
    lo: f32,
    hi: f32,
    c: SharedOut,
    ldc: usize,
}

// SAFETY: `a`, `bias` are only read; `c` writes are disjoint per task (see `SharedOut`).
unsafe impl Sync for Job<'_> {}

impl Job<'_> {
    /// The loop nest over rows `m0..m1` and columns `n0..n1` (`n0` a multiple of NR).
    ///
    /// # Safety
    /// Bounds checked by `sgemm_tile`; the CPU has the tile's ISA.
    unsafe fn run(&self, m0: usize, m1: usize, n0: usize, n1: usize) {
        let (tile, b) = (self.tile, self.b);
        let (mr_t, nr_t) = (tile.mr, tile.nr);
        let (k, n, kc, nc) = (b.k, b.n, b.kc, b.nc);
        let mut edge = [0.0f32; MR_MAX * KC_MAX];
        let mut j0 = n0 / nc * nc;
        while j0 < n1 {
            let ncb = nc.min(n - j0);
            let np = ncb.div_ceil(nr_t);
            // Panels of this NC block inside n0..n1.
            let q0 = n0.saturating_sub(j0) / nr_t;
            let q1 = (n1 - j0).min(ncb).div_ceil(nr_t);
            for p0 in (0..k).step_by(kc) {
                let kcb = kc.min(k - p0);
                let ep = Epilogue {
                    bias: self.bias,
                    first: p0 == 0,
                    clamp: self.clamp && p0 + kcb == k,
                    lo: self.lo,
                    hi: self.hi,
                };
                let block = j0 * k + p0 * np * nr_t;
                let mut i = m0;
                while i < m1 {
                    let mr = mr_t.min(m1 - i);
                    // SAFETY: rows i..i+mr of A exist (checked by sgemm_tile).
                    let (a_ptr, lda) = unsafe {
                        let src = self.a.add(i * self.lda + p0);
                        if mr == mr_t {
                            (src, self.lda)
                        } else {
                            edge[..mr_t * kcb].fill(0.0);
                            for r in 0..mr {
                                std::ptr::copy_nonoverlapping(
                                    src.add(r * self.lda),
                                    edge.as_mut_ptr().add(r * kcb),
                                    kcb,
                                );
                            }
                            (edge.as_ptr(), kcb)
                        }
                    };
                    for q in q0..q1 {
                        let j = j0 + q * nr_t;
                        let nr = nr_t.min(n - j);
                        let ep = Epilogue { bias: unsafe { ep.bias.add(j) }, ..ep };
                        // SAFETY: the panel lies inside packed B; the C tile inside C; the
                        // caller guarantees the ISA.
                        unsafe {
                            (tile.kernel)(
                                KSteps::contiguous(kcb),
                                a_ptr,
                                lda,
                                b.data.as_ptr().add(block + q * kcb * nr_t),
                                self.c.0.add(i * self.ldc + j),
                                self.ldc,
                                mr,
                                nr,
                                &ep,
                            )
                        };
                    }
                    i += mr;
                }
            }
            j0 += nc;
        }
    }
}
