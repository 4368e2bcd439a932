//! The float rows of the storage axis: `f32`, `f16` and `bf16` as [`Storage`] types, and the
//! families that have a native path at each.
//!
//! - f32 is the reference: every algorithm *is* an f32 layer, so its emulated path is the
//!   algorithm's own `prepare` and it lists no native paths.
//! - f16 and bf16: `direct` (depthwise) and `gemm` (pointwise, FC) read and write the type
//!   itself; every other algorithm runs [`widened`] (its f32 layer between conversions).
//!   bf16's `gemm` path is the `vdpbf16ps` / AMX one where the CPU has it, else f32 panels
//!   with bf16 loads and stores.

use half::{bf16, f16};

use crate::algo::{widened, ConvAlgorithm, Family, Layer, NativeFn, PreparedConv, Storage};
use crate::error::Result;
use crate::precision::Precision;
use crate::simd::Element;
use crate::{direct, gemm};

impl Storage for f32 {
    const PRECISION: Precision = Precision::F32;
    type Quant = ();
    type Tensor = ();
    fn tensors(_: &()) -> ((), ()) {
        ((), ())
    }
    #[inline]
    fn from_real(x: f32, _: ()) -> f32 {
        Element::from_f32(x)
    }
    #[inline]
    fn to_real(self, _: ()) -> f32 {
        Element::to_f32(self)
    }
    const NATIVE: &'static [(Family, NativeFn<f32>)] = &[];
    fn emulated(algo: &dyn ConvAlgorithm, layer: &Layer<'_>, _: &()) -> Result<Box<dyn PreparedConv>> {
        algo.prepare(layer.spec, layer.weights_oihw, layer.bias, layer.activation)
    }
}

impl Storage for f16 {
    const PRECISION: Precision = Precision::F16;
    type Quant = ();
    type Tensor = ();
    fn tensors(_: &()) -> ((), ()) {
        ((), ())
    }
    #[inline]
    fn from_real(x: f32, _: ()) -> f16 {
        Element::from_f32(x)
    }
    #[inline]
    fn to_real(self, _: ()) -> f32 {
        Element::to_f32(self)
    }
    const NATIVE: &'static [(Family, NativeFn<f16>)] =
        &[(Family::Direct, direct::native::<f16>), (Family::Gemm, gemm::native_float::<f16>)];
    fn emulated(algo: &dyn ConvAlgorithm, layer: &Layer<'_>, _: &()) -> Result<Box<dyn PreparedConv<f16>>> {
        widened(algo, layer)
    }
}

impl Storage for bf16 {
    const PRECISION: Precision = Precision::Bf16;
    type Quant = ();
    type Tensor = ();
    fn tensors(_: &()) -> ((), ()) {
        ((), ())
    }
    #[inline]
    fn from_real(x: f32, _: ()) -> bf16 {
        Element::from_f32(x)
    }
    #[inline]
    fn to_real(self, _: ()) -> f32 {
        Element::to_f32(self)
    }
    const NATIVE: &'static [(Family, NativeFn<bf16>)] =
        &[(Family::Direct, direct::native::<bf16>), (Family::Gemm, gemm::native_bf16)];
    fn emulated(algo: &dyn ConvAlgorithm, layer: &Layer<'_>, _: &()) -> Result<Box<dyn PreparedConv<bf16>>> {
        widened(algo, layer)
    }
}
