//! The float rows of the storage axis: `f32`, `f16` and `bf16` as [`Storage`] types, and the
//! families that have a native path at each.
//!
//! - f32 is the reference: every algorithm *is* an f32 layer, so its emulated path is the
//!   algorithm's own `prepare` and it lists no native paths.
//! - f16 and bf16: `direct` (depthwise) and `gemm` (pointwise, FC) read and write the type
//!   itself; every other algorithm runs [`widened`] (its f32 layer between conversions).
//!   bf16's `gemm` path is the `vdpbf16ps` / AMX one where the CPU has it, else f32 panels
//!   with bf16 loads and stores.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use crate::algo::{widened, ConvAlgorithm, Family, Layer, NativeFn, PreparedConv, Storage};
use crate::error::Result;
use crate::precision::Precision;
use crate::simd::Element;
use crate::{direct, gemm, im2col};

/// A float type as a storage type: no parameters (`Quant` and `Tensor` are `()`), values
/// through [`Element`]'s conversions, `$native` its native paths and `$emulated` the path
/// of every other algorithm.
macro_rules! float_storage {
    ($t:ident, $precision:ident, native: $native:expr, emulated: $emulated:expr) => {
        float_storage!($t, $precision, native: $native, emulated: $emulated, bulk: {});
    };
    ($t:ident, $precision:ident, native: $native:expr, emulated: $emulated:expr, bulk: { $($bulk:item)* }) => {
        impl Storage for $t {
            const PRECISION: Precision = Precision::$precision;
            type Quant = ();
            type Tensor = ();
            fn tensors(_: &()) -> ((), ()) {
                ((), ())
            }
            #[inline]
            fn from_real(x: f32, _: ()) -> $t {
                Element::from_f32(x)
            }
            #[inline]
            fn to_real(self, _: ()) -> f32 {
                Element::to_f32(self)
            }
            $($bulk)*
            const NATIVE: &'static [(Family, NativeFn<$t>)] = $native;
            fn emulated(
                algo: &dyn ConvAlgorithm,
                layer: &Layer<'_>,
                _: &(),
            ) -> Result<Box<dyn PreparedConv<$t>>> {
                $emulated(algo, layer)
            }
        }
    };
}

float_storage!(f32, F32, native: &[], emulated: f32_layer);
// half's per-value f16 conversions check for F16C at run time on every call (half is built
// for baseline x86-64, so our target-feature copies of the loops cannot change that): a
// scalar loop with a feature test per value (seen in `perf annotate` of the f16 input
// conversion and average pool). Its slice conversions check once and convert 8 lanes wide.
float_storage!(
    f16,
    F16,
    native: &[
        (Family::Direct, direct::native::<f16>),
        (Family::Gemm, gemm::native_half::<f16>),
        (Family::Im2col, im2col::native_float::<f16>),
    ],
    emulated: widened,
    bulk: {
        #[inline(always)]
        fn from_real_slice(src: &[f32], dst: &mut [f16], _: ()) {
            let n = src.len().min(dst.len());
            dst[..n].convert_from_f32_slice(&src[..n]);
        }
        #[inline(always)]
        fn add_real_slice(dst: &mut [f32], src: &[f16], _: ()) {
            let mut wide = [0.0f32; BULK];
            for (d, s) in dst.chunks_mut(BULK).zip(src.chunks(BULK)) {
                let n = d.len().min(s.len());
                s[..n].convert_to_f32_slice(&mut wide[..n]);
                for (d, &w) in d.iter_mut().zip(&wide[..n]) {
                    *d += w;
                }
            }
        }
    }
);

/// Values per stack chunk of f16's [`Storage::add_real_slice`].
const BULK: usize = 256;
float_storage!(
    bf16,
    Bf16,
    native: &[
        (Family::Direct, direct::native::<bf16>),
        (Family::Gemm, gemm::native_half::<bf16>),
        (Family::Im2col, im2col::native_float::<bf16>),
    ],
    emulated: widened
);

/// f32's emulated path: the algorithm's own f32 layer (`algo::prepare` checked `layer`).
fn f32_layer(algo: &dyn ConvAlgorithm, layer: &Layer<'_>) -> Result<Box<dyn PreparedConv>> {
    algo.prepare_checked(layer)
}
