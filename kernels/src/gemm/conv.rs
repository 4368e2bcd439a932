//! `gemm-<backend>`: a pointwise (1x1, stride 1) convolution or a fully connected layer as
//! one SGEMM on NHWC data: `[N*H*W, Cin] x [Cin, Cout]`, weights packed at prepare.

use super::{nr_for, sgemm_tile, tiles, Operands, PackedB, Tile};
use crate::algo::{bias_or_zeros, check_prepare, check_run, ConvAlgorithm, PreparedConv};
use crate::error::{KernelError, Result};
use crate::isa::Isa;
use crate::simd::Backend;
use crate::spec::{Activation, ConvSpec, Dims};

/// The pointwise GEMM algorithm on one backend (registered once per backend).
pub struct Gemm {
    /// `gemm-<backend>`.
    pub name: &'static str,
    pub backend: Backend,
}

struct GemmPrepared {
    spec: ConvSpec,
    name: &'static str,
    /// The backend's tiles at the level it ran at when prepared (a token existed then).
    tiles: &'static [Tile],
    level: Isa,
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
    fn backend(&self) -> Backend {
        self.backend
    }
    fn supports(&self, spec: &ConvSpec) -> bool {
        self.backend.available() && spec.validate().is_ok() && spec.is_pointwise()
    }
    fn prepare(
        &self,
        spec: &ConvSpec,
        weights_oihw: &[f32],
        bias: Option<&[f32]>,
        activation: Activation,
    ) -> Result<Box<dyn PreparedConv>> {
        check_prepare(self, spec, weights_oihw, bias, activation)?;
        let (tiles, level) = (tiles(self.backend)?, self.backend.shape()?.level);
        let cin = spec.in_channels;
        // OIHW of a 1x1 conv is [Cout][Cin]: B[p][j] = w[j][p].
        let b = PackedB::new(cin, spec.out_channels, nr_for(tiles, cin, spec.out_channels), |p, j| {
            weights_oihw[j * cin + p]
        })?;
        Ok(Box::new(GemmPrepared {
            spec: *spec,
            name: self.name,
            tiles,
            level,
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
    fn level(&self) -> Isa {
        self.level
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
        let tile = super::choose_tile(self.tiles, m, self.b.nr()).ok_or(KernelError::ShapeMismatch {
            what: "packed B panel width",
            expected: format!("an NR of {}", self.name),
            actual: format!("NR = {}", self.b.nr()),
        })?;
        let ops = Operands {
            a: input,
            lda: self.spec.in_channels,
            b: &self.b,
            bias: &self.bias,
            activation: self.activation,
            ldc: self.spec.out_channels,
        };
        // SAFETY: `tiles` came from a token of this backend at prepare, so the CPU has
        // their level.
        unsafe { sgemm_tile(tile, m, &ops, output, threads) }
    }
}
