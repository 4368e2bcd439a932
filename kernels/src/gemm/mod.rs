//! Packed BLIS-style SGEMM with a fused epilogue, and the `gemm-<backend>` pointwise algorithms.
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
//! - **KC from L1d** ([`crate::cache::blocking`], found at run time): the A micro-panel
//!   (MR x KC) must stay in L1d while the B panels stream past it: KC = L1d / (2 x 16 x 4 B),
//!   i.e. 256 on a 32 KiB L1d (14 x 256 x 4 B = 14 KiB for the largest tile, half of L1 left
//!   for the streaming B micro-panel, touched once per panel, so only its lines in flight
//!   matter) and 384 on a 48 KiB one. K is split into equal blocks (K = 1024 -> 4 x 256),
//!   each extra block costs one read-modify-write of C, which is MR*NR*2 memory ops against
//!   MR*NR*KC/LANES FMAs (< 1% at KC = 256).
//! - **NC from L2.** The B block (KC x NC) is swept once per A micro-panel, so it must stay
//!   in L2 with room for A, C and the other core's prefetches: KC x NC x 4 B <= L2 / 2, i.e.
//!   NC = 512 at KC = 256 on a 1 MiB L2 (all of MobileNetV1's N <= 1024 take 1 or 2 blocks);
//!   256 KiB on Zen 3's 512 KiB L2, where the full 512 KiB measured a few percent slower.
//!   Streaming B from L2 needs NR x 4 B per MR x NR / 32 cycles: 10.7 B/cycle for 6x16,
//!   5.3 B/cycle for 12x32, well under Zen 4's 32 B/cycle L2 -> L1 bandwidth.
//! - **MR x NR per register shape** (`tiles.rs`): one body over [`crate::simd::Simd`],
//!   stamped out per tile; each implementation takes the table of its register shape (so
//!   pulp at x86-64-v4 runs the AVX-512 tiles). The tile is chosen per call from `m`
//!   ([`choose_tile`]): the 7x7 layers have 49 rows, which 12-row tiles cover with 11 rows
//!   of padding (82% useful work) and 7-row tiles cover exactly.
//!
//! # Threads
//!
//! `threads > 1` splits `(m, n)` into about `4 * threads` rectangles (whole MR x NR tiles,
//! rows first, columns too when `m` is small) run as tasks on the hot pool (`crate::pool`); each
//! task owns its C rectangle across every K block, so the epilogue stays fused.
//! `threads == 1` runs the loop nest inline without touching the pool.
//!
//! Files: `tiles.rs` (the microkernel body and the tile tables), `pack.rs` ([`PackedB`]),
//! `driver.rs` (the loop nest, threads, argument checks), `conv.rs` (the `gemm-*`
//! algorithms).

#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
pub(crate) mod amx_bf16;
#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
pub(crate) mod avx512_bf16;
mod conv;
mod driver;
mod pack;
mod tiles;

pub(crate) use conv::native_half;
pub use conv::Gemm;
#[cfg(all(any(feature = "avx2", feature = "avx512"), target_arch = "x86_64"))]
pub(crate) use driver::{split_tasks, Order};

/// The FLOP rate of `vdpbf16ps` over the f32 FMA's that the bf16 GEMM plans with (a
/// recorded decision from the CPU's identity or `KERNELS_BF16_DOT`, see `avx512_bf16.rs`),
/// and the rate measured now, or `None` where AVX512_BF16 cannot run (CPU, ceiling, build).
pub fn bf16_dot_vs_fma() -> Option<(f64, f64)> {
    #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
    if crate::isa::available(crate::Isa::Avx512Bf16) {
        // SAFETY: AVX512_BF16 is available (checked above).
        return Some(unsafe { (avx512_bf16::dot_vs_fma(), avx512_bf16::measure_dot_vs_fma()) });
    }
    None
}
pub use driver::{sgemm, sgemm_tile, Operands};
pub use pack::PackedB;
pub use tiles::{choose_tile, nr_for, KSteps, KernelFn, Prefetch, Tile, TileArgs, MR_MAX, NR_MAX};

use crate::error::Result;
use crate::simd::Backend;

/// The microkernels of `backend` at the level it runs at here (pulp's depend on it).
/// Errors if the backend cannot run here.
pub fn tiles(backend: Backend) -> Result<&'static [Tile]> {
    backend.dispatch(tiles::TilesOf)
}
