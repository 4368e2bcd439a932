//! `gemm-<flavour>`: a pointwise (1x1, stride 1) convolution or a fully connected layer as
//! one SGEMM on NHWC data: `[N*H*W, Cin] x [Cin, Cout]`, weights packed at prepare.

use super::{sgemm, Flavour, PackedB};
use crate::algo::{bias_or_zeros, check_prepare, check_run, ConvAlgorithm, PreparedConv};
use crate::error::Result;
use crate::isa::Isa;
use crate::spec::{Activation, ConvSpec, Dims};

/// The pointwise GEMM backend for one microkernel flavour (registered once per flavour).
pub struct Gemm {
    /// `gemm-<flavour>`.
    pub name: &'static str,
    pub flavour: &'static Flavour,
}

struct GemmPrepared {
    spec: ConvSpec,
    name: &'static str,
    flavour: &'static Flavour,
    activation: Activation,
    b: PackedB,
    bias: Vec<f32>,
}

impl ConvAlgorithm for Gemm {
    fn name(&self) -> &'static str {
        self.name
    }
    fn family(&self) -> &'static str {
        "gemm"
    }
    fn flavour(&self) -> &'static str {
        self.flavour.name
    }
    fn isa(&self) -> Isa {
        self.flavour.isa
    }
    fn supports(&self, spec: &ConvSpec) -> bool {
        self.flavour.available() && spec.validate().is_ok() && spec.is_pointwise()
    }
    fn prepare(
        &self,
        spec: &ConvSpec,
        weights_oihw: &[f32],
        bias: Option<&[f32]>,
        activation: Activation,
    ) -> Result<Box<dyn PreparedConv>> {
        check_prepare(self, spec, weights_oihw, bias, activation)?;
        let cin = spec.in_channels;
        // OIHW of a 1x1 conv is [Cout][Cin]: B[p][j] = w[j][p].
        let b = PackedB::new(cin, spec.out_channels, self.flavour.nr_for(cin, spec.out_channels), |p, j| {
            weights_oihw[j * cin + p]
        })?;
        Ok(Box::new(GemmPrepared {
            spec: *spec,
            name: self.name,
            flavour: self.flavour,
            activation,
            b,
            bias: bias_or_zeros(spec, bias),
        }))
    }
}

impl PreparedConv for GemmPrepared {
    fn spec(&self) -> &ConvSpec {
        &self.spec
    }
    fn algorithm(&self) -> &'static str {
        self.name
    }
    fn run(
        &self,
        input: &[f32],
        in_dims: Dims,
        output: &mut [f32],
        scratch: &mut [f32],
        threads: usize,
    ) -> Result<()> {
        let out = check_run(&self.spec, input, in_dims, output, scratch, 0)?;
        let m = out.n * out.h * out.w;
        sgemm(
            self.flavour,
            m,
            input,
            self.spec.in_channels,
            &self.b,
            &self.bias,
            self.activation,
            output,
            self.spec.out_channels,
            threads,
        )
    }
}
