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
use super::avx512_bf16::{Half, PackedPairs, PairsGemm};

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

/// The native path of `gemm` at a 16-bit float type: its own dot-product instructions where
/// the CPU has them ([`HalfPath::prepare_dot`]), else [`native_float`].
pub(crate) fn native_half<E: HalfPath>(
    algo: &dyn ConvAlgorithm,
    layer: &Layer<'_>,
    quant: &(),
) -> Result<Option<Box<dyn PreparedConv<E>>>> {
    #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
    if let Some(native) = E::prepare_dot(&Gemm { name: algo.name(), backend: algo.backend() }, layer)? {
        return Ok(Some(native));
    }
    native_float(algo, layer, quant)
}

/// A 16-bit float type with pointwise instructions of its own (an empty trait in a build
/// without AVX-512).
pub(crate) trait HalfPath: Element + Storage {
    /// The layer on this type's dot-product instructions, or `None` where the CPU, the
    /// ceiling or the shape rules them out.
    #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
    fn prepare_dot(gemm: &Gemm, layer: &Layer<'_>) -> Result<Option<Box<dyn PreparedConv<Self>>>>;
}

impl HalfPath for bf16 {
    /// AMX tiles where the CPU has them, else `vdpbf16ps` pairs ([`Bf16Pairs`]), on
    /// `gemm-avx512` with AVX512_BF16 under the ceiling; `KERNELS_BF16_DOT=0` turns both off.
    #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
    fn prepare_dot(gemm: &Gemm, layer: &Layer<'_>) -> Result<Option<Box<dyn PreparedConv<Self>>>> {
        use super::avx512_bf16::{dot_vs_fma, DOT_MAX_ROWS_WHEN_SLOWER};
        if gemm.backend != Backend::Avx512 || !crate::isa::available(Isa::Avx512Bf16) {
            return Ok(None);
        }
        // SAFETY: AVX512_BF16 is available (checked above).
        let ratio = unsafe { dot_vs_fma() };
        if ratio == 0.0 {
            return Ok(None);
        }
        let spec = layer.spec;
        if crate::isa::available(Isa::Amx) && super::amx_bf16::fits(spec.in_channels, spec.out_channels) {
            return Ok(Some(Box::new(AmxPairs::<bf16>::new(gemm, layer)?)));
        }
        let fma = gemm.pack(layer, Precision::Bf16)?;
        let cin = spec.in_channels;
        // The pairs take the f32 panels' bias, already rounded to bf16.
        let b = PackedPairs::new(cin, spec.out_channels, &fma.bias, |p, j| layer.weights_oihw[j * cin + p])?;
        // Where the pairs are slower per FLOP, keep the f32 panels for compute-bound calls.
        let max_rows = if ratio >= 1.0 { usize::MAX } else { DOT_MAX_ROWS_WHEN_SLOWER };
        Ok(Some(Box::new(Bf16Pairs { clamp: crate::simd::Clamp::of(layer.activation), b, fma, max_rows })))
    }
}

impl HalfPath for f16 {
    /// AMX-FP16 tiles (`tdpfp16ps`) on `gemm-avx512` under the ceiling `amx`, for every
    /// shape the tiles fit (K a multiple of 32: every MobileNetV1 pointwise layer and the FC
    /// layer). AVX-512 has no f16 pair dot product, so there is no middle path.
    #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
    fn prepare_dot(gemm: &Gemm, layer: &Layer<'_>) -> Result<Option<Box<dyn PreparedConv<Self>>>> {
        let spec = layer.spec;
        if gemm.backend != Backend::Avx512
            || !crate::isa::amx_fp16()
            || !super::amx_bf16::fits(spec.in_channels, spec.out_channels)
        {
            return Ok(None);
        }
        Ok(Some(Box::new(AmxPairs::<f16>::new(gemm, layer)?)))
    }
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

/// A 16-bit pointwise layer on AMX tiles (`amx_bf16.rs`: `tdpbf16ps` for bf16, `tdpfp16ps`
/// for f16): f32 accumulation, one rounding per output.
#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
struct AmxPairs<T: Half> {
    spec: ConvSpec,
    name: &'static str,
    clamp: crate::simd::Clamp,
    b: PackedPairs<T>,
}

#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
impl<T: Half> AmxPairs<T> {
    /// Packs the layer's weights in pairs of `T`, bias rounded to `T`.
    fn new(gemm: &Gemm, layer: &Layer<'_>) -> Result<Self>
    where
        T: Storage,
    {
        let Layer { spec, weights_oihw, bias, activation } = *layer;
        let (cin, cout) = (spec.in_channels, spec.out_channels);
        let bias = rounded(T::PRECISION, &bias_or_zeros(spec, bias));
        let b = PackedPairs::new(cin, cout, &bias, |p, j| weights_oihw[j * cin + p])?;
        Ok(AmxPairs { spec: *spec, name: gemm.name, clamp: crate::simd::Clamp::of(activation), b })
    }
}

#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
impl<T: Half + Storage> PreparedConv<T> for AmxPairs<T> {
    spec_and_name!(spec);
    fn level(&self) -> Isa {
        Isa::Amx
    }
    fn scratch_len(&self, input: Dims) -> Result<usize> {
        // The AMX tail block: 32 rows of K 16-bit values, in f32s.
        Ok(super::amx_bf16::tail_len(input.n * input.h * input.w, self.spec.in_channels)?.div_ceil(2))
    }
    fn run_checked(&self, run: Run<'_, T>) -> Result<()> {
        let m = run.pixels();
        let Run { input, output, scratch, par, .. } = run;
        let (lda, ldc) = (self.spec.in_channels, self.spec.out_channels);
        let g = PairsGemm { m, a: input, lda, b: &self.b, clamp: self.clamp, c: output, ldc };
        let tail = crate::tensor::scratch_as::<T>(scratch);
        // SAFETY: prepared only where the CPU runs `T`'s tiles under the ceiling
        // (`HalfPath::prepare_dot`) and the shape fits; `Run` holds checked buffers and the
        // scratch of `scratch_len`.
        unsafe { super::amx_bf16::gemm(g, tail, par) };
        Ok(())
    }
}

/// A bf16 pointwise layer on `vdpbf16ps` pairs (`avx512_bf16.rs`), or on the f32 panels when
/// the call has more than `max_rows` rows (CPUs where the pairs are slower per FLOP).
#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
struct Bf16Pairs {
    clamp: crate::simd::Clamp,
    b: PackedPairs,
    fma: GemmPrepared,
    max_rows: usize,
}

#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
impl PreparedConv<bf16> for Bf16Pairs {
    fn spec(&self) -> &ConvSpec {
        &self.fma.spec
    }
    fn algorithm(&self) -> &'static str {
        self.fma.name
    }
    fn level(&self) -> Isa {
        Isa::Avx512Bf16
    }
    fn scratch_len(&self, input: Dims) -> Result<usize> {
        PreparedConv::<bf16>::scratch_len(&self.fma, input)
    }
    fn run_checked(&self, run: Run<'_, bf16>) -> Result<()> {
        let m = run.pixels();
        let Run { input, output, scratch, par, .. } = run;
        if m > self.max_rows {
            return self.fma.gemm_rows(m, input, output, scratch, par);
        }
        let (lda, ldc) = (self.fma.spec.in_channels, self.fma.spec.out_channels);
        let g = PairsGemm { m, a: input, lda, b: &self.b, clamp: self.clamp, c: output, ldc };
        // SAFETY: prepared only where `isa::available(Isa::Avx512Bf16)`.
        unsafe { super::avx512_bf16::gemm(g, par) }
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
