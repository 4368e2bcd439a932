//! MobileNetV1 (Howard et al. 2017) assembled from any [`kernels::KernelSet`].
//!
//! - [`Config`]: width multiplier, resolution, classes; [`Config::layers`] is the layer table
//!   with shapes and costs.
//! - [`Weights`]: the PyTorch reference model's `state_dict` in safetensors, or a seeded init.
//! - [`Labels`]: class names for the top-k lines (ImageNet-1k's built in).
//! - [`MobileNet`]: batch norm folded into the convolutions, ReLU6 fused, every buffer
//!   allocated at build time; `forward` allocates nothing.

mod auto;
pub mod bench;
pub mod clock;
pub mod config;
pub mod cost;
pub mod error;
pub mod files;
pub mod input;
pub mod labels;
pub mod memory;
pub mod net;
pub mod npy;
pub mod plan;
pub mod quant;
pub mod report;
mod rng;
pub mod setup;
pub mod stats;
pub mod tune;
pub mod units;
pub mod weights;
pub mod wisdom;

pub use config::{Config, LayerInfo};
pub use error::{ModelError, Result};
pub use labels::Labels;
pub use net::{softmax, top_k, LayerRun, MobileNet, Workers};
pub use plan::{LayerChoice, Plan};
pub use weights::Weights;
