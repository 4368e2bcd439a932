//! The microkernels: one body ([`tile_body`]) over [`Simd`], stamped out per register tile,
//! and the tile table of each register shape.
//!
//! A microkernel computes `C[0..mr][0..nr] = clamp(base + sum_p A[i][p] * Bpanel[p][j])`
//! with `base` the bias (first K block) or C itself (later K blocks), as an
//! `MR x (NV * LANES)` broadcast tile: per k step NV vector loads of the packed B row, MR
//! broadcasts of A (folded into the FMA as an embedded broadcast on AVX-512), MR * NV FMAs
//! into register accumulators.

use crate::cache::prefetch;
use crate::simd::{Clamp, Simd, SimdOp};

/// Largest MR of any tile (sizes the stack buffer for partial A micro-panels).
pub const MR_MAX: usize = 16;
/// Largest NR of any tile (sizes the stack buffer for partial C tiles).
pub const NR_MAX: usize = 64;

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

/// The arguments of one microkernel call.
#[derive(Debug, Clone, Copy)]
pub struct TileArgs {
    pub k: KSteps,
    /// MR rows of A, `lda` apart, readable at the offsets `k` names.
    pub a: *const f32,
    pub lda: usize,
    /// The packed `k.total() x NR` B micro-panel.
    pub b: *const f32,
    /// `mr` rows of `nr` f32s, `ldc` apart (`mr <= MR`, `nr <= NR`).
    pub c: *mut f32,
    pub ldc: usize,
    pub mr: usize,
    pub nr: usize,
    /// `nr` f32s added on the first K block.
    pub bias: *const f32,
    /// Whether to add into C (a later K block) instead of the bias (the first).
    pub accumulate: bool,
    /// The activation, on the last K block only ([`Clamp::OFF`] on the others).
    pub clamp: Clamp,
    /// Software prefetches (never read through: any address will do).
    pub prefetch: Prefetch,
}

/// A microkernel.
///
/// # Safety
/// The pointers of `args` are valid as [`TileArgs`] documents, and the CPU has the level of
/// the implementation the tile belongs to (a tile of [`crate::gemm::tiles`]'s list).
pub type KernelFn = unsafe fn(args: &TileArgs);

/// One microkernel and the shape it computes.
#[derive(Clone, Copy)]
pub struct Tile {
    pub mr: usize,
    pub nr: usize,
    /// Throughput relative to the best tile of the table on full tiles (measured, see the
    /// tables below); [`choose_tile`] weighs it against the rows wasted on padding.
    pub speed: f32,
    pub kernel: KernelFn,
    /// The implementation's name ([`Simd::NAME`]).
    pub backend: &'static str,
}

impl Tile {
    /// `sgemm_<mr>x<nr>_<backend>`, the bench id.
    pub fn name(&self) -> String {
        format!("sgemm_{}x{}_{}", self.mr, self.nr, self.backend)
    }
}

impl std::fmt::Debug for Tile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// The tile `MR x (NV * LANES)` of `S`, with `U` accumulator sets.
const fn tile<S: Simd, const MR: usize, const NV: usize, const U: usize>(speed: f32) -> Tile {
    Tile { mr: MR, nr: NV * S::LANES, speed, kernel: tile_entry::<S, MR, NV, U>, backend: S::NAME }
}

/// The tile table of each implementation, chosen by its register shape, lanes *and*
/// registers (so `pulp` at x86-64-v4 runs the AVX-512 tiles and `wide` the AVX2 ones; a new
/// ISA of another shape gets tiles sized by its register count, not another ISA's). The first tile is the
/// preferred one; B is packed for its NR unless [`nr_for`] picks a wider one.
pub(crate) trait TileTable: Simd {
    const TILES: &'static [Tile];
}

impl<S: Simd> TileTable for S {
    const TILES: &'static [Tile] = match (S::LANES, S::REGISTERS) {
        // 16 lanes, 32 registers (AVX-512). Measured (bench `gemm`, one thread, Xeon model
        // 207): 14x32 >= 12x32 on every shape (pw6..pw11: 188 vs 179 GFLOP/s); 7x32 within
        // 1% of 14x32 on full tiles and far ahead at M = 49 (pw12: 174 vs 96 GFLOP/s); 14
        // divides every MobileNetV1 pixel count except 49. Small-M tiles on full tiles (pw7
        // shape, B in L2): 1x32 62, 2x32 122, 4x32 156 vs 14x32 188 GFLOP/s (1x32 is bound by
        // L2 -> L1 bandwidth: 128 B of B per 2 FMAs); they win only for small M. 6x64 is
        // for K <= 128 (see `nr_for`).
        (16, 32) => &[
            tile::<S, 14, 2, 1>(1.0),
            tile::<S, 7, 2, 1>(0.99),
            tile::<S, 12, 2, 1>(0.97),
            tile::<S, 1, 2, 4>(0.33),
            tile::<S, 2, 2, 2>(0.65),
            tile::<S, 4, 2, 1>(0.83),
            tile::<S, 6, 4, 1>(1.0),
        ],
        // 8 lanes, 16 registers (AVX2; `wide`). 5x16 measured 8-10% slower than 6x16 on
        // full tiles (85 vs 94 GFLOP/s on pw6..pw11), so it is chosen only where it saves
        // more than that in padding. Small-M on full tiles (pw7 shape): 1x16 44, 2x16 79,
        // 4x16 78 vs 6x16 93 GFLOP/s; FC 1024 -> 1000 at M = 1: 1x16 0.136 vs 6x16 0.171 ms.
        (8, 16) => &[
            tile::<S, 6, 2, 1>(1.0),
            tile::<S, 5, 2, 1>(0.91),
            tile::<S, 1, 2, 4>(0.47),
            tile::<S, 2, 2, 2>(0.85),
            tile::<S, 4, 2, 1>(0.84),
        ],
        // 4 lanes, 32 registers (NEON): 8x12 = 24 accumulators + 3 B vectors + A.
        // Speeds as the AVX-512 tiles at the same chain counts (not measured: qemu).
        (4, 32) => &[
            tile::<S, 8, 3, 1>(1.0),
            tile::<S, 1, 3, 3>(0.33),
            tile::<S, 2, 3, 2>(0.65),
            tile::<S, 4, 3, 1>(0.83),
        ],
        // 1 lane (scalar): 4x8 = 32 accumulators; the small-M tiles already have 8
        // independent chains, so no K split. Speeds are estimates.
        (1, _) => &[tile::<S, 4, 8, 1>(1.0), tile::<S, 1, 8, 1>(0.5), tile::<S, 2, 8, 1>(0.8)],
        // Any other shape (a new ISA without a measured table): two vectors wide, as many
        // rows as the registers hold (12 x 2 accumulators + 2 B + A of 32; 6 x 2 of 16).
        // Unmeasured estimates until someone benches it and adds a row above.
        (_, r) if r >= 32 => &[tile::<S, 12, 2, 1>(1.0), tile::<S, 1, 2, 4>(0.33), tile::<S, 4, 2, 1>(0.83)],
        _ => &[tile::<S, 6, 2, 1>(1.0), tile::<S, 1, 2, 4>(0.47), tile::<S, 4, 2, 1>(0.84)],
    };
}

/// The [`SimdOp`] that returns an implementation's tile table.
pub(crate) struct TilesOf;

impl SimdOp for TilesOf {
    type Output = &'static [Tile];
    #[inline(always)]
    fn run<S: Simd>(self, _: S) -> &'static [Tile] {
        <S as TileTable>::TILES
    }
}

/// The NR to pack a `k x n` B for: the first tile's, or a wider tile's (listed after it)
/// when `k <= 128` and it divides `n`. Short K makes the per-tile epilogue (one C load or
/// bias add, clamp and store per accumulator) a large share of the work, and a wider tile
/// reuses each A broadcast over more columns: measured 6x64 vs 14x32 on AVX-512, pw1
/// (K = 32) 170 vs 159, pw2 (K = 64) 182 vs 167, pw3 (K = 128) 175 vs 170 GFLOP/s, and no
/// gain from K = 256 on.
pub fn nr_for(tiles: &[Tile], k: usize, n: usize) -> usize {
    let primary = tiles[0].nr;
    tiles.iter().find(|t| t.nr > primary && k <= 128 && n.is_multiple_of(t.nr)).map_or(primary, |t| t.nr)
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

/// The entry of one tile: the implementation's token, then the body compiled for it.
///
/// # Safety
/// As [`KernelFn`].
unsafe fn tile_entry<S: Simd, const MR: usize, const NV: usize, const U: usize>(args: &TileArgs) {
    // SAFETY: the caller guarantees the CPU has `S`'s level (the tile came from `S`'s table,
    // which only a token could hand out).
    let s = unsafe { S::assume() };
    s.vectorize(TileCall::<MR, NV, U>(args))
}

/// One microkernel call as a [`SimdOp`]; built only by [`tile_entry`], whose contract
/// covers the pointers.
struct TileCall<'a, const MR: usize, const NV: usize, const U: usize>(&'a TileArgs);

impl<const MR: usize, const NV: usize, const U: usize> SimdOp for TileCall<'_, MR, NV, U> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        // SAFETY: `TileCall` is built only by `tile_entry`, whose caller guarantees the
        // pointer contract of `TileArgs`.
        unsafe { tile_body::<S, MR, NV, U>(s, self.0) }
    }
}

/// K steps per iteration of the single-accumulator-set K loop (see [`tile_body`]).
/// Measured on the Xeon family 6 model 167 (one thread, B warm in L2, probe
/// `kernels/examples/gemm_probe.rs`): 14x32 on pw5 / pw7 157 -> 167-170 GFLOP/s, 7x32 on
/// pw12 135 -> 149-155, against one step per iteration, whose loop recomputed the 14 row
/// addresses (a chain of scalar adds and LEAs that competes with the FMAs for ports 0 and
/// 5) on every step.
const K_UNROLL: usize = 4;

/// f32s per 64-byte cache line.
pub(crate) const LINE: usize = 16;

/// How far ahead in the B micro-panel (f32s: 2 KiB) [`Prefetch::near`] fetches into L1d.
const PREFETCH_NEAR: usize = 512;

/// The software prefetches of one microkernel call (only its four-step K loop issues them).
#[derive(Debug, Clone, Copy)]
pub struct Prefetch {
    /// Prefetch the B micro-panel [`PREFETCH_NEAR`] f32s ahead into L1d.
    pub near: bool,
    /// Up to `next_lines` cache lines from `next` on (two per four K steps) are fetched
    /// into L2: the driver points it at a share of the next packed-B block, so the block
    /// arrives while the current one is computed instead of on its first pass.
    pub next: *const f32,
    pub next_lines: usize,
}

impl Prefetch {
    /// No prefetches.
    pub const NONE: Prefetch = Prefetch { near: false, next: std::ptr::null(), next_lines: 0 };
}

/// The one microkernel body: an `MR x (NV * LANES)` broadcast tile.
///
/// `U > 1` splits K over `U` sets of accumulators (k step `p` adds into set `p % U`,
/// summed before the epilogue): the small-M tiles (MR = 1, 2) have only MR * NV
/// independent FMA chains, too few to cover the FMA latency (4 cycles, 2 ports: 8 chains
/// needed), so they take `U = 8 / (MR * NV)`.
///
/// # Safety
/// The pointers of `t` are valid as [`TileArgs`] documents.
#[inline(always)]
unsafe fn tile_body<S: Simd, const MR: usize, const NV: usize, const U: usize>(s: S, t: &TileArgs) {
    let k = t.k;
    let mut accs = [[[s.zero(); NV]; MR]; U];
    let mut b = t.b;
    let (mut next, mut next_lines) = (t.prefetch.next, t.prefetch.next_lines);
    // SAFETY: (the K loop) A is readable at the offsets `k` names for MR rows, B holds
    // `k.total()` rows of NV * LANES f32s (the caller's contract).
    unsafe {
        for seg in 0..k.segs {
            let mut a = t.a.add(seg * k.seg_stride);
            let mut left = k.len;
            // One accumulator set: four k steps per iteration, so the MR row addresses
            // are computed once per four steps (each step then reads at a constant
            // displacement) instead of once per step.
            while U == 1 && left >= K_UNROLL {
                for u in 0..K_UNROLL {
                    k_step::<S, MR, NV>(s, &mut accs[0], a.add(u), t.lda, b.add(u * NV * S::LANES));
                }
                if t.prefetch.near {
                    let mut l = 0;
                    while l < K_UNROLL * NV * S::LANES {
                        prefetch::<false>(b.wrapping_add(PREFETCH_NEAR + l).cast());
                        l += LINE;
                    }
                }
                if next_lines > 0 {
                    prefetch::<true>(next.cast());
                    prefetch::<true>(next.wrapping_add(LINE).cast());
                    next = next.wrapping_add(2 * LINE);
                    next_lines = next_lines.saturating_sub(2);
                }
                a = a.add(K_UNROLL);
                b = b.add(K_UNROLL * NV * S::LANES);
                left -= K_UNROLL;
            }
            while left >= U {
                for (u, acc) in accs.iter_mut().enumerate() {
                    k_step::<S, MR, NV>(s, acc, a.add(u), t.lda, b.add(u * NV * S::LANES));
                }
                a = a.add(U);
                b = b.add(U * NV * S::LANES);
                left -= U;
            }
            for _ in 0..left {
                k_step::<S, MR, NV>(s, &mut accs[0], a, t.lda, b);
                a = a.add(1);
                b = b.add(NV * S::LANES);
            }
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
    let clamp = t.clamp.splat(s);
    // SAFETY: (both epilogues) C holds `mr` rows of `nr` f32s, the bias `nr` f32s.
    unsafe {
        if t.mr == MR && t.nr == NV * S::LANES {
            for (i, row) in acc.iter().enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    let cp = t.c.add(i * t.ldc + j * S::LANES);
                    let base = if t.accumulate { s.load(cp) } else { s.load(t.bias.add(j * S::LANES)) };
                    s.store(cp, clamp.apply(s, s.add(v, base)));
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
            for i in 0..t.mr {
                for j in 0..t.nr {
                    let cp = t.c.add(i * t.ldc + j);
                    let base = if t.accumulate { *cp } else { *t.bias.add(j) };
                    *cp = t.clamp.apply(tmp[i * NR_MAX + j] + base);
                }
            }
        }
    }
}

/// One k step of [`tile_body`]: `acc[i][j] += A[i][0] * B[0][j]`.
///
/// # Safety
/// `a` readable at `i * lda` for `i < MR`; `b` holds `NV * LANES` f32s.
#[inline(always)]
unsafe fn k_step<S: Simd, const MR: usize, const NV: usize>(
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
