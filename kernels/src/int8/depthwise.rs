//! The int8 depthwise convolution, channels across lanes on NHWC: the native path of the
//! `direct` family at u8. Any kernel size and stride the `direct` family takes; every output
//! pixel sums only its taps inside the image (a padded tap is real 0, so it adds nothing),
//! each as `(x - z_x) * w` in i32. It runs row bands, so it can lead a fused block.

use super::{reference, Int8Isa, QuantLayer, QuantizedLayer};
use crate::algo::{check_rows, ConvAlgorithm, Layer, PreparedConv, Run};
use crate::error::Result;
use crate::isa::Isa;
use crate::pool::SharedOut;
use crate::spec::{ConvSpec, Dims};

/// Channel padding of the packed weights, bias and multipliers (the widest vector: 16 i32).
const CPAD: usize = 16;

/// An int8 depthwise layer with its weights packed `[kh * kw][cpad]` as i32 (each holding
/// an i16 in its lower half and zero above, for `vpmaddwd`).
#[cfg_attr(
    not(any(
        all(feature = "avx2", target_arch = "x86_64"),
        all(feature = "avx512", target_arch = "x86_64")
    )),
    allow(dead_code)
)]
pub(crate) struct DwInt8 {
    pub(crate) q: QuantizedLayer,
    name: &'static str,
    isa: Int8Isa,
    pub(crate) cpad: usize,
    pub(crate) weights: Vec<i32>,
    pub(crate) bias: Vec<i32>,
    /// `bias[c] - z_x * sum_taps w[c]`: the bias of a pixel whose taps all fall inside the
    /// image, which then multiplies the raw `x` (no subtraction per tap).
    pub(crate) interior_bias: Vec<i32>,
    pub(crate) multiplier: Vec<f32>,
}

/// The native path of `direct` at u8.
pub(crate) fn native(
    algo: &dyn ConvAlgorithm,
    layer: &Layer<'_>,
    quant: &QuantLayer,
) -> Result<Option<Box<dyn PreparedConv<u8>>>> {
    if !crate::direct::supports_shape(layer.spec) {
        return Ok(None);
    }
    let q = QuantizedLayer::new(layer, quant)?;
    let c = q.spec.out_channels;
    let cpad = c.div_ceil(CPAD) * CPAD;
    let taps = q.spec.kernel_h * q.spec.kernel_w;
    let mut weights = vec![0i32; taps * cpad];
    let (mut bias, mut interior_bias, mut multiplier) =
        (vec![0i32; cpad], vec![0i32; cpad], vec![0f32; cpad]);
    for ch in 0..c {
        let mut sum = 0i32;
        for t in 0..taps {
            let w = q.weights[ch * taps + t];
            weights[t * cpad + ch] = w as i16 as u16 as i32;
            sum += w as i32;
        }
        bias[ch] = q.bias[ch];
        interior_bias[ch] = q.bias[ch].wrapping_sub(q.input_zero_point.wrapping_mul(sum));
        multiplier[ch] = q.requant.multiplier[ch];
    }
    let isa = Int8Isa::of(algo);
    Ok(Some(Box::new(DwInt8 { q, name: algo.name(), isa, cpad, weights, bias, interior_bias, multiplier })))
}

#[cfg_attr(
    not(any(
        all(feature = "avx2", target_arch = "x86_64"),
        all(feature = "avx512", target_arch = "x86_64")
    )),
    allow(dead_code)
)]
impl DwInt8 {
    /// The taps `k0..k1` of output position `o` that fall inside an input of `size`.
    #[inline(always)]
    pub(crate) fn tap_range(
        &self,
        o: usize,
        stride: usize,
        pad: usize,
        kernel: usize,
        size: usize,
    ) -> (usize, usize) {
        let start = (o * stride) as isize - pad as isize;
        let k0 = (-start).max(0) as usize;
        let k1 = ((size as isize - start).max(0) as usize).min(kernel);
        (k0.min(k1), k1)
    }

    /// The output columns `lo..hi` (of `out_w`) whose taps all fall inside an input of
    /// width `w` (empty when there are none).
    pub(crate) fn interior(&self, out_w: usize, w: usize) -> (usize, usize) {
        let s = &self.q.spec;
        let (pad, k, st) = (s.padding.left, s.kernel_w, s.stride_w);
        let lo = pad.div_ceil(st);
        let hi = if w + pad >= k { ((w + pad - k) / st + 1).min(out_w) } else { 0 };
        (lo.min(hi), hi)
    }

    /// Output rows `first_row..` into `out` (whole rows), serially.
    fn rows(&self, input: &[u8], in_dims: Dims, first_row: usize, out: &mut [u8]) -> Result<()> {
        let o = check_rows(&self.q.spec, input, in_dims, first_row, out)?;
        match self.isa {
            #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
            // SAFETY: `Avx512` is chosen only where AVX-512 is available; the buffers are
            // checked above.
            Int8Isa::Avx512 { vnni: false } => unsafe {
                super::avx512::dw_rows(self, input, in_dims, o, first_row, out)
            },
            #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
            // SAFETY: as above, and `vnni` is set only where AVX512_VNNI is detected.
            Int8Isa::Avx512 { vnni: true } => unsafe {
                super::avx512::dw_rows_vnni(self, input, in_dims, o, first_row, out)
            },
            #[cfg(all(feature = "avx2", target_arch = "x86_64"))]
            // SAFETY: as above, for AVX2.
            Int8Isa::Avx2 => unsafe { super::avx2::dw_rows(self, input, in_dims, o, first_row, out) },
            _ => {
                // The reference takes the rows from the output dims itself.
                let _ = o;
                reference::conv_rows(&self.q, input, in_dims, first_row, out)?
            }
        }
        Ok(())
    }
}

impl PreparedConv<u8> for DwInt8 {
    fn spec(&self) -> &ConvSpec {
        &self.q.spec
    }
    fn algorithm(&self) -> &'static str {
        self.name
    }
    fn level(&self) -> Isa {
        self.isa.level()
    }
    fn run_checked(&self, run: Run<'_, u8>) -> Result<()> {
        let Run { input, in_dims, out_dims: o, output, par, .. } = run;
        let (rows, row) = (o.n * o.h, o.w * o.c);
        if rows == 0 || row == 0 {
            return Ok(());
        }
        let chunk = rows.div_ceil(2 * par.threads()).max(1);
        let tasks = rows.div_ceil(chunk);
        let out = SharedOut(output.as_mut_ptr());
        let errors = std::sync::Mutex::new(None);
        par.for_each(tasks, |t| {
            let (r0, r1) = (t * chunk, ((t + 1) * chunk).min(rows));
            // SAFETY: task `t` owns output rows `r0..r1`, inside the checked output.
            let band = unsafe { std::slice::from_raw_parts_mut(out.get().add(r0 * row), (r1 - r0) * row) };
            if let Err(e) = self.rows(input, in_dims, r0, band) {
                *errors.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
        });
        errors.into_inner().unwrap_or_else(|p| p.into_inner()).map_or(Ok(()), Err)
    }
    fn runs_rows(&self) -> bool {
        true
    }
    fn run_rows(&self, input: &[u8], in_dims: Dims, first_row: usize, out: &mut [u8]) -> Result<()> {
        self.rows(input, in_dims, first_row, out)
    }
}
