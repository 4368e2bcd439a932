//! Direct depthwise convolution, hand-vectorised across channels on NHWC.
//!
//! `out[b][oy][ox][c] = act(bias[c] + sum_{ky,kx} in[b][oy*s+ky-pt][ox*s+kx-pl][c] * w[c][ky][kx])`
//!
//! One body (`body.rs`) is written once over [`crate::simd::Simd`] and runs under every
//! implementation of the backend table (`direct-avx512`, `direct-pulp`, `direct-scalar`,
//! ...); this file registers it, packs the weights and splits the work over threads.
//!
//! How the body works:
//! - **Weights** are packed at prepare as `[kh*kw][C']` with `C'` = C rounded up to 16 (the
//!   widest vector), zero-filled, and the bias as `[C']`, so weight and bias loads are always
//!   full vectors, even in the channel tail.
//! - **Vectorised across channels**: one vector holds `N` consecutive channels of one pixel.
//! - **Register tile**: the interior of each output row is walked in tiles of `R` output
//!   pixels (8 with 32 vector registers, as AVX-512 and NEON; 4 with 16, as AVX2), each
//!   over one channel block, or on AVX-512 from 64 channels on, 4 pixels over two channel
//!   blocks (8 accumulators either way; 0.84-0.95x the time of 8 x 1 on dw2 and dw4..dw13
//!   on the Zen 5, see `body.rs`); for each kernel row the `K` weight vectors are loaded
//!   once and every input vector of the tile's receptive field once (at stride 1, `R + K -
//!   1` loads feed `R * K` FMAs), so each loaded input is reused from a register by up to
//!   `K` outputs.
//! - **Borders without a padded copy**: kernel rows outside the image are skipped per output
//!   row; output columns whose taps cross the left or right edge go through a per-pixel path
//!   that checks each tap. For MobileNetV1 (padding 1) that is 2 pixels per row.
//! - **Channel tails**: the implementation's partial loads and stores (masked on AVX-512
//!   and AVX2, a stack buffer on NEON and `wide`, pulp's own in `pulp`).
//! - **Epilogue**: bias is the accumulator's initial value; the activation clamp
//!   (`min(max(x, lo), hi)`, NaN -> lo, as [`crate::Activation::apply`]) is applied on the store.
//! - **Kernels**: 3x3 and 5x5 at stride 1 and 2 get the register-tiled interior; any other
//!   square or rectangular kernel up to 7x7 and any stride run every pixel through the
//!   checked per-pixel path (correct, about half the speed: two loads per FMA).
//! - **Threads**: `threads > 1` splits the output rows (over the batch too) into
//!   `2 * threads` contiguous chunks on the pool (`kernels::pool`); `threads == 1` runs inline.

use crate::algo::{
    per_backend, rounded, Bind, ConvAlgorithm, Layer as AlgoLayer, PreparedConv, RowBand, Run, Storage,
    TokenLayer,
};
use crate::error::Result;
use crate::simd::{Backend, Clamp, Element, Simd, SimdOp, MAX_LANES};
use crate::spec::{ConvSpec, Dims};
use crate::tensor::AlignedBuf;

#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
mod avx512_bf16;
mod body;

use body::DwArgs;

/// Channel padding of the packed weights: the widest vector, so weight and bias loads are
/// always full vectors.
pub const CHANNEL_PAD: usize = MAX_LANES;

/// The largest kernel side the direct family accepts (larger ones fall back to naive).
pub const MAX_KERNEL: usize = 7;

/// Whether the direct family handles `spec`: depthwise (`groups == in == out`), no
/// dilation, kernel sides up to [`MAX_KERNEL`], padding smaller than the kernel on every side.
pub fn supports_shape(spec: &ConvSpec) -> bool {
    let p = spec.padding;
    spec.validate().is_ok()
        && spec.is_depthwise()
        && spec.is_undilated()
        && (1..=MAX_KERNEL).contains(&spec.kernel_h)
        && (1..=MAX_KERNEL).contains(&spec.kernel_w)
        && p.top < spec.kernel_h
        && p.bottom < spec.kernel_h
        && p.left < spec.kernel_w
        && p.right < spec.kernel_w
}

/// The direct depthwise algorithm on one backend (registered once per backend).
pub struct Direct {
    /// `direct-<backend>`.
    pub name: &'static str,
    pub backend: Backend,
}

impl ConvAlgorithm for Direct {
    per_backend!(Direct);
    fn supports(&self, spec: &ConvSpec) -> bool {
        self.backend.available() && supports_shape(spec)
    }
    fn prepare_checked(&self, layer: &AlgoLayer<'_>) -> Result<Box<dyn PreparedConv>> {
        self.prepare_stored(layer)
    }
    fn runs_rows(&self) -> bool {
        true
    }
}

/// The native path of `direct` at every float storage type (f16, bf16; f32 is `prepare`):
/// at bf16, 3x3 kernels on `vdpbf16ps` tap pairs where they run fast ([`avx512_bf16`]),
/// else the one body.
pub(crate) fn native<E: Element + Storage>(
    algo: &dyn ConvAlgorithm,
    layer: &AlgoLayer<'_>,
    _: &(),
) -> Result<Option<Box<dyn PreparedConv<E>>>> {
    #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
    if let Some(pairs) = avx512_bf16::prepare::<E>(algo, layer)? {
        return Ok(Some(pairs));
    }
    Direct { name: algo.name(), backend: algo.backend() }.prepare_stored(layer).map(Some)
}

impl Direct {
    /// The one prepare of every storage type (of a layer `prepare` or `algo::prepare`
    /// checked): weights and bias rounded to `E`'s precision, kept as f32 (a depthwise layer
    /// moves its activations, not its 9 taps per channel).
    fn prepare_stored<E: Element + Storage>(
        &self,
        layer: &AlgoLayer<'_>,
    ) -> Result<Box<dyn PreparedConv<E>>> {
        let AlgoLayer { spec, weights_oihw, bias, activation } = *layer;
        let p = E::PRECISION;
        let cpad = spec.out_channels.div_ceil(CHANNEL_PAD) * CHANNEL_PAD;
        let mut packed_bias = AlignedBuf::zeros(cpad)?;
        if let Some(b) = bias {
            packed_bias[..b.len()].copy_from_slice(&rounded(p, b));
        }
        let layer = Layer {
            spec: *spec,
            name: self.name,
            clamp: Clamp::of(activation),
            weights: pack_weights(spec, &rounded(p, weights_oihw), cpad)?,
            bias: packed_bias,
            cpad,
        };
        self.backend.dispatch(Bind::<Layer, E>::new(layer))
    }
}

/// Runs `rows(first_row, out)` over the output rows (counted over the batch) of `output`
/// (`out_dims`): inline at one thread, else in two balanced runs of rows per thread of `par`
/// ([`Par::for_each_rows_mut`](crate::pool::Par::for_each_rows_mut)). Rows cost the same,
/// but the machine is shared and noisy, so a little slack lets an awake thread take a
/// descheduled one's run. The one split of every direct depthwise kernel.
fn in_row_chunks<E: Send>(
    out_dims: Dims,
    output: &mut [E],
    par: crate::pool::Par<'_>,
    rows: impl Fn(usize, &mut [E]) + Sync,
) {
    let total_rows = out_dims.n * out_dims.h;
    let row_len = out_dims.w * out_dims.c;
    if par.threads() <= 1 || total_rows < 2 || row_len == 0 {
        rows(0, output);
    } else {
        par.for_each_rows_mut(&mut output[..total_rows * row_len], row_len, 2 * par.threads(), rows);
    }
}

/// A depthwise layer with its weights packed.
struct Layer {
    spec: ConvSpec,
    name: &'static str,
    clamp: Clamp,
    weights: AlignedBuf,
    bias: AlignedBuf,
    cpad: usize,
}

/// Packs OIHW depthwise weights `[C][1][kh][kw]` as `[kh*kw][cpad]` (zero-padded).
fn pack_weights(spec: &ConvSpec, weights_oihw: &[f32], cpad: usize) -> Result<AlignedBuf> {
    let taps = spec.kernel_h * spec.kernel_w;
    let mut packed = AlignedBuf::zeros(taps * cpad)?;
    for ch in 0..spec.out_channels {
        for t in 0..taps {
            packed[t * cpad + ch] = weights_oihw[ch * taps + t];
        }
    }
    Ok(packed)
}

/// One chunk of output rows as a [`SimdOp`]: the kernel side picks the register-tiled body
/// (3x3, 5x5) or the checked per-pixel one, the register count the tile width.
struct Rows<'a, 'b, E> {
    args: &'a DwArgs<'b, E>,
    first_row: usize,
    out: &'a mut [E],
}

impl<E: Element + Storage> SimdOp for Rows<'_, '_, E> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let Rows { args, first_row, out } = self;
        // 32 registers hold an 8-pixel 3x3 tile (8 accumulators, 3 weights, 10 inputs);
        // 16 hold a 4-pixel one.
        macro_rules! go {
            ($k:literal) => {
                if S::REGISTERS_32 {
                    body::rows::<S, E, $k, 8>(s, args, first_row, out)
                } else {
                    body::rows::<S, E, $k, 4>(s, args, first_row, out)
                }
            };
        }
        // SAFETY: `Layer::run` builds `args` from its packed layer and the checked `Run`'s
        // dims (consistent as `body::rows` requires) and passes whole output rows.
        unsafe {
            match (args.kh, args.kw) {
                (3, 3) => go!(3),
                (5, 5) => go!(5),
                _ => go!(0),
            }
        }
    }
}

impl<E: Element + Storage> TokenLayer<E> for Layer {
    fn spec(&self) -> &ConvSpec {
        &self.spec
    }
    fn name(&self) -> &'static str {
        self.name
    }
    fn run<S: Simd>(&self, s: S, run: Run<'_, E>) -> Result<()> {
        let Run { input, in_dims, out_dims, output, par, .. } = run;
        let args = self.args(input, in_dims, out_dims);
        in_row_chunks(out_dims, output, par, |first_row, out| {
            s.vectorize(Rows { args: &args, first_row, out })
        });
        Ok(())
    }
    fn runs_rows(&self) -> bool {
        true
    }
    fn run_rows<S: Simd>(&self, s: S, band: RowBand<'_, E>) {
        let RowBand { input, in_dims, out_dims, first_row, out } = band;
        let args = self.args(input, in_dims, out_dims);
        s.vectorize(Rows { args: &args, first_row, out });
    }
}

impl Layer {
    /// The kernel arguments of one run (dims already checked against the spec).
    fn args<'a, E: Element>(&'a self, input: &'a [E], in_dims: Dims, out_dims: Dims) -> DwArgs<'a, E> {
        DwArgs {
            input,
            in_dims,
            out_dims,
            weights: &self.weights,
            bias: &self.bias,
            cpad: self.cpad,
            kh: self.spec.kernel_h,
            kw: self.spec.kernel_w,
            sh: self.spec.stride_h,
            sw: self.spec.stride_w,
            pt: self.spec.padding.top,
            pl: self.spec.padding.left,
            clamp: self.clamp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::body::interior_columns;
    use super::*;

    #[test]
    fn interior_columns_match_a_brute_force_count() {
        for iw in 1..12 {
            for kw in 1..=5 {
                for sw in 1..=3 {
                    for pl in 0..kw {
                        for pr in 0..kw {
                            if iw + pl + pr < kw {
                                continue;
                            }
                            let ow = (iw + pl + pr - kw) / sw + 1;
                            let inside = |ox: usize| {
                                let ix = (ox * sw) as isize - pl as isize;
                                ix >= 0 && ix + kw as isize <= iw as isize
                            };
                            let (x0, x1) = interior_columns(ow, iw, kw, sw, pl);
                            for ox in 0..ow {
                                assert_eq!(
                                    (x0..x1).contains(&ox),
                                    inside(ox),
                                    "iw {iw} kw {kw} s {sw} pl {pl} ox {ox}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn packing_is_tap_major_and_zero_padded() {
        let spec = ConvSpec::depthwise(3, 3, 1, 1);
        let w: Vec<f32> = (0..27).map(|i| i as f32).collect();
        let p = pack_weights(&spec, &w, 16).unwrap();
        assert_eq!(p.len(), 9 * 16);
        assert_eq!(p[0], 0.0);
        assert_eq!(p[1], 9.0);
        assert_eq!(p[16 + 2], 19.0);
        assert_eq!(p[3], 0.0);
    }
}
