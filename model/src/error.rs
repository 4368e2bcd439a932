//! The model crate's error type: every failure names what went wrong, never a panic.

use std::fmt;

use kernels::KernelError;

use crate::units::{gib, group};

#[derive(Debug)]
pub enum ModelError {
    /// A kernel rejected a shape, a buffer or an ISA.
    Kernel(KernelError),
    /// The model configuration is invalid (width, resolution, classes, batch, threads).
    Config(String),
    /// A weights file or weight set is wrong; `key` names the tensor.
    Weights { key: String, problem: String },
    /// A file could not be read or written.
    Io { path: String, source: std::io::Error },
    /// A malformed `.npy` file or array.
    Npy(String),
    /// An image that fails to decode.
    Image(String),
    /// A class-names file that does not fit the model; `path` names the file.
    Labels { path: String, problem: String },
    /// A model (or buffer) that needs more memory than is available: refused before it is
    /// allocated (`crate::memory`). `source` says where `available` was read.
    Memory { what: String, needed: u64, available: u64, source: &'static str },
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kernel(e) => write!(f, "{e}"),
            Self::Config(s) => write!(f, "invalid configuration: {s}"),
            Self::Weights { key, problem } if key.is_empty() => write!(f, "weights: {problem}"),
            Self::Weights { key, problem } => write!(f, "weights: {key}: {problem}"),
            Self::Io { path, source } => write!(f, "{path}: {source}"),
            Self::Npy(s) => write!(f, "npy: {s}"),
            Self::Image(s) => write!(f, "image: {s}"),
            Self::Labels { path, problem } => write!(f, "labels {path}: {problem}"),
            Self::Memory { what, needed, available, source } => write!(
                f,
                "not enough memory: {what} needs {} bytes ({}), {} bytes ({}) are available ({source})",
                group(*needed),
                gib(*needed),
                group(*available),
                gib(*available)
            ),
        }
    }
}

impl std::error::Error for ModelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Kernel(e) => Some(e),
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<KernelError> for ModelError {
    fn from(e: KernelError) -> Self {
        ModelError::Kernel(e)
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// Wraps an I/O error with the path it concerns.
pub fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io { path: path.display().to_string(), source }
}
