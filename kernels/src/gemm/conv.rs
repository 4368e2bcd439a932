//! `gemm-<backend>`: a pointwise (1x1, stride 1) convolution or a fully connected layer as
//! one SGEMM on NHWC data: `[N*H*W, Cin] x [Cin, Cout]`, weights packed at prepare.

use half::bf16;

use super::{nr_for, sgemm_tile, tiles, Operands, PackedB, Tile};
use crate::algo::{bias_or_zeros, check_prepare, check_run, widened, ConvAlgorithm, PreparedConv};
use crate::error::{KernelError, Result};
use crate::isa::Isa;
use crate::simd::{Backend, Clamp};
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
    fn prepare_bf16(
        &self,
        spec: &ConvSpec,
        weights_oihw: &[f32],
        bias: Option<&[f32]>,
        activation: Activation,
    ) -> Result<Box<dyn PreparedConv<bf16>>> {
        #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
        if let Some(native) = self.prepare_bf16_dot(spec, weights_oihw, bias, activation)? {
            return Ok(native);
        }
        widened(self, spec, weights_oihw, bias, activation)
    }
}

impl Gemm {
    /// The native bf16 path: `gemm-avx512` on a CPU with AVX512_BF16 (and a ceiling that
    /// allows it) packs the weights in bf16 pairs for `vdpbf16ps`.
    #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
    fn prepare_bf16_dot(
        &self,
        spec: &ConvSpec,
        weights_oihw: &[f32],
        bias: Option<&[f32]>,
        activation: Activation,
    ) -> Result<Option<Box<dyn PreparedConv<bf16>>>> {
        if self.backend != Backend::Avx512 || !crate::isa::available(Isa::Avx512Bf16) {
            return Ok(None);
        }
        check_prepare(self, spec, weights_oihw, bias, activation)?;
        let bias = crate::algo::rounded(crate::Precision::Bf16, &bias_or_zeros(spec, bias));
        let cin = spec.in_channels;
        let b = super::avx512_bf16::PackedPairs::new(cin, spec.out_channels, &bias, |p, j| {
            weights_oihw[j * cin + p]
        })?;
        Ok(Some(Box::new(Bf16Dot { spec: *spec, name: self.name, clamp: Clamp::of(activation), b })))
    }
}

/// A pointwise layer on `vdpbf16ps` (see `avx512_bf16.rs`).
#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
struct Bf16Dot {
    spec: ConvSpec,
    name: &'static str,
    clamp: Clamp,
    b: super::avx512_bf16::PackedPairs,
}

#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
impl PreparedConv<bf16> for Bf16Dot {
    fn spec(&self) -> &ConvSpec {
        &self.spec
    }
    fn algorithm(&self) -> &'static str {
        self.name
    }
    fn level(&self) -> Isa {
        Isa::Avx512Bf16
    }
    fn run(
        &self,
        input: &[bf16],
        in_dims: Dims,
        output: &mut [bf16],
        scratch: &mut [f32],
        threads: usize,
    ) -> Result<()> {
        let out = check_run(&self.spec, input, in_dims, output, scratch, 0)?;
        let m = out.n * out.h * out.w;
        let (k, n) = (self.spec.in_channels, self.spec.out_channels);
        // SAFETY: prepared only where `isa::available(Isa::Avx512Bf16)`.
        unsafe { super::avx512_bf16::gemm(m, input, k, &self.b, self.clamp, output, n, threads) }
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
