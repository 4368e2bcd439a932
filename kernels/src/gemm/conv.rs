//! `gemm-<backend>`: a pointwise (1x1, stride 1) convolution or a fully connected layer as
//! one SGEMM on NHWC data: `[N*H*W, Cin] x [Cin, Cout]`, weights packed at prepare.

use half::{bf16, f16};

use super::driver::{acc_len, gemm_io, GemmIo};
use super::{nr_for, tiles, PackedB, Tile};
use crate::algo::{
    bias_or_zeros, per_backend, rounded, spec_and_name, ConvAlgorithm, Layer, PreparedConv, Run, Storage,
};
use crate::error::{KernelError, Result};
use crate::isa::Isa;
use crate::pool::Par;
use crate::precision::Precision;
use crate::simd::{Backend, ConvertOp, Element};
use crate::spec::{Activation, ConvSpec, Dims};

#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
use super::avx512_bf16::{PackedPairs, PairsGemm};

/// The pointwise GEMM algorithm on one backend (registered once per backend).
pub struct Gemm {
    /// `gemm-<backend>`.
    pub name: &'static str,
    pub backend: Backend,
}

struct GemmPrepared {
    spec: ConvSpec,
    name: &'static str,
    backend: Backend,
    /// The backend's tiles at the level it ran at when prepared (a token existed then).
    tiles: &'static [Tile],
    level: Isa,
    activation: Activation,
    b: PackedB,
    bias: Vec<f32>,
}

impl ConvAlgorithm for Gemm {
    per_backend!(Gemm);
    fn supports(&self, spec: &ConvSpec) -> bool {
        self.backend.available() && spec.validate().is_ok() && spec.is_pointwise()
    }
    fn prepare_checked(&self, layer: &Layer<'_>) -> Result<Box<dyn PreparedConv>> {
        Ok(Box::new(self.pack(layer, Precision::F32)?))
    }
}

/// The native path of `gemm` at f16 (and any float type without instructions of its own):
/// f32 panels with weights rounded to the type, activations loaded and stored as it.
pub(crate) fn native_float<E: Element + Storage>(
    algo: &dyn ConvAlgorithm,
    layer: &Layer<'_>,
    _: &(),
) -> Result<Option<Box<dyn PreparedConv<E>>>> {
    let gemm = Gemm { name: algo.name(), backend: algo.backend() };
    Ok(Some(Box::new(gemm.pack(layer, E::PRECISION)?)))
}

/// The native path of `gemm` at bf16: the `vdpbf16ps` / AMX path where the CPU has it
/// ([`Gemm::prepare_bf16_dot`]), else [`native_float`].
pub(crate) fn native_bf16(
    algo: &dyn ConvAlgorithm,
    layer: &Layer<'_>,
    quant: &(),
) -> Result<Option<Box<dyn PreparedConv<bf16>>>> {
    #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
    if let Some(native) = (Gemm { name: algo.name(), backend: algo.backend() }).prepare_bf16_dot(layer)? {
        return Ok(Some(native));
    }
    native_float(algo, layer, quant)
}

/// The native path of `gemm` at f16: AMX-FP16 tiles where the CPU has them
/// ([`Gemm::prepare_f16_amx`]), else [`native_float`].
pub(crate) fn native_f16(
    algo: &dyn ConvAlgorithm,
    layer: &Layer<'_>,
    quant: &(),
) -> Result<Option<Box<dyn PreparedConv<f16>>>> {
    #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
    if let Some(native) = (Gemm { name: algo.name(), backend: algo.backend() }).prepare_f16_amx(layer)? {
        return Ok(Some(native));
    }
    native_float(algo, layer, quant)
}

impl Gemm {
    /// Packs the layer (checked by `prepare` or `algo::prepare`) for f32 microkernels, with
    /// weights and bias rounded to `precision` (the storage type of the model; the packed
    /// values stay f32).
    fn pack(&self, layer: &Layer<'_>, precision: Precision) -> Result<GemmPrepared> {
        let Layer { spec, weights_oihw, bias, activation } = *layer;
        let (tiles, level) = (tiles(self.backend)?, self.backend.shape()?.level);
        let cin = spec.in_channels;
        // OIHW of a 1x1 conv is [Cout][Cin]: B[p][j] = w[j][p].
        let b = PackedB::new(cin, spec.out_channels, nr_for(tiles, cin, spec.out_channels), |p, j| {
            precision.round(weights_oihw[j * cin + p])
        })?;
        Ok(GemmPrepared {
            spec: *spec,
            name: self.name,
            backend: self.backend,
            tiles,
            level,
            activation,
            b,
            bias: rounded(precision, &bias_or_zeros(spec, bias)),
        })
    }
}

impl Gemm {
    /// The native bf16 path: `gemm-avx512` on a CPU with AVX512_BF16 (and a ceiling that
    /// allows it) packs the weights in bf16 pairs for `vdpbf16ps`.
    #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
    fn prepare_bf16_dot(&self, layer: &Layer<'_>) -> Result<Option<Box<dyn PreparedConv<bf16>>>> {
        let Layer { spec, weights_oihw, .. } = *layer;
        use super::avx512_bf16::{dot_vs_fma, DOT_MAX_ROWS_WHEN_SLOWER};
        if self.backend != Backend::Avx512 || !crate::isa::available(Isa::Avx512Bf16) {
            return Ok(None);
        }
        // SAFETY: AVX512_BF16 is available (checked above).
        let ratio = unsafe { dot_vs_fma() };
        if ratio == 0.0 {
            return Ok(None);
        }
        let fma = self.pack(layer, Precision::Bf16)?;
        let cin = spec.in_channels;
        // The pairs take the f32 panels' bias, already rounded to bf16.
        let b = PackedPairs::new(cin, spec.out_channels, &fma.bias, |p, j| weights_oihw[j * cin + p])?;
        // Where the pairs are slower per FLOP, keep the f32 panels for compute-bound calls.
        let max_rows = if ratio >= 1.0 { usize::MAX } else { DOT_MAX_ROWS_WHEN_SLOWER };
        let amx = crate::isa::available(Isa::Amx) && super::amx_bf16::fits(cin, spec.out_channels);
        let level = if amx { Isa::Amx } else { Isa::Avx512Bf16 };
        Ok(Some(Box::new(Bf16Dot {
            name: self.name,
            clamp: crate::simd::Clamp::of(layer.activation),
            b,
            fma,
            max_rows,
            amx,
            level,
        })))
    }
}

impl Gemm {
    /// The native f16 path: `gemm-avx512` on a CPU with AMX-FP16 (and the ceiling `amx`)
    /// packs the weights in f16 pairs for `tdpfp16ps`, for every shape the tiles fit (K a
    /// multiple of 32: every MobileNetV1 pointwise layer and the FC layer).
    #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
    fn prepare_f16_amx(&self, layer: &Layer<'_>) -> Result<Option<Box<dyn PreparedConv<f16>>>> {
        let Layer { spec, weights_oihw, bias, activation } = *layer;
        let (cin, cout) = (spec.in_channels, spec.out_channels);
        if self.backend != Backend::Avx512 || !crate::isa::amx_fp16() || !super::amx_bf16::fits(cin, cout) {
            return Ok(None);
        }
        let bias = rounded(Precision::F16, &bias_or_zeros(spec, bias));
        let b = PackedPairs::new(cin, cout, &bias, |p, j| weights_oihw[j * cin + p])?;
        Ok(Some(Box::new(F16Amx {
            spec: *spec,
            name: self.name,
            clamp: crate::simd::Clamp::of(activation),
            b,
        })))
    }
}

/// An f16 pointwise layer on AMX-FP16 tiles (`amx_bf16.rs`, the bf16 tiles' code with
/// `tdpfp16ps`): f32 accumulation, one rounding to f16 per output.
#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
struct F16Amx {
    spec: ConvSpec,
    name: &'static str,
    clamp: crate::simd::Clamp,
    b: PackedPairs<f16>,
}

#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
impl PreparedConv<f16> for F16Amx {
    spec_and_name!(spec);
    fn level(&self) -> Isa {
        Isa::Amx
    }
    fn scratch_len(&self, input: Dims) -> Result<usize> {
        // The AMX tail block: 32 rows of K f16s, in f32s.
        Ok(super::amx_bf16::tail_len(input.n * input.h * input.w, self.spec.in_channels)?.div_ceil(2))
    }
    fn run_checked(&self, run: Run<'_, f16>) -> Result<()> {
        let m = run.pixels();
        let Run { input, output, scratch, par, .. } = run;
        let (lda, ldc) = (self.spec.in_channels, self.spec.out_channels);
        let g = PairsGemm { m, a: input, lda, b: &self.b, clamp: self.clamp, c: output, ldc };
        let tail = crate::tensor::scratch_as::<f16>(scratch);
        // SAFETY: prepared only where `isa::amx_fp16()` and the shape fits; `Run` holds
        // checked buffers and the scratch of `scratch_len`.
        unsafe { super::amx_bf16::gemm(g, tail, par) };
        Ok(())
    }
}

/// A bf16 pointwise layer on the bf16 instructions: AMX tiles where the CPU has them
/// (`amx_bf16.rs`), else `vdpbf16ps` pairs (`avx512_bf16.rs`), or the f32-panel path when
/// that is more than `max_rows` rows.
#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
struct Bf16Dot {
    name: &'static str,
    clamp: crate::simd::Clamp,
    b: PackedPairs,
    fma: GemmPrepared,
    max_rows: usize,
    amx: bool,
    level: Isa,
}

#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
impl Bf16Dot {
    /// The pairs GEMM of `m` rows of `a` into `c` (whole rows of the layer's K and N).
    fn pairs<'a>(&'a self, m: usize, a: &'a [bf16], c: &'a mut [bf16]) -> PairsGemm<'a> {
        let (lda, ldc) = (self.fma.spec.in_channels, self.fma.spec.out_channels);
        PairsGemm { m, a, lda, b: &self.b, clamp: self.clamp, c, ldc }
    }
}

#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
impl PreparedConv<bf16> for Bf16Dot {
    spec_and_name!(fma.spec);
    fn level(&self) -> Isa {
        self.level
    }
    fn scratch_len(&self, input: Dims) -> Result<usize> {
        if self.amx {
            // The AMX tail block: 32 rows of K bf16s, in f32s.
            Ok(super::amx_bf16::tail_len(input.n * input.h * input.w, self.fma.spec.in_channels)?.div_ceil(2))
        } else {
            PreparedConv::<bf16>::scratch_len(&self.fma, input)
        }
    }
    fn run_checked(&self, run: Run<'_, bf16>) -> Result<()> {
        let m = run.pixels();
        let Run { input, output, scratch, par, .. } = run;
        if self.amx {
            let tail = crate::tensor::scratch_as::<bf16>(scratch);
            // SAFETY: `amx` is set only where `isa::available(Isa::Amx)` and the shape fits;
            // `Run` holds checked buffers and the scratch of `scratch_len`.
            unsafe { super::amx_bf16::gemm(self.pairs(m, input, output), tail, par) };
            Ok(())
        } else if m > self.max_rows {
            self.fma.gemm_rows(m, input, output, scratch, par)
        } else {
            // SAFETY: prepared only where `isa::available(Isa::Avx512Bf16)`.
            unsafe { super::avx512_bf16::gemm(self.pairs(m, input, output), par) }
        }
    }
}

impl<E: Element + Storage> PreparedConv<E> for GemmPrepared {
    spec_and_name!(spec);
    fn level(&self) -> Isa {
        self.level
    }
    fn scratch_len(&self, input: Dims) -> Result<usize> {
        let out = self.spec.output_dims(input)?;
        acc_len::<E>(out.n * out.h * out.w, &self.b)
    }
    fn run_checked(&self, run: Run<'_, E>) -> Result<()> {
        self.gemm_rows(run.pixels(), run.input, run.output, run.scratch, run.par)
    }
}

impl GemmPrepared {
    /// The GEMM of `m` rows of `input` into `output` (checked by [`gemm_io`]).
    fn gemm_rows<E: Element + Storage>(
        &self,
        m: usize,
        input: &[E],
        output: &mut [E],
        scratch: &mut [f32],
        par: Par<'_>,
    ) -> Result<()> {
        let tile = super::choose_tile(self.tiles, m, self.b.nr()).ok_or(KernelError::ShapeMismatch {
            what: "packed B panel width",
            expected: format!("an NR of {}", self.name),
            actual: format!("NR = {}", self.b.nr()),
        })?;
        let io = GemmIo {
            a: input,
            lda: self.spec.in_channels,
            c: output,
            ldc: self.spec.out_channels,
            acc: scratch,
            convert: self.backend.dispatch(ConvertOp::new())?,
        };
        // SAFETY: `tiles` came from a token of this backend at prepare, so the CPU has
        // their level.
        unsafe { gemm_io(tile, m, io, &self.b, &self.bias, self.activation, par) }
    }
}
