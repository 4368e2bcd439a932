//! bf16 GEMM on AVX512_BF16: `C = act(A B + bias)` with `A` (the activations) and `C` stored
//! as bf16, `B` (the weights) packed as bf16 pairs at prepare, f32 accumulation.
//!
//! `vdpbf16ps acc, a, b` adds `a[2i] * b[2i] + a[2i+1] * b[2i+1]` to f32 lane `i`: two
//! multiply-adds per lane, twice the f32 FMA's, from operands half the size. So:
//!
//! - **B** is packed as `[N / 64 panels][K / 2 pairs][64 columns][2]`: one pair step of a
//!   panel is four zmm loads, the pair `(B[k][j], B[k+1][j])` in each 32-bit lane. Columns
//!   past `N` are zero; an odd `K` gets a zero second half in the last pair.
//! - **A** needs no packing: an NHWC bf16 row holds `A[i][k], A[i][k+1]` next to each other,
//!   so one 32-bit broadcast from the row (`vpbroadcastd`, a load µop) is the pair. With an
//!   odd `K` the last step broadcasts `(A[i][K-1], 0)` instead, so nothing past the row is
//!   read (a NaN there would otherwise meet a zero weight and give NaN).
//! - **Tile**: 6 rows x 64 columns = 24 zmm accumulators, 4 B vectors and 1 broadcast in
//!   registers (29 of 32); 24 `vdpbf16ps` per 4 B loads and 6 broadcasts. Each tile runs the
//!   whole K, so bias, clamp and the narrowing to bf16 (`vcvtneps2bf16`, round to nearest
//!   even) happen once, in registers.
//! - **Blocking**: rows are taken in chunks whose A rows fill at most the L2 budget of
//!   [`crate::cache::blocking`]; within a chunk each 64-column B panel (K x 128 bytes:
//!   128 KiB at K = 1024, L2-resident) is swept over every 6-row block.
//! - `vdpbf16ps` treats denormal inputs as zero and flushes denormal results (it ignores
//!   MXCSR); with activations and weights of magnitude 1e-38 and less that differs from
//!   the widened path, nowhere else.

use std::arch::x86_64::*;

use half::{bf16, f16};

use super::driver::{order_for, split_tasks, SharedOut};
use crate::cache;
use crate::error::{KernelError, Result};
use crate::pool::Par;
use crate::simd::Clamp;
use crate::tensor::{AlignedBuf, Plain};

/// Columns per packed panel: 4 zmm of 16 f32 lanes.
pub(crate) const NR: usize = 64;
/// Rows per register tile.
pub(crate) const MR: usize = 6;

/// A 16-bit float whose pairs a dot-product instruction multiplies into f32 lanes: bf16
/// (`vdpbf16ps`, `tdpbf16ps`) and f16 (`tdpfp16ps`, AMX-FP16 only). The pairs layout is
/// the same for both; only the instruction and the final narrowing differ.
pub(crate) trait Half: Plain {
    /// f16 (else bf16): picks the AMX instruction and the narrowing of C.
    const IS_F16: bool;
    /// Rounds to nearest even.
    fn round(x: f32) -> Self;
}

impl Half for bf16 {
    const IS_F16: bool = false;
    fn round(x: f32) -> Self {
        bf16::from_f32(x)
    }
}

impl Half for f16 {
    const IS_F16: bool = true;
    fn round(x: f32) -> Self {
        f16::from_f32(x)
    }
}

/// The weights of a bf16 (or f16) GEMM, packed in pairs along K (see the module docs).
pub(crate) struct PackedPairs<T: Half = bf16> {
    pub k: usize,
    pub n: usize,
    /// `[panels][k.div_ceil(2)][NR][2]` 16-bit values, 64-byte aligned so that no vector
    /// load or AMX tile row splits a cache line.
    data: AlignedBuf<T>,
    /// `[panels * NR]` f32, zero past `n`.
    bias: Vec<f32>,
}

impl<T: Half> PackedPairs<T> {
    /// Packs `B[p][j] = b(p, j)` for `p < k`, `j < n`, rounded to `T`, and the bias.
    pub fn new(k: usize, n: usize, bias: &[f32], b: impl Fn(usize, usize) -> f32) -> Result<Self> {
        let panels = n.div_ceil(NR);
        let pairs = k.div_ceil(2);
        let len = crate::error::checked_product("packed 16-bit weights", &[panels, pairs, NR, 2])?;
        let mut data = AlignedBuf::<T>::zeros(len)?;
        for q in 0..panels {
            for p2 in 0..pairs {
                for c in 0..NR {
                    let j = q * NR + c;
                    if j >= n {
                        continue;
                    }
                    let at = ((q * pairs + p2) * NR + c) * 2;
                    for h in 0..2 {
                        let p = 2 * p2 + h;
                        if p < k {
                            data[at + h] = T::round(b(p, j));
                        }
                    }
                }
            }
        }
        let mut padded = vec![0.0; panels * NR];
        padded[..n].copy_from_slice(&bias[..n]);
        Ok(PackedPairs { k, n, data, bias: padded })
    }

    /// The packed pairs, `[panels][k.div_ceil(2)][NR][2]` 16-bit values.
    pub(crate) fn data_ptr(&self) -> *const u16 {
        self.data.as_ptr().cast()
    }

    /// The size of the packed pairs in bytes.
    pub(crate) fn bytes(&self) -> usize {
        std::mem::size_of_val(&self.data[..])
    }

    /// The bias, `panels * NR` f32s.
    pub(crate) fn bias_ptr(&self) -> *const f32 {
        self.bias.as_ptr()
    }
}

/// A bf16 (or, on AMX, f16) GEMM on [`PackedPairs`] (this file's and the AMX one's):
/// `C[i][j] = act(bias[j] + sum_p A[i][p] B[p][j])` for `i < m`, rows of A and C `lda` and
/// `ldc` apart.
pub(crate) struct PairsGemm<'a, T: Half = bf16> {
    pub(crate) m: usize,
    pub(crate) a: &'a [T],
    pub(crate) lda: usize,
    pub(crate) b: &'a PackedPairs<T>,
    pub(crate) clamp: Clamp,
    pub(crate) c: &'a mut [T],
    pub(crate) ldc: usize,
}

/// The GEMM `g` on `threads` tasks of the hot pool (`crate::pool`).
///
/// # Safety
/// The CPU must have AVX-512F/BW/VL and AVX512_BF16 (`isa::available(Isa::Avx512Bf16)`).
pub(crate) unsafe fn gemm(g: PairsGemm<'_>, par: Par<'_>) -> Result<()> {
    let PairsGemm { m, a, lda, b, clamp, c, ldc } = g;
    let (k, n) = (b.k, b.n);
    if m == 0 {
        return Ok(());
    }
    let need = |ld: usize, cols: usize, len: usize, what: &'static str| -> Result<()> {
        let expected = (m - 1)
            .checked_mul(ld)
            .and_then(|x| x.checked_add(cols))
            .ok_or(KernelError::Overflow { what })?;
        if ld < cols || len < expected {
            return Err(KernelError::BufferLength { what, expected, actual: len });
        }
        Ok(())
    };
    need(lda, k, a.len(), "A (bf16)")?;
    need(ldc, n, c.len(), "C (bf16)")?;
    let nest = Nest { a: a.as_ptr().cast(), lda, b, clamp, c: SharedOut(c.as_mut_ptr().cast()), ldc };
    let (mp, np) = (m.div_ceil(MR), n.div_ceil(NR));
    if par.threads() <= 1 {
        // SAFETY: lengths checked above; the caller guarantees the ISA.
        unsafe { nest.run(0, m, 0, np) };
        return Ok(());
    }
    // As the f32 GEMM: columns first where each task would stream B for few rows (pw12 /
    // pw13, FC).
    split_tasks(mp, np, par, order_for(b.bytes(), m, mp, par), |(p0, p1), (q0, q1)| {
        // SAFETY: the tasks' (rows, panels) rectangles are disjoint and inside C.
        unsafe { nest.run((p0 * MR).min(m), (p1 * MR).min(m), q0, q1) };
    });
    Ok(())
}

struct Nest<'a> {
    a: *const u16,
    lda: usize,
    b: &'a PackedPairs,
    clamp: Clamp,
    c: SharedOut<u16>,
    ldc: usize,
}

// SAFETY: `a` is only read; `c` writes are disjoint per task.
unsafe impl Sync for Nest<'_> {}

impl Nest<'_> {
    /// Rows `m0..m1`, panels `q0..q1`.
    ///
    /// # Safety
    /// Bounds checked by `gemm`; the CPU has AVX512_BF16.
    unsafe fn run(&self, m0: usize, m1: usize, q0: usize, q1: usize) {
        let (k, n) = (self.b.k, self.b.n);
        let pairs = k.div_ceil(2);
        // Rows per chunk: their A rows (k bf16 each) fill at most the L2 budget.
        let chunk = (cache::blocking().b_block_bytes / (2 * k).max(1) / MR * MR).max(MR);
        let mut i0 = m0;
        while i0 < m1 {
            let i1 = (i0 + chunk).min(m1);
            // Rows in tiles of MR and MR - 1, so that no tile is ragged: 49 rows are 4 x 6 +
            // 5 x 5, not 8 x 6 + 1 (a 1-row tile runs at about a third of the FLOP rate: 4
            // dot products per 4 B loads). The MR-row tiles end at `long_end`.
            let rows = i1 - i0;
            let short = (MR - rows % MR) % MR;
            let short = if short * (MR - 1) <= rows { short } else { 0 };
            let long_end = i1 - short * (MR - 1);
            for q in q0..q1 {
                let j = q * NR;
                let nr = NR.min(n - j);
                let mut i = i0;
                while i < i1 {
                    let mr = if i < long_end { MR.min(long_end - i) } else { MR - 1 };
                    // SAFETY: rows i..i+mr of A and C exist, the panel and its bias exist
                    // (checked by `gemm`); the caller guarantees the ISA.
                    unsafe {
                        let args = TileArgs {
                            a: self.a.add(i * self.lda),
                            lda: self.lda,
                            k,
                            b: self.b.data_ptr().add(q * pairs * NR * 2),
                            bias: self.b.bias.as_ptr().add(j),
                            c: self.c.get().add(i * self.ldc + j),
                            ldc: self.ldc,
                            nr,
                            clamp: self.clamp,
                        };
                        match mr {
                            6 => tile::<6>(&args),
                            5 => tile::<5>(&args),
                            4 => tile::<4>(&args),
                            3 => tile::<3>(&args),
                            2 => tile::<2>(&args),
                            _ => tile::<1>(&args),
                        }
                    }
                    i += mr;
                }
            }
            i0 = i1;
        }
    }
}

/// One `R x 64` tile over the whole of K.
struct TileArgs {
    a: *const u16,
    lda: usize,
    k: usize,
    /// The panel: `[k.div_ceil(2)][NR][2]`.
    b: *const u16,
    /// `NR` f32s.
    bias: *const f32,
    c: *mut u16,
    ldc: usize,
    /// Valid columns, `1..=NR`.
    nr: usize,
    clamp: Clamp,
}

/// 32 bf16s from their bits (the intrinsics have no cast between the two types).
#[inline(always)]
pub(crate) fn as_bh(v: __m512i) -> __m512bh {
    // SAFETY: both are 64-byte plain vectors; every bit pattern is valid in each.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
}

/// The bits of 16 bf16s.
#[inline(always)]
fn from_bh(v: __m256bh) -> __m256i {
    // SAFETY: both are 32-byte plain vectors; every bit pattern is valid in each.
    unsafe { std::mem::transmute::<__m256bh, __m256i>(v) }
}

/// The lanes of column vector `z` (16 columns) that hold valid columns, as a mask.
#[inline(always)]
fn column_mask(nr: usize, z: usize) -> __mmask16 {
    let lanes = nr.saturating_sub(16 * z).min(16);
    ((1u32 << lanes) - 1) as __mmask16
}

/// # Safety
/// `R` rows of A (`k` bf16 each), the panel, `NR` bias values and `R` rows of `nr` C values
/// exist; the CPU has AVX-512F/BW/VL and AVX512_BF16.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn tile<const R: usize>(t: &TileArgs) {
    // SAFETY: every pointer below stays inside the buffers the contract names: pair `p2 <
    // k / 2` of a row is `A[i][2 p2..2 p2 + 2]`, the odd tail reads `A[i][k - 1]` alone,
    // panel rows are `NR * 2` bf16s, and stores are masked to the `nr` valid columns.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 4]; R];
        for row in acc.iter_mut() {
            for (z, v) in row.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(t.bias.add(16 * z));
            }
        }
        let full = t.k / 2;
        // One pair step: four B vectors, then for each row the broadcast pair `$pair(r)`.
        // (A macro, not a closure: closures do not inherit `#[target_feature]`s.)
        macro_rules! step {
            ($p2:expr, $pair:expr) => {{
                let bp = t.b.add($p2 * NR * 2);
                let bv: [__m512bh; 4] = [
                    as_bh(_mm512_loadu_si512(bp.cast())),
                    as_bh(_mm512_loadu_si512(bp.add(32).cast())),
                    as_bh(_mm512_loadu_si512(bp.add(64).cast())),
                    as_bh(_mm512_loadu_si512(bp.add(96).cast())),
                ];
                for (r, row) in acc.iter_mut().enumerate() {
                    let av = as_bh(_mm512_set1_epi32($pair(r)));
                    for (z, v) in row.iter_mut().enumerate() {
                        *v = _mm512_dpbf16_ps(*v, av, bv[z]);
                    }
                }
            }};
        }
        for p2 in 0..full {
            step!(p2, |r: usize| t.a.add(r * t.lda + 2 * p2).cast::<i32>().read_unaligned());
        }
        if t.k % 2 == 1 {
            step!(full, |r: usize| i32::from(*t.a.add(r * t.lda + t.k - 1)));
        }
        let (lo, hi) = (_mm512_set1_ps(t.clamp.lo), _mm512_set1_ps(t.clamp.hi));
        for (r, row) in acc.iter().enumerate() {
            for (z, &v) in row.iter().enumerate() {
                // `vmaxps` returns its second operand for a NaN first: NaN -> lo.
                let v = if t.clamp.on { _mm512_min_ps(_mm512_max_ps(v, lo), hi) } else { v };
                let h = from_bh(_mm512_cvtneps_pbh(v));
                _mm256_mask_storeu_epi16(t.c.add(r * t.ldc + 16 * z).cast(), column_mask(t.nr, z), h);
            }
        }
    }
}

/// Pixels per tile of [`dense_pixels`]: 8 pixels x 2 zmm of 16 channels = 16 accumulators.
pub(crate) const DENSE_PIXELS: usize = 8;

/// Where one tile of [`dense_pixels`] reads its activations (bf16 bits): pixel `r`'s kernel
/// row `ky` is `pairs` pairs at `a + r * pixel_stride + ky * row_stride` (all in bf16s).
/// With `odd`, a kernel row holds an odd number of values: its last pair's second half
/// belongs to the next pixel and is zeroed before the multiply (a NaN there must not meet
/// the zero weight).
#[derive(Clone, Copy)]
pub(crate) struct DenseTaps {
    pub(crate) a: *const u16,
    pub(crate) pixel_stride: usize,
    pub(crate) row_stride: usize,
    pub(crate) rows: usize,
    pub(crate) pairs: usize,
    pub(crate) odd: bool,
}

/// `R` output pixels of a dense convolution with at most 32 output channels, read in place
/// (no column buffer): per pair of a kernel row, one broadcast and two `vdpbf16ps` into the
/// pixel's 32 channels, then the clamp and the narrowing to bf16. `b` holds the weights as
/// pairs over the padded columns `rows * pairs * 2` (its panel's first 32 columns are
/// read); `c` holds `R` pixels of `n <= 32` channels, `n` apart.
///
/// # Safety
/// The CPU has AVX-512F/BW/VL and AVX512_BF16; every pair `taps` names is readable; `b`
/// packs `taps.rows * taps.pairs * 2` columns; `c` holds `R * n` bf16s.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub(crate) unsafe fn dense_pixels<const R: usize>(
    b: &PackedPairs,
    taps: DenseTaps,
    clamp: Clamp,
    c: *mut u16,
    n: usize,
) {
    // SAFETY: the panel holds `rows * pairs` pair steps of `NR * 2` bf16s and `NR` bias
    // values; the caller's contract covers the reads of `taps` and the stores to `c`.
    unsafe {
        let bias = [_mm512_loadu_ps(b.bias_ptr()), _mm512_loadu_ps(b.bias_ptr().add(16))];
        let mut acc = [bias; R];
        let low_half = _mm512_set1_epi32(0xFFFF);
        for ky in 0..taps.rows {
            let row = taps.a.add(ky * taps.row_stride);
            for g in 0..taps.pairs {
                let bp = b.data_ptr().add((ky * taps.pairs + g) * NR * 2);
                let bv = [as_bh(_mm512_loadu_si512(bp.cast())), as_bh(_mm512_loadu_si512(bp.add(32).cast()))];
                let last = taps.odd && g + 1 == taps.pairs;
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let word = row.add(r * taps.pixel_stride + 2 * g).cast::<i32>().read_unaligned();
                    let av = _mm512_set1_epi32(word);
                    let av = as_bh(if last { _mm512_and_si512(av, low_half) } else { av });
                    acc_r[0] = _mm512_dpbf16_ps(acc_r[0], av, bv[0]);
                    acc_r[1] = _mm512_dpbf16_ps(acc_r[1], av, bv[1]);
                }
            }
        }
        let (lo, hi) = (_mm512_set1_ps(clamp.lo), _mm512_set1_ps(clamp.hi));
        for (r, acc_r) in acc.iter().enumerate() {
            for (z, &v) in acc_r.iter().enumerate() {
                // `vmaxps` returns its second operand for a NaN first: NaN -> lo, as `tile`.
                let v = if clamp.on { _mm512_min_ps(_mm512_max_ps(v, lo), hi) } else { v };
                let h = from_bh(_mm512_cvtneps_pbh(v));
                _mm256_mask_storeu_epi16(c.add(r * n + 16 * z).cast(), column_mask(n, z), h);
            }
        }
    }
}

/// The rows above which `vdpbf16ps` loses to the f32 FMA path on a core where its FLOP rate
/// is lower ([`dot_vs_fma`] < 1): below it a layer streams its weights (FC at batch 1: 1 row,
/// 0.31 ms on bf16 pairs against 0.54 ms on f32 panels, Xeon model 207), above it it is
/// compute-bound (pw12/pw13, 49 rows: 0.68 / 1.45 ms on pairs against 0.63 / 1.35 on f32).
pub(crate) const DOT_MAX_ROWS_WHEN_SLOWER: usize = 16;

/// The FLOP rate of `vdpbf16ps` over that of `vfmadd231ps` this process plans with: a
/// recorded decision, never a timing, so that two runs of one binary on one machine take the
/// same path and print the same numbers.
///
/// - `KERNELS_BF16_DOT=1` or `0`: always / never prefer the pairs (2.0 / 0.0);
/// - otherwise from the CPU's vendor (CPUID leaf 0): AMD 2.0 (Zen 4 issues `vdpbf16ps` at one
///   per cycle like its FMA, twice the FLOPs), Intel 0.5 (Emerald Rapids, Xeon model 207 under
///   KVM, measured 1.74 against 6.9 G instructions/s: 0.51x the FLOPs; Sapphire Rapids alike),
///   anything else 0.5.
///
/// [`measure_dot_vs_fma`] times it (what `mobilenet kernels` and `tune` report).
///
/// # Safety
/// The CPU must have AVX-512F and AVX512_BF16.
pub(crate) unsafe fn dot_vs_fma() -> f64 {
    use std::sync::OnceLock;
    static RATIO: OnceLock<f64> = OnceLock::new();
    *RATIO.get_or_init(|| match std::env::var("KERNELS_BF16_DOT").as_deref().map(str::trim) {
        Ok("1") => 2.0,
        Ok("0") => 0.0,
        _ => {
            // CPUID leaf 0 (the vendor string) exists on every x86-64 CPU.
            let id = __cpuid(0);
            let vendor: Vec<u8> = [id.ebx, id.edx, id.ecx].iter().flat_map(|r| r.to_le_bytes()).collect();
            if vendor == b"AuthenticAMD" {
                2.0
            } else {
                0.5
            }
        }
    })
}

/// The measured ratio of [`dot_vs_fma`]: best of 5 runs of 12 independent chains of each
/// instruction (about 0.1 ms).
///
/// # Safety
/// The CPU must have AVX-512F and AVX512_BF16.
pub(crate) unsafe fn measure_dot_vs_fma() -> f64 {
    let best = |f: unsafe fn(usize) -> f32| {
        (0..5)
            .map(|_| {
                let t = std::time::Instant::now();
                // SAFETY: the caller guarantees the ISA.
                std::hint::black_box(unsafe { f(2000) });
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    // Each dot instruction does twice the FLOPs of an FMA.
    2.0 * best(fma_loop) / best(dot_loop)
}

/// Applies `$step` to each of the 12 accumulators of `$acc`, written out: a loop over the
/// array made LLVM keep some of them in memory.
macro_rules! twelve {
    ($step:expr, $acc:ident) => {{
        let [a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11] = &mut $acc;
        for a in [a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11] {
            *a = $step(*a);
        }
    }};
}

/// `n` rounds of 12 independent `vdpbf16ps`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn dot_loop(n: usize) -> f32 {
    let mut acc = [_mm512_setzero_ps(); 12];
    let a = as_bh(_mm512_set1_epi32(std::hint::black_box(0x3F80_3F80)));
    for _ in 0..n {
        twelve!(|x| _mm512_dpbf16_ps(x, a, a), acc);
    }
    acc.iter().fold(0.0, |s, &x| s + _mm512_reduce_add_ps(x))
}

/// `n` rounds of 12 independent `vfmadd231ps`.
#[target_feature(enable = "avx512f,fma")]
unsafe fn fma_loop(n: usize) -> f32 {
    let mut acc = [_mm512_setzero_ps(); 12];
    let a = _mm512_set1_ps(std::hint::black_box(1e-3));
    for _ in 0..n {
        twelve!(|x| _mm512_fmadd_ps(a, a, x), acc);
    }
    acc.iter().fold(0.0, |s, &x| s + _mm512_reduce_add_ps(x))
}
