//! Interchangeable CPU convolution algorithms for depthwise-separable networks.
//!
//! Every algorithm implements [`ConvAlgorithm`]: `supports(spec)`, then `prepare` once
//! (weights arrive in PyTorch's OIHW order and are packed here), then
//! [`PreparedConv::run`] many times on NHWC f32 activations without allocating.
//! [`registry`] lists every algorithm compiled in (cargo features) and runnable on this CPU
//! (detection, capped by `KERNELS_ISA`), and builds the named [`KernelSet`]s from them.
//!
//! Layout of the crate: `simd/` holds the one vector trait with one file per implementation
//! (scalar, AVX2, AVX-512, NEON, pulp, wide) and the backend table; one folder per algorithm
//! family (`naive/`, `gemm/`, `im2col/`, `direct/`, `winograd/`) holds one body written over
//! that trait; `cache.rs` finds the cache sizes the blocking is derived from.

pub mod algo;
pub mod cache;
pub mod cost;
pub mod cpu;
pub mod direct;
pub mod error;
mod float;
pub mod fused;
pub mod gemm;
pub mod im2col;
pub mod int8;
pub mod isa;
pub mod naive;
pub mod peak;
pub mod pool;
pub mod precision;
pub mod registry;
pub mod simd;
pub mod spec;
pub mod tensor;
pub mod testing;
#[cfg(feature = "winograd")]
pub mod winograd;

pub use algo::{prepare, ConvAlgorithm, Family, Layer, LayerKind, PreparedConv, Storage, StoragePath};
pub use error::{KernelError, Result};
pub use isa::Isa;
pub use pool::{Par, ThreadPool};
pub use precision::Precision;
pub use registry::{algorithms, kernel_set, kernel_sets, KernelSet};
pub use simd::Backend;
pub use spec::{Activation, ConvSpec, Dims, Padding};
pub use tensor::{AlignedBuf, Tensor};
