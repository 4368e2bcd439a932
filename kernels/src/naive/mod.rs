//! The oracle: direct convolution straight from the definition, for every valid spec.
//!
//! Obviously correct rather than fast. It accumulates in f64, so its own rounding error is
//! negligible next to any fast path's, and every other algorithm is tested against it.

use crate::algo::{bias_or_zeros, ConvAlgorithm, Family, Layer, PreparedConv, Run};
use crate::error::Result;
use crate::isa::Isa;
use crate::simd::Backend;
use crate::spec::{Activation, ConvSpec, Dims};

/// `out[b][oy][ox][oc] = act(bias[oc] + sum_{i,ky,kx} in[b][iy][ix][g*Ig + i] * w[oc][i][ky][kx])`
/// with `iy = oy*stride_h + ky*dilation_h - pad_top` (taps outside the input read zero) and
/// `g = oc / (out_channels / groups)`.
///
/// Buffers are NHWC (`input`, `output`) and OIHW (`weights`); lengths are checked by the
/// caller ([`crate::algo::check_prepare`], [`crate::algo::check_run`]).
// The oracle takes the convolution exactly as its definition names it.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_nhwc(
    spec: &ConvSpec,
    activation: Activation,
    input: &[f32],
    in_dims: Dims,
    weights_oihw: &[f32],
    bias: &[f32],
    output: &mut [f32],
    out_dims: Dims,
) {
    let (ipg, opg) = (spec.in_per_group(), spec.out_per_group());
    let (kh, kw) = (spec.kernel_h, spec.kernel_w);
    for b in 0..out_dims.n {
        for oy in 0..out_dims.h {
            for ox in 0..out_dims.w {
                let out_base = ((b * out_dims.h + oy) * out_dims.w + ox) * out_dims.c;
                for oc in 0..out_dims.c {
                    let g = oc / opg;
                    let mut acc = bias[oc] as f64;
                    for ky in 0..kh {
                        let Some(iy) =
                            tap(oy, spec.stride_h, ky, spec.dilation_h, spec.padding.top, in_dims.h)
                        else {
                            continue;
                        };
                        for kx in 0..kw {
                            let Some(ix) =
                                tap(ox, spec.stride_w, kx, spec.dilation_w, spec.padding.left, in_dims.w)
                            else {
                                continue;
                            };
                            let in_base = ((b * in_dims.h + iy) * in_dims.w + ix) * in_dims.c + g * ipg;
                            for i in 0..ipg {
                                let wv = weights_oihw[((oc * ipg + i) * kh + ky) * kw + kx];
                                acc += input[in_base + i] as f64 * wv as f64;
                            }
                        }
                    }
                    output[out_base + oc] = activation.apply(acc as f32);
                }
            }
        }
    }
}

/// The input coordinate read by output `o` at tap `k`, or `None` if it falls in the padding.
fn tap(o: usize, stride: usize, k: usize, dilation: usize, pad_before: usize, len: usize) -> Option<usize> {
    (o * stride + k * dilation).checked_sub(pad_before).filter(|&i| i < len)
}

/// The naive algorithm: runs every valid spec on every CPU.
pub struct Naive;

struct NaivePrepared {
    spec: ConvSpec,
    activation: Activation,
    weights: Vec<f32>,
    bias: Vec<f32>,
}

impl ConvAlgorithm for Naive {
    fn name(&self) -> &'static str {
        "naive"
    }
    fn family(&self) -> Family {
        Family::Naive
    }
    fn backend(&self) -> Backend {
        Backend::Scalar
    }
    fn tolerance(&self) -> f64 {
        0.0
    }
    fn supports(&self, spec: &ConvSpec) -> bool {
        spec.validate().is_ok()
    }
    fn prepare_checked(&self, layer: &Layer<'_>) -> Result<Box<dyn PreparedConv>> {
        let Layer { spec, weights_oihw, bias, activation } = *layer;
        Ok(Box::new(NaivePrepared {
            spec: *spec,
            activation,
            weights: weights_oihw.to_vec(),
            bias: bias_or_zeros(spec, bias),
        }))
    }
}

impl PreparedConv for NaivePrepared {
    fn spec(&self) -> &ConvSpec {
        &self.spec
    }
    fn algorithm(&self) -> &'static str {
        "naive"
    }
    fn level(&self) -> Isa {
        Isa::Scalar
    }
    fn run_checked(&self, run: Run<'_, f32>) -> Result<()> {
        let Run { input, in_dims, out_dims, output, .. } = run;
        conv2d_nhwc(&self.spec, self.activation, input, in_dims, &self.weights, &self.bias, output, out_dims);
        Ok(())
    }
}
