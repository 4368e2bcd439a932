//! 3x3 depthwise convolution at bf16 on `vdpbf16ps`, two kernel rows per instruction.
//!
//! The f32 body (`body.rs`) at bf16 widens every input vector (a zero-extension and a
//! shift, 2 instructions per 16 channels) and narrows every output (the integer
//! round-to-nearest-even, 9): on the Zen 4, dw2 and dw3 ran slower at bf16 than at f32
//! (0.099 against 0.082 ms, 0.121 against 0.091). Here the input is never widened:
//!
//! - **Vertical tap pairs.** For one input column, `vpunpck{l,h}wd` of kernel rows 0 and 1
//!   put `(in[ky=0][c], in[ky=1][c])` side by side in each 32-bit lane, which one
//!   `vdpbf16ps` multiplies by the weight pair `(w[c][0][kx], w[c][1][kx])`; kernel row 2 is
//!   paired with zeros. A 3x3 tap set is 6 `vdpbf16ps` per 16 channels where the FMA needs 9,
//!   plus 4 unpacks per input column and 32 channels (shared by the outputs that read it).
//!   Pairing the same channel of two rows (not two channels, or a tap with a zero weight
//!   against a neighbour) keeps NaN and infinity where the naive loop puts them.
//! - **Lane order.** The unpacks work within 128-bit lanes, so the two f32 accumulators of
//!   a 32-channel block hold channels `8L + 0..4` (the low unpack) and `8L + 4..8` (the
//!   high) of lane `L`; the weights and bias are packed in that order at prepare, and the
//!   store puts the channels back with one `vpermw` after `vcvtne2ps2bf16`.
//! - **Borders and tails** by masked loads: an input row or column outside the image, and
//!   channels past `C` in the last block, load as zeros (masked-off lanes do not fault),
//!   so every output pixel takes the same path; stores are masked to the valid channels.
//! - **Register tile**: 4 output pixels x 32 channels (8 accumulators); the 12 weight
//!   vectors of the block are memory operands of `vdpbf16ps`.
//!
//! `vdpbf16ps` ignores MXCSR: denormal inputs count as zero and denormal sums are
//! flushed, as the bf16 GEMM's (`gemm::avx512_bf16`). Used where the pairs run at least at
//! the FMA's FLOP rate (`dot_vs_fma() >= 1`, AMD), for 3x3 kernels at stride 1 or 2.

use std::arch::x86_64::*;

use half::bf16;

use crate::algo::{as_storage, rounded, ConvAlgorithm, Layer, PreparedConv, RowBand, Run, Storage};
use crate::error::Result;
use crate::gemm::avx512_bf16::{as_bh, dot_vs_fma};
use crate::isa::Isa;
use crate::precision::Precision;
use crate::simd::{Backend, Clamp, Element};
use crate::spec::{ConvSpec, Dims};
use crate::tensor::AlignedBuf;

/// Channels per block: two zmm accumulators of 16 f32 lanes.
const BLOCK: usize = 32;
/// Weight vectors per block: for each `kx`, the low and high halves of the pair of kernel
/// rows 0 and 1, then of kernel row 2 and zero.
const BLOCK_VECTORS: usize = 12;
/// Output pixels per register tile. Measured on the Zen 4 (EPYC 25/17, one thread, two
/// interleaved rounds): at stride 1, 8 pixels (16 accumulators) made LLVM spill
/// accumulators (dw3 0.106 ms), 6 gave 0.077, 4 0.072-0.073; at stride 2, 4 and 6 were level
/// (dw4 0.027 against 0.028-0.029, dw12 0.009) and 8 slower on the small layers (dw4 0.029,
/// dw12 0.011).
const TILE: usize = 4;

/// See the module docs.
struct TapPairs {
    spec: ConvSpec,
    name: &'static str,
    /// `[blocks][kx][top lo, top hi, bottom lo, bottom hi][32]`.
    weights: AlignedBuf<bf16>,
    /// `[blocks][lo, hi][16]`, in the accumulators' channel order.
    bias: AlignedBuf<f32>,
    clamp: Clamp,
}

/// The channel (within its block) that f32 lane `lane` of accumulator `half` (0: low
/// unpack, 1: high) holds: lane `4L + m` of the low one is channel `8L + m`.
fn channel_of(half: usize, lane: usize) -> usize {
    8 * (lane / 4) + 4 * half + lane % 4
}

/// The layer on tap pairs where `E` is bf16, the kernel 3x3 at stride 1 or 2 (any padding
/// the family takes, no dilation), and `vdpbf16ps` may run here (the AVX-512 backend,
/// AVX512_BF16 under the ceiling, pairs at least as fast as the FMA).
pub(crate) fn prepare<E: Element + Storage>(
    algo: &dyn ConvAlgorithm,
    layer: &Layer<'_>,
) -> Result<Option<Box<dyn PreparedConv<E>>>> {
    let spec = *layer.spec;
    if E::PRECISION != Precision::Bf16
        || algo.backend() != Backend::Avx512
        || !crate::isa::available(Isa::Avx512Bf16)
        || (spec.kernel_h, spec.kernel_w) != (3, 3)
        || !matches!((spec.stride_h, spec.stride_w), (1, 1) | (2, 2))
        || !spec.is_undilated()
    {
        return Ok(None);
    }
    // SAFETY: AVX512_BF16 is available (checked above).
    if unsafe { dot_vs_fma() } < 1.0 {
        return Ok(None);
    }
    let c = spec.out_channels;
    let blocks = c.div_ceil(BLOCK);
    let w = layer.weights_oihw;
    let tap = |ch: usize, ky: usize, kx: usize| {
        if ch < c {
            bf16::from_f32(w[ch * 9 + ky * 3 + kx])
        } else {
            bf16::ZERO
        }
    };
    let mut weights = AlignedBuf::<bf16>::zeros(blocks * BLOCK_VECTORS * BLOCK)?;
    let mut bias = AlignedBuf::<f32>::zeros(blocks * BLOCK)?;
    let b = layer.bias.map(|b| rounded(Precision::Bf16, b));
    for g in 0..blocks {
        for half in 0..2 {
            for lane in 0..16 {
                let ch = g * BLOCK + channel_of(half, lane);
                if let (Some(b), true) = (&b, ch < c) {
                    bias[(g * 2 + half) * 16 + lane] = b[ch];
                }
                for kx in 0..3 {
                    let top = ((g * 3 + kx) * 4 + half) * BLOCK + 2 * lane;
                    let bottom = top + 2 * BLOCK;
                    weights[top] = tap(ch, 0, kx);
                    weights[top + 1] = tap(ch, 1, kx);
                    weights[bottom] = tap(ch, 2, kx);
                }
            }
        }
    }
    let layer: Box<dyn PreparedConv<bf16>> =
        Box::new(TapPairs { spec, name: algo.name(), weights, bias, clamp: Clamp::of(layer.activation) });
    // `E` is bf16 (checked above).
    Ok(as_storage(layer))
}

impl PreparedConv<bf16> for TapPairs {
    fn spec(&self) -> &ConvSpec {
        &self.spec
    }
    fn algorithm(&self) -> &'static str {
        self.name
    }
    fn level(&self) -> Isa {
        Isa::Avx512Bf16
    }
    fn run_checked(&self, run: Run<'_, bf16>) -> Result<()> {
        let Run { input, in_dims, out_dims, output, par, .. } = run;
        super::in_row_chunks(out_dims, output, par, |first_row, out| {
            self.rows(input, in_dims, out_dims, first_row, out)
        });
        Ok(())
    }
    fn runs_rows(&self) -> bool {
        true
    }
    fn run_rows(&self, input: &[bf16], in_dims: Dims, first_row: usize, out: &mut [bf16]) -> Result<()> {
        let band = RowBand::checked(&self.spec, input, in_dims, first_row, out)?;
        self.rows(band.input, band.in_dims, band.out_dims, band.first_row, band.out);
        Ok(())
    }
}

impl TapPairs {
    /// Output rows `first_row..` (counted over the batch) into `out`, whole rows, serially.
    /// The dims are the checked ones of `run` or `run_rows`.
    fn rows(&self, input: &[bf16], i: Dims, o: Dims, first_row: usize, out: &mut [bf16]) {
        let s = &self.spec;
        let (c, row_len) = (i.c, o.w * o.c);
        if row_len == 0 {
            return;
        }
        let blocks = c.div_ceil(BLOCK);
        let clamp = self.clamp;
        for (r, orow) in out.chunks_exact_mut(row_len).enumerate() {
            let g = first_row + r;
            let (b, oy) = (g / o.h, g % o.h);
            let iy0 = (oy * s.stride_h) as isize - s.padding.top as isize;
            // The three input rows (any address; a row outside the image is never read:
            // its mask is empty) and whether each is inside.
            let row = |ky: isize| {
                let iy = iy0 + ky;
                let inside = iy >= 0 && iy < i.h as isize;
                let at = (b * i.h) as isize + iy;
                (input.as_ptr().cast::<u16>().wrapping_offset(at * (i.w * c) as isize), inside)
            };
            let rows = [row(0), row(1), row(2)];
            for blk in 0..blocks {
                let lanes = (c - blk * BLOCK).min(BLOCK);
                let chan = if lanes == BLOCK { u32::MAX } else { (1u32 << lanes) - 1 };
                let src =
                    rows.map(|(p, inside)| (p.wrapping_add(blk * BLOCK), if inside { chan } else { 0 }));
                let job = Job {
                    src,
                    iw: i.w as isize,
                    c: c as isize,
                    w: self.weights.as_ptr().cast::<u16>().wrapping_add(blk * BLOCK_VECTORS * BLOCK),
                    bias: self.bias.as_ptr().wrapping_add(blk * BLOCK),
                    clamp,
                    chan,
                };
                let dst = orow.as_mut_ptr().cast::<u16>().wrapping_add(blk * BLOCK);
                // SAFETY: every load is masked to the input rows and columns inside the
                // image and to the block's valid channels (the rows, columns and channels
                // of `input`, which `run` checked holds `i`); the stores go to this row's
                // `o.w` pixels, valid channels only; the weights and bias hold `blocks`
                // blocks; the CPU has AVX512_BF16 (checked at prepare).
                unsafe {
                    if s.stride_w == 1 {
                        row_tiles::<1>(&job, o.w, s.padding.left, dst);
                    } else {
                        row_tiles::<2>(&job, o.w, s.padding.left, dst);
                    }
                }
            }
        }
    }
}

/// The `ow` output pixels of one row's block at stride `S` with left padding `pl`, from
/// `dst` on: tiles of [`TILE`] pixels, then single pixels.
///
/// # Safety
/// As [`tile`], for every pixel of the row.
unsafe fn row_tiles<const S: usize>(job: &Job, ow: usize, pl: usize, dst: *mut u16) {
    let at = |ox: usize| (ox * S) as isize - pl as isize;
    let mut ox = 0;
    // SAFETY: pixels `ox..ox + T <= ow` of the row (the caller's contract).
    unsafe {
        while ox + TILE <= ow {
            tile::<TILE, S>(job, at(ox), dst.offset(ox as isize * job.c));
            ox += TILE;
        }
        while ox < ow {
            tile::<1, S>(job, at(ox), dst.offset(ox as isize * job.c));
            ox += 1;
        }
    }
}

/// One output row's 32-channel block: where its three input rows are (bf16 bits, at the
/// block's first channel) with their load masks (empty for a row outside the image), the
/// image width, the pixel stride `c`, the block's weights and bias, the clamp and the mask
/// of its valid channels.
struct Job {
    src: [(*const u16, u32); 3],
    iw: isize,
    c: isize,
    w: *const u16,
    bias: *const f32,
    clamp: Clamp,
    chan: u32,
}

/// `T` output pixels at stride `S` whose first tap column is `ix0` (may be outside the
/// image), written from `dst` on, `job.c` apart.
///
/// # Safety
/// As the call in [`TapPairs::rows`]: the masks of `job` cover exactly the readable rows
/// and channels, `dst` holds `T` pixels of the block's valid channels; AVX512_BF16.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn tile<const T: usize, const S: usize>(job: &Job, ix0: isize, dst: *mut u16) {
    // SAFETY: loads are masked (masked-off lanes neither read nor fault) to the rows and
    // columns inside the image; the weights and bias of the block are 12 and 2 vectors;
    // stores are masked to the valid channels of `T` pixels the caller owns.
    unsafe {
        let bias = [_mm512_loadu_ps(job.bias), _mm512_loadu_ps(job.bias.add(16))];
        let mut acc = [bias; T];
        let zero = _mm512_setzero_si512();
        // (Macros and loops, not closures: a closure does not inherit `#[target_feature]`s.)
        macro_rules! weight {
            ($kx:expr, $v:expr) => {
                as_bh(_mm512_loadu_si512(job.w.add(($kx * 4 + $v) * BLOCK).cast()))
            };
        }
        for j in 0..(T - 1) * S + 3 {
            let ix = ix0 + j as isize;
            let inside = ix >= 0 && ix < job.iw;
            let mut x = [zero; 3];
            for (xr, &(p, mask)) in x.iter_mut().zip(&job.src) {
                let mask = if inside { mask } else { 0 };
                *xr = _mm512_maskz_loadu_epi16(mask, p.wrapping_offset(ix * job.c).cast());
            }
            let pairs = [
                as_bh(_mm512_unpacklo_epi16(x[0], x[1])),
                as_bh(_mm512_unpackhi_epi16(x[0], x[1])),
                as_bh(_mm512_unpacklo_epi16(x[2], zero)),
                as_bh(_mm512_unpackhi_epi16(x[2], zero)),
            ];
            for (t, a) in acc.iter_mut().enumerate() {
                // Column j is tap kx = j - t S of output t.
                if j < t * S || j - t * S >= 3 {
                    continue;
                }
                let kx = j - t * S;
                a[0] = _mm512_dpbf16_ps(a[0], pairs[0], weight!(kx, 0));
                a[1] = _mm512_dpbf16_ps(a[1], pairs[1], weight!(kx, 1));
                a[0] = _mm512_dpbf16_ps(a[0], pairs[2], weight!(kx, 2));
                a[1] = _mm512_dpbf16_ps(a[1], pairs[3], weight!(kx, 3));
            }
        }
        // Word `ch` of the result is word `UNPERMUTE[ch]` of `vcvtne2ps2bf16(hi, lo)` (words
        // 0..16 the low accumulator's lanes, 16..32 the high one's).
        let unpermute = _mm512_loadu_si512(UNPERMUTE.as_ptr().cast());
        let (lo, hi) = (_mm512_set1_ps(job.clamp.lo), _mm512_set1_ps(job.clamp.hi));
        for (t, a) in acc.iter().enumerate() {
            let mut a = *a;
            if job.clamp.on {
                for v in a.iter_mut() {
                    // `vmaxps` returns its second operand for a NaN first: NaN -> lo.
                    *v = _mm512_min_ps(_mm512_max_ps(*v, lo), hi);
                }
            }
            let h = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(a[1], a[0]));
            let h = _mm512_permutexvar_epi16(unpermute, h);
            _mm512_mask_storeu_epi16(dst.offset(t as isize * job.c).cast(), job.chan, h);
        }
    }
}

/// See [`tile`]'s store: channel `ch` of a block is lane `ch % 4 + 4 (ch / 8)` of the low
/// accumulator (`ch % 8 < 4`) or of the high one.
const UNPERMUTE: [u16; 32] = {
    let mut idx = [0u16; 32];
    let mut ch = 0;
    while ch < 32 {
        let lane = 4 * (ch / 8) + ch % 4;
        idx[ch] = (if ch % 8 < 4 { lane } else { 16 + lane }) as u16;
        ch += 1;
    }
    idx
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_channel_of() {
        for half in 0..2 {
            for lane in 0..16 {
                assert_eq!(UNPERMUTE[channel_of(half, lane)] as usize, 16 * half + lane);
            }
        }
    }
}
