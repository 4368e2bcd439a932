//! `im2col-<flavour>`: any dense or grouped convolution as im2col + the packed SGEMM of
//! [`crate::gemm`], one GEMM per group.
//!
//! For group `g` the column matrix has one row per output pixel and `K = kh * kw * Cin/G`
//! columns ordered `(ky, kx, i)`, so each tap copies a contiguous run of NHWC channels;
//! taps in the padding are zeros. The weights are packed once per group in the same K
//! order. A 1x1 stride-1 unpadded (grouped) convolution skips the copy: the NHWC input,
//! offset to the group's channels, already is the column matrix (row stride `Cin`).

use crate::algo::{bias_or_zeros, check_prepare, check_run, ConvAlgorithm, PreparedConv};
use crate::error::{checked_product, KernelError, Result};
use crate::gemm::{sgemm, Flavour, PackedB};
use crate::isa::Isa;
use crate::spec::{Activation, ConvSpec, Dims, Padding};

/// The im2col + GEMM backend for one microkernel flavour.
pub struct Im2col {
    /// `im2col-<flavour>`.
    pub name: &'static str,
    pub flavour: &'static Flavour,
}

struct Im2colPrepared {
    spec: ConvSpec,
    name: &'static str,
    flavour: &'static Flavour,
    activation: Activation,
    /// One packed `K x Cout/G` matrix per group.
    b: Vec<PackedB>,
    bias: Vec<f32>,
}

impl ConvAlgorithm for Im2col {
    fn name(&self) -> &'static str {
        self.name
    }
    fn family(&self) -> &'static str {
        "im2col"
    }
    fn flavour(&self) -> &'static str {
        self.flavour.name
    }
    fn isa(&self) -> Isa {
        self.flavour.isa
    }
    fn supports(&self, spec: &ConvSpec) -> bool {
        self.flavour.available() && spec.validate().is_ok()
    }
    fn prepare(
        &self,
        spec: &ConvSpec,
        weights_oihw: &[f32],
        bias: Option<&[f32]>,
        activation: Activation,
    ) -> Result<Box<dyn PreparedConv>> {
        check_prepare(spec, weights_oihw, bias, activation)?;
        if !self.supports(spec) {
            return Err(KernelError::Unsupported { algorithm: self.name, spec: spec.to_string() });
        }
        let (ipg, opg, kh, kw) = (spec.in_per_group(), spec.out_per_group(), spec.kernel_h, spec.kernel_w);
        let k = checked_product("im2col K", &[kh, kw, ipg])?;
        let nr = self.flavour.nr_for(k, opg);
        let b = (0..spec.groups)
            .map(|g| {
                PackedB::new(k, opg, nr, |p, j| {
                    let (ky, kx, i) = (p / (kw * ipg), p / ipg % kw, p % ipg);
                    weights_oihw[(((g * opg + j) * ipg + i) * kh + ky) * kw + kx]
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Box::new(Im2colPrepared {
            spec: *spec,
            name: self.name,
            flavour: self.flavour,
            activation,
            b,
            bias: bias_or_zeros(spec, bias),
        }))
    }
}

impl Im2colPrepared {
    /// Whether the input already is the column matrix (1x1, stride 1, no padding).
    fn direct(&self) -> bool {
        let s = &self.spec;
        s.kernel_h == 1
            && s.kernel_w == 1
            && s.stride_h == 1
            && s.stride_w == 1
            && s.padding == Padding::default()
    }

    fn k(&self) -> usize {
        self.spec.kernel_h * self.spec.kernel_w * self.spec.in_per_group()
    }
}

impl PreparedConv for Im2colPrepared {
    fn spec(&self) -> &ConvSpec {
        &self.spec
    }
    fn algorithm(&self) -> &'static str {
        self.name
    }
    fn scratch_len(&self, input: Dims) -> Result<usize> {
        if self.direct() {
            return Ok(0);
        }
        let out = self.spec.output_dims(input)?;
        checked_product("im2col column buffer", &[out.n, out.h, out.w, self.k()])
    }
    fn run(
        &self,
        input: &[f32],
        in_dims: Dims,
        output: &mut [f32],
        scratch: &mut [f32],
        threads: usize,
    ) -> Result<()> {
        let need = self.scratch_len(in_dims)?;
        let out = check_run(&self.spec, input, in_dims, output, scratch, need)?;
        let s = &self.spec;
        let (ipg, opg, k) = (s.in_per_group(), s.out_per_group(), self.k());
        let m = out.n * out.h * out.w;
        for (g, b) in self.b.iter().enumerate() {
            let (a, lda): (&[f32], usize) = if self.direct() {
                (&input[g * ipg..], s.in_channels)
            } else {
                let cols = &mut scratch[..need];
                fill_columns(s, input, in_dims, out, g, cols, threads);
                (cols, k)
            };
            sgemm(
                self.flavour,
                m,
                a,
                lda,
                b,
                &self.bias[g * opg..],
                self.activation,
                &mut output[g * opg..],
                s.out_channels,
                threads,
            )?;
        }
        Ok(())
    }
}

/// Writes group `g`'s column matrix: row `(b, oy, ox)`, columns `(ky, kx, i)`.
fn fill_columns(
    spec: &ConvSpec,
    input: &[f32],
    ind: Dims,
    out: Dims,
    g: usize,
    cols: &mut [f32],
    threads: usize,
) {
    let (ipg, kh, kw) = (spec.in_per_group(), spec.kernel_h, spec.kernel_w);
    let k = kh * kw * ipg;
    let row = |r: usize, dst: &mut [f32]| {
        let (b, oy, ox) = (r / (out.h * out.w), r / out.w % out.h, r % out.w);
        for ky in 0..kh {
            let iy = (oy * spec.stride_h + ky * spec.dilation_h)
                .checked_sub(spec.padding.top)
                .filter(|&y| y < ind.h);
            for kx in 0..kw {
                let ix = (ox * spec.stride_w + kx * spec.dilation_w)
                    .checked_sub(spec.padding.left)
                    .filter(|&x| x < ind.w);
                let d = &mut dst[(ky * kw + kx) * ipg..][..ipg];
                match (iy, ix) {
                    (Some(iy), Some(ix)) => {
                        let src = ((b * ind.h + iy) * ind.w + ix) * ind.c + g * ipg;
                        d.copy_from_slice(&input[src..src + ipg]);
                    }
                    _ => d.fill(0.0),
                }
            }
        }
    };
    if threads <= 1 {
        for (r, dst) in cols.chunks_exact_mut(k).enumerate() {
            row(r, dst);
        }
    } else {
        use rayon::prelude::*;
        let rows_per_task = (cols.len() / k).div_ceil(threads * 4).max(1);
        cols.par_chunks_mut(k * rows_per_task).enumerate().for_each(|(t, chunk)| {
            for (r, dst) in chunk.chunks_exact_mut(k).enumerate() {
                row(t * rows_per_task + r, dst);
            }
        });
    }
}
