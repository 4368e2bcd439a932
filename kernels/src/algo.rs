//! The algorithm interface: prepare once (pack weights), run many times without allocating.

use std::fmt;
use std::marker::PhantomData;

use crate::error::{KernelError, Result};
use crate::isa::Isa;
use crate::pool::Par;
use crate::precision::Precision;
use crate::simd::{Backend, Convert, ConvertOp, Element, Simd, SimdOp};
use crate::spec::{Activation, ConvSpec, Dims};
use crate::tensor::Plain;

/// The layer kinds of a depthwise-separable network; a [`crate::KernelSet`] picks one
/// algorithm for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerKind {
    /// A dense (`groups = 1`) convolution with a kernel larger than 1x1 (MobileNetV1's conv0).
    Dense,
    /// A depthwise convolution (`groups = in = out`).
    Depthwise,
    /// A 1x1 stride-1 dense convolution.
    Pointwise,
    /// A fully connected layer, run as a 1x1 convolution on a 1x1 image.
    FullyConnected,
}

impl LayerKind {
    pub const ALL: [LayerKind; 4] =
        [LayerKind::Dense, LayerKind::Depthwise, LayerKind::Pointwise, LayerKind::FullyConnected];

    /// The kind of a convolution spec (never `FullyConnected`, which callers name explicitly).
    pub fn of(spec: &ConvSpec) -> LayerKind {
        if spec.is_pointwise() {
            LayerKind::Pointwise
        } else if spec.is_depthwise() && spec.groups > 1 {
            LayerKind::Depthwise
        } else {
            LayerKind::Dense
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LayerKind::Dense => "dense",
            LayerKind::Depthwise => "depthwise",
            LayerKind::Pointwise => "pointwise",
            LayerKind::FullyConnected => "fc",
        }
    }
}

impl fmt::Display for LayerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An algorithm family: one folder of this crate, one body, registered once per backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Naive,
    Gemm,
    Im2col,
    Direct,
    Winograd,
}

impl Family {
    pub const ALL: [Family; 5] =
        [Family::Naive, Family::Gemm, Family::Im2col, Family::Direct, Family::Winograd];

    /// The name in algorithm names (`direct-avx2`), bench ids and reports.
    pub fn name(self) -> &'static str {
        match self {
            Family::Naive => "naive",
            Family::Gemm => "gemm",
            Family::Im2col => "im2col",
            Family::Direct => "direct",
            Family::Winograd => "winograd",
        }
    }

    /// Parses a family name.
    pub fn parse(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One convolution algorithm for one ISA (for example `direct-avx512`). Algorithms are
/// unit structs registered once in [`crate::registry`].
///
/// An algorithm is an f32 layer ([`prepare`](Self::prepare)); the other storage types reach
/// it through the one generic entry [`prepare`](crate::algo::prepare)`::<E>`, which takes the
/// family's native path at `E` where [`Storage::NATIVE`] lists one.
pub trait ConvAlgorithm: Send + Sync {
    /// `family-isa`, the name used by kernel sets, bench ids and reports.
    fn name(&self) -> &'static str;
    /// The algorithm family.
    fn family(&self) -> Family;
    /// The implementation of [`crate::simd::Simd`] its body runs under (a row of the
    /// backend table; the naive oracle is `scalar`).
    fn backend(&self) -> Backend;
    /// The flavour in kernel-set names: the backend's name (`avx2`, `pulp`, ...).
    fn flavour(&self) -> &'static str {
        self.backend().name()
    }
    /// The lowest ISA level this algorithm needs the CPU (and `KERNELS_ISA`) to allow.
    fn isa(&self) -> Isa {
        self.backend().isa()
    }
    /// The largest error against the naive oracle this algorithm promises, relative to
    /// `|bias| + sum |w| |x|` of each output (see [`crate::testing`]). Direct and GEMM
    /// algorithms only reorder an f32 sum: `1e-5` holds up to K = 4,608 taps with margin.
    fn tolerance(&self) -> f64 {
        1e-5
    }
    /// Whether this algorithm can run `spec` on this CPU.
    fn supports(&self, spec: &ConvSpec) -> bool;
    /// Packs OIHW `weights` (and optional `bias`) for `spec` as an f32 layer; the result
    /// runs many times. The arguments are checked first ([`check_prepare`]), then the
    /// family packs them ([`prepare_checked`](Self::prepare_checked)).
    fn prepare(
        &self,
        spec: &ConvSpec,
        weights_oihw: &[f32],
        bias: Option<&[f32]>,
        activation: Activation,
    ) -> Result<Box<dyn PreparedConv>> {
        check_prepare(self, spec, weights_oihw, bias, activation)?;
        self.prepare_checked(&Layer::new(spec, weights_oihw, bias, activation))
    }
    /// What each family writes of [`prepare`](Self::prepare): the packing of a layer that
    /// [`check_prepare`] accepted. Called directly it skips those checks; that stays sound
    /// (packing indexes slices, and every kernel's ISA is proven by its backend's token),
    /// but a wrong length panics instead of returning an error.
    fn prepare_checked(&self, layer: &Layer<'_>) -> Result<Box<dyn PreparedConv>>;
    /// Whether a prepared depthwise layer of this algorithm can run row bands
    /// ([`PreparedConv::run_rows`]), so that a plan may fuse it with the next layer.
    fn runs_rows(&self) -> bool {
        false
    }
    /// The Winograd output tile side `m` of F(m x m, 3 x 3), for the Winograd family.
    fn winograd_tile(&self) -> Option<usize> {
        None
    }
}

/// The [`ConvAlgorithm`] methods of a family registered once per backend, a struct of
/// `name` and `backend` (`direct`, `gemm`, `im2col`, `winograd`): inside its impl,
/// `per_backend!(Direct);` names it, its family and its backend.
macro_rules! per_backend {
    ($family:ident) => {
        fn name(&self) -> &'static str {
            self.name
        }
        fn family(&self) -> $crate::algo::Family {
            $crate::algo::Family::$family
        }
        fn backend(&self) -> $crate::simd::Backend {
            self.backend
        }
    };
}
pub(crate) use per_backend;

/// The [`PreparedConv`] accessors of a layer that holds its spec (at the field path given)
/// and its algorithm's name (`name`): `spec_and_name!(q.spec);` inside its impl.
macro_rules! spec_and_name {
    ($($spec:ident).+) => {
        fn spec(&self) -> &$crate::spec::ConvSpec {
            &self.$($spec).+
        }
        fn algorithm(&self) -> &'static str {
            self.name
        }
    };
}
pub(crate) use spec_and_name;

/// One layer as it arrives to be prepared: the spec, the weights in PyTorch's OIHW order,
/// the optional bias (f32: the reference values every storage type starts from) and the
/// fused activation.
#[derive(Debug, Clone, Copy)]
pub struct Layer<'a> {
    pub spec: &'a ConvSpec,
    pub weights_oihw: &'a [f32],
    pub bias: Option<&'a [f32]>,
    pub activation: Activation,
}

impl<'a> Layer<'a> {
    pub fn new(
        spec: &'a ConvSpec,
        weights_oihw: &'a [f32],
        bias: Option<&'a [f32]>,
        activation: Activation,
    ) -> Self {
        Layer { spec, weights_oihw, bias, activation }
    }
}

/// A family's native path at storage type `E`: `Ok(None)` where it cannot run here (the
/// layer then takes the emulated path).
pub type NativeFn<E> =
    fn(&dyn ConvAlgorithm, &Layer<'_>, &<E as Storage>::Quant) -> Result<Option<Box<dyn PreparedConv<E>>>>;

/// The storage axis: a number type a layer's activations are stored in.
///
/// A storage type is one implementation of this trait plus one row of [`Precision`]:
/// - the float types `f32`, `f16`, `bf16` ([`Element`]: widened to f32 lanes on load,
///   narrowed on store; `crate::float` implements them) carry no parameters (`Quant = ()`);
/// - `u8`, the int8 activations of [`crate::int8`], carries per-tensor scales and zero
///   points and per-output-channel weight scales ([`crate::int8::QuantLayer`]); its layers
///   accumulate in i32 and requantize in their store.
///
/// What a storage type declares:
/// - [`Storage::NATIVE`]: the families that have a native path at this type (the kernel
///   reads and writes the type itself), each as one function;
/// - [`Storage::emulated`]: the path of every other algorithm: its f32 layer between a
///   conversion of the input to f32 and one of the output back ([`widened`] for the floats,
///   dequantize / quantize for int8). f32's emulated path *is* the algorithm's `prepare`.
pub trait Storage: Plain + PartialEq + fmt::Debug + Send + Sync {
    /// The row of [`Precision`] this type stores.
    const PRECISION: Precision;
    /// What a layer at this type needs besides its f32 weights: `()` for the float types,
    /// the input's and output's quantization and the weight scales for int8.
    type Quant: Clone + fmt::Debug + Send + Sync;
    /// What one activation tensor at this type needs to mean numbers: `()` for the float
    /// types, a scale and a zero point ([`crate::int8::QuantParams`]) for int8.
    type Tensor: Copy + fmt::Debug + Send + Sync + 'static;
    /// The input's and the output's tensor parameters of a layer.
    fn tensors(quant: &Self::Quant) -> (Self::Tensor, Self::Tensor);
    /// `x` stored as this type (rounded to nearest even, or quantized and saturated).
    fn from_real(x: f32, t: Self::Tensor) -> Self;
    /// The number a stored value means.
    fn to_real(self, t: Self::Tensor) -> f32;
    /// `dst[i] = from_real(src[i], t)` for the whole of the shorter slice: the loops outside
    /// the layers (the input conversion) call this, not `from_real` per value, so a type whose
    /// per-value conversion cannot vectorize (f16, see `float.rs`) can convert in bulk.
    #[inline(always)]
    fn from_real_slice(src: &[f32], dst: &mut [Self], t: Self::Tensor) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = Self::from_real(s, t);
        }
    }
    /// `dst[i] += src[i].to_real(t)` for the whole of the shorter slice (the global average
    /// pool's sum; bulk for the same reason as [`Storage::from_real_slice`]).
    #[inline(always)]
    fn add_real_slice(dst: &mut [f32], src: &[Self], t: Self::Tensor) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d += s.to_real(t);
        }
    }
    /// The families with a native path at this type (see the trait docs).
    const NATIVE: &'static [(Family, NativeFn<Self>)];
    /// The path of every algorithm without a native one (see the trait docs).
    fn emulated(
        algo: &dyn ConvAlgorithm,
        layer: &Layer<'_>,
        quant: &Self::Quant,
    ) -> Result<Box<dyn PreparedConv<Self>>>;
}

/// Prepares `layer` on `algo` for activations stored as `E`: the native path of `algo`'s
/// family at `E` if it has one that runs here, else the emulated path. The arguments are
/// checked first (shapes, lengths, that `algo` supports the spec on this CPU).
pub fn prepare<E: Storage>(
    algo: &dyn ConvAlgorithm,
    layer: &Layer<'_>,
    quant: &E::Quant,
) -> Result<Box<dyn PreparedConv<E>>> {
    check_prepare(algo, layer.spec, layer.weights_oihw, layer.bias, layer.activation)?;
    for (family, native) in E::NATIVE {
        if *family == algo.family() {
            if let Some(prepared) = native(algo, layer, quant)? {
                return Ok(prepared);
            }
        }
    }
    E::emulated(algo, layer, quant)
}

/// How a prepared layer treats its storage type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoragePath {
    /// The kernel reads and writes the storage type itself.
    Native,
    /// An f32 kernel between a conversion of its input and one of its output.
    Widened,
}

impl StoragePath {
    pub fn name(self) -> &'static str {
        match self {
            StoragePath::Native => "native",
            StoragePath::Widened => "widened",
        }
    }
}

impl fmt::Display for StoragePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `values` rounded to `precision` (weights and biases of a reduced-precision layer).
pub fn rounded(precision: Precision, values: &[f32]) -> Vec<f32> {
    let mut v = values.to_vec();
    precision.round_slice(&mut v);
    v
}

/// The emulated path of every algorithm at float storage type `E`: weights and bias rounded
/// to `E`, then `algo`'s f32 layer run between a widening of the input into scratch and a
/// narrowing of its f32 output ([`Converted`]). Exact in what it computes (the same f32 sums
/// as the native paths), slower in what it moves (two extra passes over the activations).
pub fn widened<E: Element + Storage>(
    algo: &(impl ConvAlgorithm + ?Sized),
    layer: &Layer<'_>,
) -> Result<Box<dyn PreparedConv<E>>> {
    let p = E::PRECISION;
    let w = rounded(p, layer.weights_oihw);
    let b = layer.bias.map(|b| rounded(p, b));
    let inner = algo.prepare(layer.spec, &w, b.as_deref(), layer.activation)?;
    // The algorithm's own backend converts (vector F16C / shifts where it has them).
    let convert = algo.backend().dispatch(ConvertOp::<E>::new())?;
    Ok(Box::new(Converted { inner, convert, _storage: PhantomData }))
}

/// How an emulated layer moves its activations between its storage type `E` and f32: the
/// backend's row converters for the float types ([`Convert`]), dequantize / quantize for
/// int8 (`crate::int8`).
pub(crate) trait Conversion<E>: Send + Sync + 'static {
    /// `dst = src` as f32 (same lengths).
    fn widen(&self, src: &[E], dst: &mut [f32]);
    /// `dst = src` stored as `E` (same lengths).
    fn narrow(&self, src: &[f32], dst: &mut [E]);
}

impl<E: Element> Conversion<E> for Convert<E> {
    fn widen(&self, src: &[E], dst: &mut [f32]) {
        let n = src.len().min(dst.len());
        // SAFETY: inside this crate a `Convert` is made only by `ConvertOp` run with a token
        // of its backend (so the CPU has its level), and the trait is crate-private; both
        // slices hold `n` elements.
        unsafe { (self.widen)(src.as_ptr(), 0, dst.as_mut_ptr(), 0, 1, n) }
    }
    fn narrow(&self, src: &[f32], dst: &mut [E]) {
        let n = src.len().min(dst.len());
        // SAFETY: as in `widen`.
        unsafe { (self.narrow)(src.as_ptr(), 0, dst.as_mut_ptr(), 0, 1, n) }
    }
}

/// An f32 layer between a conversion of its input and one of its output: the emulated path
/// of every storage type ([`Storage::emulated`]).
pub(crate) struct Converted<E, C> {
    pub(crate) inner: Box<dyn PreparedConv>,
    pub(crate) convert: C,
    pub(crate) _storage: PhantomData<fn() -> E>,
}

impl<E: Storage, C: Conversion<E>> PreparedConv<E> for Converted<E, C> {
    fn spec(&self) -> &ConvSpec {
        self.inner.spec()
    }
    fn algorithm(&self) -> &'static str {
        self.inner.algorithm()
    }
    fn level(&self) -> Isa {
        self.inner.level()
    }
    fn storage(&self) -> StoragePath {
        StoragePath::Widened
    }
    fn scratch_len(&self, input: Dims) -> Result<usize> {
        let out = self.spec().output_dims(input)?;
        let inner = self.inner.scratch_len(input)?;
        [input.len()?, out.len()?, inner]
            .into_iter()
            .try_fold(0usize, |a, x| a.checked_add(x))
            .ok_or(KernelError::Overflow { what: "widened scratch" })
    }
    fn run_checked(&self, run: Run<'_, E>) -> Result<()> {
        let Run { input, in_dims, output, scratch, par, .. } = run;
        let (wide_in, rest) = scratch.split_at_mut(input.len());
        let (wide_out, inner) = rest.split_at_mut(output.len());
        split_rows(par, input, wide_in, |s, d| self.convert.widen(s, d));
        self.inner.run(wide_in, in_dims, wide_out, inner, par)?;
        split_rows(par, wide_out, output, |s, d| self.convert.narrow(s, d));
        Ok(())
    }
}

/// `convert(src, dst)` on equal parts of both (same lengths) over `par`: the conversions of
/// a widened layer are whole passes over its activations, and serial they were most of what
/// bf16 conv0 did not scale (2 threads: 0.284 -> 0.248 ms, against the f32 layer's 0.20 ->
/// 0.11; Xeon 6/167).
pub(crate) fn split_rows<A: Sync, B: Send>(
    par: Par<'_>,
    src: &[A],
    dst: &mut [B],
    convert: impl Fn(&[A], &mut [B]) + Sync,
) {
    // Below 16 Ki values a dispatch costs more than the pass.
    if par.threads() <= 1 || src.len() < 1 << 14 {
        return convert(src, dst);
    }
    let chunk = src.len().div_ceil(par.threads()).next_multiple_of(64);
    par.for_each_chunk_mut(dst, chunk, |i, d| convert(&src[i * chunk..][..d.len()], d));
}

impl fmt::Debug for dyn ConvAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A convolution with its weights packed, ready to run on activations stored as `E` (f32 by
/// default; any [`Storage`] type through [`prepare`]).
///
/// `run` does not allocate: the caller owns the input, the output and the scratch buffer
/// (at least [`PreparedConv::scratch_len`] f32s). `par` says which pool the work may be
/// split over and on how many of its threads ([`Par::SERIAL`]: the calling thread only;
/// [`Par::global`]`(t)`: the process-wide pool).
pub trait PreparedConv<E: Storage = f32>: Send + Sync {
    fn spec(&self) -> &ConvSpec;
    /// The name of the algorithm that prepared this layer.
    fn algorithm(&self) -> &'static str;
    /// The instruction level this layer's code executes at (for pulp, the level it
    /// dispatched to). Never above the `KERNELS_ISA` ceiling: tests check it.
    fn level(&self) -> Isa;
    /// How the layer treats its storage type: native (the kernel reads and writes `E`), or
    /// widened (an f32 kernel between conversions, see [`Storage::emulated`]).
    fn storage(&self) -> StoragePath {
        StoragePath::Native
    }
    /// Scratch f32s `run` needs for an input of `input` dims.
    fn scratch_len(&self, _input: Dims) -> Result<usize> {
        Ok(0)
    }
    /// Runs the convolution on an NHWC `input` of shape `in_dims`, writing the NHWC output.
    /// The buffers are checked first ([`check_run`] against
    /// [`scratch_len`](Self::scratch_len)), then the layer runs
    /// ([`run_checked`](Self::run_checked)).
    fn run(
        &self,
        input: &[E],
        in_dims: Dims,
        output: &mut [E],
        scratch: &mut [f32],
        par: Par<'_>,
    ) -> Result<()> {
        let needed = self.scratch_len(in_dims)?;
        let out_dims = check_run(self.spec(), input, in_dims, output, scratch, needed)?;
        self.run_checked(Run { input, in_dims, out_dims, output, scratch, par })
    }
    /// What each layer writes of [`run`](Self::run): the convolution on buffers it checked.
    fn run_checked(&self, run: Run<'_, E>) -> Result<()>;
    /// Whether [`run_rows`](Self::run_rows) works: a layer that can compute any band of
    /// its output rows on its own, without scratch (the `direct` depthwise kernels). That
    /// is what a fused block ([`crate::fused`]) needs of its first layer.
    fn runs_rows(&self) -> bool {
        false
    }
    /// Computes only output rows `first_row..first_row + out.len() / (out_w * out_c)`,
    /// rows counted over the whole batch (`n * out_h` of them), serially, into `out`.
    fn run_rows(&self, _input: &[E], _in_dims: Dims, _first_row: usize, _out: &mut [E]) -> Result<()> {
        Err(no_row_bands(self.algorithm(), self.spec()))
    }
}

/// `layer` as a layer of storage type `E`, where `E` is `T` (else `None`): how a kernel
/// written for one type (the bf16 pair kernels) answers a prepare generic over `E`.
#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
pub(crate) fn as_storage<E: Storage, T: Storage>(
    layer: Box<dyn PreparedConv<T>>,
) -> Option<Box<dyn PreparedConv<E>>> {
    (Box::new(layer) as Box<dyn std::any::Any>).downcast::<Box<dyn PreparedConv<E>>>().ok().map(|b| *b)
}

/// The error of [`PreparedConv::run_rows`] on a layer that has no band path.
fn no_row_bands(algorithm: &'static str, spec: &ConvSpec) -> KernelError {
    KernelError::Unsupported { algorithm, spec: format!("{spec} in row bands") }
}

/// The buffers of one [`PreparedConv::run`] call, checked: `input` holds `in_dims`,
/// `output` holds `out_dims` (the spec's output for `in_dims`), `scratch` at least the
/// layer's [`scratch_len`](PreparedConv::scratch_len). Only `run` makes one (other crates
/// cannot: `non_exhaustive`), so a kernel behind [`PreparedConv::run_checked`] may rely on
/// those lengths.
#[derive(Debug)]
#[non_exhaustive]
pub struct Run<'a, E> {
    pub input: &'a [E],
    pub in_dims: Dims,
    pub out_dims: Dims,
    pub output: &'a mut [E],
    pub scratch: &'a mut [f32],
    pub par: Par<'a>,
}

impl<E> Run<'_, E> {
    /// Output pixels over the batch: the `M` of a GEMM over the output.
    pub fn pixels(&self) -> usize {
        self.out_dims.n * self.out_dims.h * self.out_dims.w
    }
}

/// Checks a prepare call's arguments: a valid spec and activation, weight and bias lengths
/// that match it, and that `algo` supports the spec on this CPU. [`ConvAlgorithm::prepare`]
/// and [`prepare`] call this first; the ISA check here is what keeps its
/// `#[target_feature]` code unreachable on a CPU without the feature.
pub fn check_prepare<A: ConvAlgorithm + ?Sized>(
    algo: &A,
    spec: &ConvSpec,
    weights: &[f32],
    bias: Option<&[f32]>,
    activation: Activation,
) -> Result<()> {
    spec.validate()?;
    activation.validate()?;
    let expected = spec.weights_len()?;
    if weights.len() != expected {
        return Err(KernelError::BufferLength { what: "weights (OIHW)", expected, actual: weights.len() });
    }
    if let Some(b) = bias {
        if b.len() != spec.out_channels {
            return Err(KernelError::BufferLength {
                what: "bias",
                expected: spec.out_channels,
                actual: b.len(),
            });
        }
    }
    if !algo.supports(spec) || !crate::isa::available(algo.isa()) {
        return Err(KernelError::Unsupported { algorithm: algo.name(), spec: spec.to_string() });
    }
    Ok(())
}

/// Checks a run call's buffers against the spec and returns the output dims.
pub fn check_run<E>(
    spec: &ConvSpec,
    input: &[E],
    in_dims: Dims,
    output: &[E],
    scratch: &[f32],
    scratch_needed: usize,
) -> Result<Dims> {
    let out_dims = spec.output_dims(in_dims)?;
    check_buffers(input, in_dims, output, out_dims, scratch, scratch_needed)?;
    Ok(out_dims)
}

/// The buffer half of [`check_run`], for callers whose output dims come from elsewhere
/// (a fused block's come from its second layer): the input holds `in_dims`, the output
/// `out_dims`, the scratch at least `scratch_needed` f32s.
pub fn check_buffers<E>(
    input: &[E],
    in_dims: Dims,
    output: &[E],
    out_dims: Dims,
    scratch: &[f32],
    scratch_needed: usize,
) -> Result<()> {
    for (what, expected, actual) in
        [("input", in_dims.len()?, input.len()), ("output", out_dims.len()?, output.len())]
    {
        if actual != expected {
            return Err(KernelError::BufferLength { what, expected, actual });
        }
    }
    if scratch.len() < scratch_needed {
        return Err(KernelError::BufferLength {
            what: "scratch",
            expected: scratch_needed,
            actual: scratch.len(),
        });
    }
    Ok(())
}

/// Checks a [`PreparedConv::run_rows`] call: the input holds `in_dims`, and `out` holds whole
/// output rows from `first_row`, inside the `n * out_h` rows of the output. Returns the
/// output dims.
pub fn check_rows<E>(
    spec: &ConvSpec,
    input: &[E],
    in_dims: Dims,
    first_row: usize,
    out: &[E],
) -> Result<Dims> {
    let out_dims = spec.output_dims(in_dims)?;
    let expected = in_dims.len()?;
    if input.len() != expected {
        return Err(KernelError::BufferLength { what: "input", expected, actual: input.len() });
    }
    let (row_len, total_rows) = (out_dims.w * out_dims.c, out_dims.n * out_dims.h);
    let rows = out.len() / row_len.max(1);
    if row_len == 0 || !out.len().is_multiple_of(row_len) || first_row + rows > total_rows {
        return Err(KernelError::ShapeMismatch {
            what: "output row band",
            expected: format!("whole rows of {row_len} values within {total_rows} rows"),
            actual: format!("{} values from row {first_row}", out.len()),
        });
    }
    Ok(out_dims)
}

/// A band of output rows that [`check_rows`] accepted: `out` holds whole output rows from
/// `first_row` (of the batch's `n * out_h`) of the output `out_dims` of an `input` of
/// `in_dims`.
pub(crate) struct RowBand<'a, E> {
    pub(crate) input: &'a [E],
    pub(crate) in_dims: Dims,
    pub(crate) out_dims: Dims,
    pub(crate) first_row: usize,
    pub(crate) out: &'a mut [E],
}

impl<'a, E> RowBand<'a, E> {
    /// The band of a [`PreparedConv::run_rows`] call on a layer of `spec`, checked.
    pub(crate) fn checked(
        spec: &ConvSpec,
        input: &'a [E],
        in_dims: Dims,
        first_row: usize,
        out: &'a mut [E],
    ) -> Result<Self> {
        let out_dims = check_rows(spec, input, in_dims, first_row, out)?;
        Ok(RowBand { input, in_dims, out_dims, first_row, out })
    }
}

/// The bias as a dense vector (zeros when absent), so kernels need no `Option` in loops.
pub fn bias_or_zeros(spec: &ConvSpec, bias: Option<&[f32]>) -> Vec<f32> {
    bias.map_or_else(|| vec![0.0; spec.out_channels], <[f32]>::to_vec)
}

/// A layer packed by a family whose body runs under a [`Simd`] token: what the family
/// writes. [`Bind`] pairs it with the token of its backend into a [`PreparedConv`], so that
/// every such family shares one prepared type ([`Bound`]).
pub(crate) trait TokenLayer<E: Element + Storage = f32>: Send + Sync + 'static {
    fn spec(&self) -> &ConvSpec;
    /// The algorithm's name.
    fn name(&self) -> &'static str;
    fn scratch_len(&self, _input: Dims) -> Result<usize> {
        Ok(0)
    }
    /// [`PreparedConv::run_checked`] with the token `s`.
    fn run<S: Simd>(&self, s: S, run: Run<'_, E>) -> Result<()>;
    /// [`PreparedConv::run_rows`] with the token `s`, on a checked band; called only where
    /// [`runs_rows`](Self::runs_rows).
    fn run_rows<S: Simd>(&self, _s: S, _band: RowBand<'_, E>) {}
    /// Whether [`run_rows`](Self::run_rows) is implemented.
    fn runs_rows(&self) -> bool {
        false
    }
}

/// The [`SimdOp`] that binds a packed layer to the token it is dispatched with:
/// `backend.dispatch(Bind::new(layer))` in a family's `prepare` (for storage type `E`).
pub(crate) struct Bind<L, E = f32>(pub L, PhantomData<fn() -> E>);

impl<L, E> Bind<L, E> {
    pub(crate) fn new(layer: L) -> Self {
        Bind(layer, PhantomData)
    }
}

impl<E: Element + Storage, L: TokenLayer<E>> SimdOp for Bind<L, E> {
    type Output = Box<dyn PreparedConv<E>>;
    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> Box<dyn PreparedConv<E>> {
        Box::new(Bound { s, layer: self.0, _element: PhantomData })
    }
}

/// A packed layer and the token (the proof of its ISA) of the implementation that runs it.
struct Bound<S, L, E> {
    s: S,
    layer: L,
    _element: PhantomData<fn() -> E>,
}

impl<S: Simd, E: Element + Storage, L: TokenLayer<E>> PreparedConv<E> for Bound<S, L, E> {
    fn spec(&self) -> &ConvSpec {
        self.layer.spec()
    }
    fn algorithm(&self) -> &'static str {
        self.layer.name()
    }
    fn level(&self) -> Isa {
        S::LEVEL
    }
    fn scratch_len(&self, input: Dims) -> Result<usize> {
        self.layer.scratch_len(input)
    }
    fn run_checked(&self, run: Run<'_, E>) -> Result<()> {
        self.layer.run(self.s, run)
    }
    fn runs_rows(&self) -> bool {
        self.layer.runs_rows()
    }
    fn run_rows(&self, input: &[E], in_dims: Dims, first_row: usize, out: &mut [E]) -> Result<()> {
        if !self.layer.runs_rows() {
            return Err(no_row_bands(self.layer.name(), self.layer.spec()));
        }
        self.layer.run_rows(self.s, RowBand::checked(self.layer.spec(), input, in_dims, first_row, out)?);
        Ok(())
    }
}
