//! Interchangeable CPU convolution algorithms for depthwise-separable networks.
//!
//! Every algorithm implements [`ConvAlgorithm`]: `supports(spec)`, then `prepare` once
//! (weights arrive in PyTorch's OIHW order and are packed here), then
//! [`PreparedConv::run`] many times on NHWC f32 activations without allocating.
//! [`registry`] lists every algorithm compiled in (cargo features) and runnable on this CPU
//! (detection, capped by `KERNELS_ISA`), and builds the named [`KernelSet`]s from them.
//!
//! Layout of the crate: one folder per algorithm family (`naive/`, ...), one file per ISA
//! inside it.

pub mod algo;
pub mod cost;
pub mod direct;
pub mod error;
pub mod gemm;
pub mod im2col;
pub mod isa;
pub mod naive;
pub mod registry;
pub mod spec;
pub mod tensor;
pub mod testing;
#[cfg(feature = "winograd")]
pub mod winograd;

pub use algo::{ConvAlgorithm, LayerKind, PreparedConv};
pub use error::{KernelError, Result};
pub use isa::Isa;
pub use registry::{algorithms, kernel_set, kernel_sets, KernelSet};
pub use spec::{Activation, ConvSpec, Dims, Padding};
pub use tensor::{AlignedBuf, Tensor};
