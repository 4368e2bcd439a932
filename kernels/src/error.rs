//! The one error type of the `kernels` crate: every bad input ends here, never in a panic.

use std::fmt;

use crate::isa::IsaError;
use crate::precision::UnknownPrecision;

/// Everything that can go wrong when describing, preparing or running a convolution.
#[derive(Debug, Clone, PartialEq)]
pub enum KernelError {
    /// A size that must be positive is zero (`what` names it).
    ZeroSize { what: &'static str },
    /// `groups` does not divide both channel counts.
    GroupsMismatch { in_channels: usize, out_channels: usize, groups: usize },
    /// The (dilated) kernel does not fit in the padded input along `axis`.
    KernelTooLarge { axis: &'static str, kernel: usize, padded_input: usize },
    /// A size computation overflowed `usize` (`what` names it).
    Overflow { what: &'static str },
    /// A buffer does not have the length the shapes require.
    BufferLength { what: &'static str, expected: usize, actual: usize },
    /// A tensor's shape does not match what the operation needs.
    ShapeMismatch { what: &'static str, expected: String, actual: String },
    /// The algorithm cannot run this convolution (the kernel set falls back to naive).
    Unsupported { algorithm: &'static str, spec: String },
    /// An unknown ISA, or one this CPU (or this build) does not have.
    Isa(IsaError),
    /// No kernel set of that name is runnable here.
    UnknownKernelSet { name: String, available: Vec<String> },
    /// A fused activation with bounds that make no sense (`min > max` or NaN bounds).
    InvalidActivation { min: f32, max: f32 },
    /// `--precision` (or a caller) named a precision that does not exist.
    UnknownPrecision(UnknownPrecision),
    /// Quantization parameters that cannot be used (a zero, negative or non-finite scale,
    /// a zero point out of range, a count that does not match the channels).
    Quantization(String),
    /// A thread count out of range, a pool that cannot start its threads, or a bad
    /// `KERNELS_POOL_SPIN_US`.
    Threads(String),
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroSize { what } => write!(f, "{what} must be positive, got 0"),
            Self::GroupsMismatch { in_channels, out_channels, groups } => write!(
                f,
                "groups = {groups} must divide both in_channels = {in_channels} and out_channels = {out_channels}"
            ),
            Self::KernelTooLarge { axis, kernel, padded_input } => write!(
                f,
                "kernel extent {kernel} along {axis} is larger than the padded input ({padded_input})"
            ),
            Self::Overflow { what } => write!(f, "size computation overflows: {what}"),
            Self::BufferLength { what, expected, actual } => {
                write!(f, "{what} has {actual} elements, expected {expected}")
            }
            Self::ShapeMismatch { what, expected, actual } => {
                write!(f, "{what}: expected shape {expected}, got {actual}")
            }
            Self::Unsupported { algorithm, spec } => {
                write!(f, "algorithm {algorithm} does not support {spec}")
            }
            Self::Isa(e) => write!(f, "{e}"),
            Self::UnknownKernelSet { name, available } => write!(
                f,
                "unknown kernel set {name:?}; runnable here: {}",
                available.join(", ")
            ),
            Self::UnknownPrecision(e) => write!(f, "{e}"),
            Self::Quantization(s) => write!(f, "quantization: {s}"),
            Self::Threads(s) => write!(f, "{s}"),
            Self::InvalidActivation { min, max } => {
                write!(f, "clamp bounds must satisfy min <= max and not be NaN (min = {min}, max = {max})")
            }
        }
    }
}

impl std::error::Error for KernelError {}

impl From<IsaError> for KernelError {
    fn from(e: IsaError) -> Self {
        KernelError::Isa(e)
    }
}

impl From<UnknownPrecision> for KernelError {
    fn from(e: UnknownPrecision) -> Self {
        KernelError::UnknownPrecision(e)
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = KernelError> = std::result::Result<T, E>;

/// Multiplies sizes, naming the quantity in the overflow error.
pub fn checked_product(what: &'static str, factors: &[usize]) -> Result<usize> {
    factors.iter().try_fold(1usize, |acc, &x| acc.checked_mul(x)).ok_or(KernelError::Overflow { what })
}
