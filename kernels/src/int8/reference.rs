//! The scalar int8 convolution: the oracle every int8 kernel must match bit for bit, and the
//! path of every backend without an int8 kernel of its own.
//!
//! `acc = bias_q[c] + sum over taps inside the image of (x - z_x) * w_q`, then
//! [`Requant::apply`](super::Requant::apply). Any spec: groups, strides, padding, dilation.

use super::QuantizedLayer;
use crate::algo::check_rows;
use crate::error::Result;
use crate::spec::Dims;

/// The whole convolution of NHWC `input` into NHWC `output`.
pub fn conv(q: &QuantizedLayer, input: &[u8], in_dims: Dims, output: &mut [u8]) -> Result<()> {
    conv_rows(q, input, in_dims, 0, output)
}

/// Output rows `first_row..` (counted over the batch, `n * out_h` of them) into `out`, which
/// holds whole rows.
pub fn conv_rows(
    q: &QuantizedLayer,
    input: &[u8],
    in_dims: Dims,
    first_row: usize,
    out: &mut [u8],
) -> Result<()> {
    let spec = &q.spec;
    let o = check_rows(spec, input, in_dims, first_row, out)?;
    let row = o.w * o.c;
    let (ipg, opg) = (spec.in_per_group(), spec.out_per_group());
    let (kh, kw) = (spec.kernel_h, spec.kernel_w);
    let zx = q.input_zero_point;
    for (r, out_row) in out.chunks_exact_mut(row).enumerate() {
        let (b, oy) = ((first_row + r) / o.h, (first_row + r) % o.h);
        for ox in 0..o.w {
            for oc in 0..o.c {
                let g = oc / opg;
                let mut acc = q.bias[oc];
                for ic in 0..ipg {
                    let c = g * ipg + ic;
                    for ky in 0..kh {
                        let iy =
                            (oy * spec.stride_h + ky * spec.dilation_h) as isize - spec.padding.top as isize;
                        if iy < 0 || iy >= in_dims.h as isize {
                            continue;
                        }
                        for kx in 0..kw {
                            let ix = (ox * spec.stride_w + kx * spec.dilation_w) as isize
                                - spec.padding.left as isize;
                            if ix < 0 || ix >= in_dims.w as isize {
                                continue;
                            }
                            let x = input
                                [((b * in_dims.h + iy as usize) * in_dims.w + ix as usize) * in_dims.c + c];
                            let w = q.weights[((oc * ipg + ic) * kh + ky) * kw + kx];
                            acc = acc.wrapping_add((x as i32 - zx) * w as i32);
                        }
                    }
                }
                out_row[ox * o.c + oc] = q.requant.apply(acc, oc);
            }
        }
    }
    Ok(())
}
