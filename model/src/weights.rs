//! MobileNetV1 weights under the PyTorch reference model's `state_dict` names, loaded from
//! and saved to safetensors, or initialised from a seed.
//!
//! # Precision of the stored tensors
//!
//! A file may store each tensor as F16, BF16, F32 or F64 (any mix, as PyTorch writes after
//! `.half()`, `.bfloat16()` or `.double()` on some of them). Every tensor is read into one f32
//! master copy ([`Param::data`]): F16 and BF16 widen exactly (every value of both is an f32),
//! F64 rounds to nearest, ties to even, and a finite F64 beyond f32's range is an error naming
//! the key. Which type each tensor came in is kept ([`Weights::stored_dtypes`]).
//!
//! Batch-norm folding ([`fold_batchnorm`], in f64) runs on these widened values, so an f16 file
//! is folded exactly as its f32 widening would be; rounding to the run's storage precision
//! ([`kernels::Precision`]) happens only after folding, once, on the folded weights.
//!
//! [`Weights::to_safetensors_as`] writes F32, F16 or BF16 tensors under the same names. A
//! finite value that would round to infinity in the narrower type (`|v| >= 65,520` for f16) is
//! an error naming the key and the value, where PyTorch's `.half()` silently stores inf.

use std::collections::BTreeMap;
use std::path::Path;

use half::{bf16, f16};
use kernels::{Activation, LayerKind, Precision};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::config::{Config, BLOCKS, CONV0_CHANNELS};
use crate::error::{io_err, ModelError, Result};
use crate::files::write_atomic;
use crate::rng::SplitMix64;
use crate::units::group;

/// One named f32 tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A complete set of MobileNetV1 weights, keyed by PyTorch `state_dict` name.
///
/// Equality compares names, shapes and values, not the dtypes the tensors were read from.
#[derive(Debug, Clone)]
pub struct Weights {
    params: BTreeMap<String, Param>,
    /// The file dtype of each tensor (`"f16"`, `"bf16"`, `"f32"`, `"f64"`); empty when the
    /// weights were not loaded from a file.
    stored: BTreeMap<String, &'static str>,
    /// Set for quantized weights (`crate::quant`): then `params` holds each layer's folded
    /// weights and bias under its conv name, the weights dequantized from their int8 values.
    quant: Option<std::sync::Arc<Quantization>>,
}

impl PartialEq for Weights {
    fn eq(&self, other: &Self) -> bool {
        self.params == other.params
    }
}

/// The safetensors dtypes a weights file may store, by their safetensors names.
pub const ACCEPTED_DTYPES: [&str; 4] = ["F16", "BF16", "F32", "F64"];

const BN_FIELDS: [&str; 4] = ["weight", "bias", "running_mean", "running_var"];

/// Every key the reference model's `state_dict` has for `config` (except the
/// `num_batches_tracked` counters), with its shape, in model order.
pub fn expected_keys(config: &Config) -> Result<Vec<(String, Vec<usize>)>> {
    config.validate()?;
    let mut keys = Vec::new();
    let mut conv_bn = |conv: String, bn: String, shape: Vec<usize>| {
        let c = shape[0];
        keys.push((format!("{conv}.weight"), shape));
        keys.push((format!("{conv}.bias"), vec![c]));
        for f in BN_FIELDS {
            keys.push((format!("{bn}.{f}"), vec![c]));
        }
    };
    let c0 = config.channels(CONV0_CHANNELS);
    conv_bn("first_conv.0".into(), "first_conv.1".into(), vec![c0, 3, 3, 3]);
    let mut cin = c0;
    for (i, &(cout, _)) in BLOCKS.iter().enumerate() {
        let cout = config.channels(cout);
        conv_bn(format!("bottleneck.{i}.0"), format!("bottleneck.{i}.1"), vec![cin, 1, 3, 3]);
        conv_bn(format!("bottleneck.{i}.3"), format!("bottleneck.{i}.4"), vec![cout, cin, 1, 1]);
        cin = cout;
    }
    keys.push(("linear.weight".into(), vec![config.classes, cin]));
    keys.push(("linear.bias".into(), vec![config.classes]));
    Ok(keys)
}

impl Weights {
    /// Seeded random weights: Kaiming-normal conv weights (`std = sqrt(2 / fan_in)`, which
    /// keeps activations O(1) through 27 ReLU6 layers), zero conv biases, identity batch
    /// norm (gamma 1, beta 0, mean 0, var 1), FC weights N(0, 0.01^2) and zero FC bias, as
    /// PyTorch initialises the reference model.
    pub fn random(config: &Config, seed: u64) -> Result<Self> {
        let mut rng = SplitMix64::new(seed);
        let mut params = BTreeMap::new();
        for (key, shape) in expected_keys(config)? {
            let len = shape.iter().product();
            let data: Vec<f32> = if key.ends_with(".weight") && shape.len() == 4 {
                let fan_in = (shape[1] * shape[2] * shape[3]) as f64;
                let std = (2.0 / fan_in).sqrt();
                (0..len).map(|_| (rng.normal() * std) as f32).collect()
            } else if key == "linear.weight" {
                (0..len).map(|_| (rng.normal() * 0.01) as f32).collect()
            } else if key.ends_with(".weight") || key.ends_with("running_var") {
                vec![1.0; len]
            } else {
                vec![0.0; len]
            };
            params.insert(key, Param { shape, data });
        }
        Ok(Weights { params, stored: BTreeMap::new(), quant: None })
    }

    /// Replaces the identity batch norms with seeded non-trivial statistics (gamma in
    /// [0.5, 1.5), beta and mean in [-0.2, 0.2), var in [0.5, 1.5)), so tests exercise folding.
    pub fn randomize_batchnorm(&mut self, seed: u64) {
        let mut rng = SplitMix64::new(seed ^ 0xB4_7C4E);
        for (key, p) in self.params.iter_mut() {
            let is_bn = p.shape.len() == 1 && !key.starts_with("linear") && !is_conv_bias(key);
            if !is_bn {
                continue;
            }
            for v in p.data.iter_mut() {
                let u = rng.uniform() as f32;
                *v = if key.ends_with(".weight") || key.ends_with("running_var") {
                    0.5 + u
                } else {
                    0.4 * u - 0.2
                };
            }
        }
    }

    /// Loads a safetensors file saved from the reference model's `state_dict`.
    pub fn load(path: &Path, config: &Config) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        Self::from_safetensors(&bytes, config)
    }

    /// Parses safetensors bytes and checks every key, shape and dtype against `config`.
    /// A missing key, a wrong shape, a dtype other than F16, BF16, F32 or F64, an unexpected
    /// key or a truncated file is an error naming the key (and both shapes, or the dtype).
    /// `*.num_batches_tracked` counters are ignored whatever their dtype (PyTorch saves I64).
    pub fn from_safetensors(bytes: &[u8], config: &Config) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| ModelError::Weights {
            key: String::new(),
            problem: format!("not a valid safetensors file: {e}"),
        })?;
        let expected = expected_keys(config)?;
        for name in st.names() {
            let known = name.ends_with(".num_batches_tracked") || expected.iter().any(|(k, _)| k == name);
            if !known {
                return Err(ModelError::Weights {
                    key: name.to_string(),
                    problem: "unexpected key (not in MobileNetV1's state_dict for this configuration)".into(),
                });
            }
        }
        let mut params = BTreeMap::new();
        let mut stored = BTreeMap::new();
        for (key, shape) in expected {
            let view = st.tensor(&key).map_err(|_| ModelError::Weights {
                key: key.clone(),
                problem: format!("missing (expected shape {shape:?})"),
            })?;
            let Some(dtype) = dtype_name(view.dtype()) else {
                return Err(unsupported_dtype(&key, view.dtype()));
            };
            if view.shape() != shape.as_slice() {
                return Err(ModelError::Weights {
                    key,
                    problem: format!("shape {:?}, expected {:?}", view.shape(), shape),
                });
            }
            let data = widen(&key, &view)?;
            stored.insert(key.clone(), dtype);
            params.insert(key, Param { shape, data });
        }
        Ok(Weights { params, stored, quant: None })
    }

    /// How many tensors were stored in each dtype (`"f16"`, `"bf16"`, `"f32"`, `"f64"`) in
    /// the file these weights were loaded from; empty for seeded weights.
    pub fn stored_dtypes(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for &dtype in self.stored.values() {
            *counts.entry(dtype).or_insert(0) += 1;
        }
        counts
    }

    /// The dtype one tensor was stored in, if these weights were loaded from a file.
    pub fn stored_dtype(&self, key: &str) -> Option<&'static str> {
        self.stored.get(key).copied()
    }

    /// One line for logs: `164 tensors (f16)`, `164 tensors (100 f16, 64 f32)`, or
    /// `164 tensors (seeded)` for weights not loaded from a file.
    pub fn summary(&self) -> String {
        let counts = self.stored_dtypes();
        let dtypes = match counts.len() {
            0 => "seeded".to_string(),
            1 => counts.keys().copied().collect(),
            _ => counts.iter().map(|(d, n)| format!("{n} {d}")).collect::<Vec<_>>().join(", "),
        };
        format!("{} tensors ({dtypes})", self.params.len())
    }

    /// Serialises to f32 safetensors bytes under the reference names.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        self.to_safetensors_as(Precision::F32)
    }

    /// Serialises to safetensors bytes under the reference names, every tensor stored as
    /// `precision` (F32, F16 or BF16), rounded to nearest, ties to even. A finite value that
    /// would round to infinity is an error naming the key and the value; values already
    /// infinite or NaN are kept.
    pub fn to_safetensors_as(&self, precision: Precision) -> Result<Vec<u8>> {
        let dtype = match precision {
            Precision::F32 => Dtype::F32,
            Precision::F16 => Dtype::F16,
            Precision::Bf16 => Dtype::BF16,
            Precision::Int8 => {
                return Err(ModelError::Config(
                    "int8 weights are written by `mobilenet quantize` (they need calibration)".into(),
                ))
            }
        };
        let bytes = self
            .params
            .iter()
            .map(|(k, p)| Ok((k.clone(), narrow(k, &p.data, precision)?, p.shape.clone())))
            .collect::<Result<Vec<(String, Vec<u8>, Vec<usize>)>>>()?;
        let views = bytes
            .iter()
            .map(|(k, b, s)| {
                TensorView::new(dtype, s.clone(), b)
                    .map(|v| (k.clone(), v))
                    .map_err(|e| ModelError::Weights { key: k.clone(), problem: e.to_string() })
            })
            .collect::<Result<Vec<_>>>()?;
        safetensors::serialize(views, None)
            .map_err(|e| ModelError::Weights { key: String::new(), problem: e.to_string() })
    }

    /// Writes an f32 safetensors file.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.save_as(path, Precision::F32)
    }

    /// Writes a safetensors file with every tensor stored as `precision`
    /// (see [`Weights::to_safetensors_as`]), atomically ([`crate::files::write_atomic`]).
    pub fn save_as(&self, path: &Path, precision: Precision) -> Result<()> {
        crate::files::write_atomic(path, &self.to_safetensors_as(precision)?)
    }

    /// Quantized weights: folded per-layer tensors (`{conv}.weight`, `{conv}.bias`) and their
    /// quantization ([`crate::quant`]).
    pub(crate) fn quantized(params: BTreeMap<String, Param>, quant: Quantization) -> Weights {
        Weights { params, stored: BTreeMap::new(), quant: Some(std::sync::Arc::new(quant)) }
    }

    /// The int8 quantization these weights carry, if they are a quantized model.
    pub fn quantization(&self) -> Option<&Quantization> {
        self.quant.as_deref()
    }

    /// The folded weights, bias and activation of layer `idx` (0 = conv0, then dw/pw pairs,
    /// fc): batch norm folded here, or a quantized file's folded (dequantized) weights.
    pub fn layer(&self, idx: usize, kind: LayerKind) -> Result<(Vec<f32>, Vec<f32>, Activation)> {
        let w = self;
        if w.quantization().is_some() {
            // A quantized file holds the folded weights (dequantized) under the conv names.
            let conv = crate::config::conv_name(idx, kind);
            let activation =
                if kind == LayerKind::FullyConnected { Activation::None } else { Activation::Relu6 };
            return Ok((
                w.get(&format!("{conv}.weight"))?.data.clone(),
                w.get(&format!("{conv}.bias"))?.data.clone(),
                activation,
            ));
        }
        if kind == LayerKind::FullyConnected {
            return Ok((
                w.get("linear.weight")?.data.clone(),
                w.get("linear.bias")?.data.clone(),
                Activation::None,
            ));
        }
        let (conv, bn) = match idx {
            0 => ("first_conv.0".to_string(), "first_conv.1".to_string()),
            i => {
                let block = (i - 1) / 2;
                if i % 2 == 1 {
                    (format!("bottleneck.{block}.0"), format!("bottleneck.{block}.1"))
                } else {
                    (format!("bottleneck.{block}.3"), format!("bottleneck.{block}.4"))
                }
            }
        };
        let get = |k: String| w.get(&k).map(|p| p.data.as_slice());
        let (fw, fb) = fold_batchnorm(
            get(format!("{conv}.weight"))?,
            get(format!("{conv}.bias"))?,
            get(format!("{bn}.weight"))?,
            get(format!("{bn}.bias"))?,
            get(format!("{bn}.running_mean"))?,
            get(format!("{bn}.running_var"))?,
        );
        Ok((fw, fb, Activation::Relu6))
    }

    /// One tensor by name.
    pub fn get(&self, key: &str) -> Result<&Param> {
        self.params.get(key).ok_or_else(|| ModelError::Weights { key: key.into(), problem: "missing".into() })
    }

    /// Mutable access to one tensor (for tests and tools).
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Param> {
        self.params.get_mut(key)
    }

    /// All tensors, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Param)> {
        self.params.iter()
    }
}

/// The lower-case name of an accepted file dtype, `None` for any other.
fn dtype_name(dtype: Dtype) -> Option<&'static str> {
    match dtype {
        Dtype::F16 => Some("f16"),
        Dtype::BF16 => Some("bf16"),
        Dtype::F32 => Some("f32"),
        Dtype::F64 => Some("f64"),
        _ => None,
    }
}

/// Reads one tensor's little-endian values into f32: F16 and BF16 exactly, F64 rounded to
/// nearest (a finite value beyond f32's range is an error naming the key). The caller has
/// checked the dtype; safetensors has checked that the byte length matches the shape.
fn widen(key: &str, view: &TensorView) -> Result<Vec<f32>> {
    let b = view.data();
    Ok(match view.dtype() {
        Dtype::F16 => b.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => b.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::F32 => b.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F64 => b
            .chunks_exact(8)
            .map(|b| {
                let v = f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                // `as` rounds to nearest, ties to even; only a finite value past f32::MAX
                // (after rounding) becomes infinite.
                let x = v as f32;
                if v.is_finite() && x.is_infinite() {
                    Err(ModelError::Weights {
                        key: key.to_string(),
                        problem: format!("F64 value {v:e} overflows f32 (largest finite {:e})", f32::MAX),
                    })
                } else {
                    Ok(x)
                }
            })
            .collect::<Result<_>>()?,
        other => return Err(unsupported_dtype(key, other)),
    })
}

fn unsupported_dtype(key: &str, dtype: Dtype) -> ModelError {
    ModelError::Weights {
        key: key.to_string(),
        problem: format!("dtype {dtype}, expected one of {}", ACCEPTED_DTYPES.join(", ")),
    }
}

/// One tensor's values as little-endian `precision` bytes, refusing a finite value that would
/// round to infinity (PyTorch's `.half()` would store inf).
fn narrow(key: &str, data: &[f32], precision: Precision) -> Result<Vec<u8>> {
    if let Some(&v) = data.iter().find(|v| v.is_finite() && precision.round(**v).is_infinite()) {
        return Err(ModelError::Weights {
            key: key.to_string(),
            problem: format!(
                "value {v} overflows {precision} (largest finite {}); not written as infinity",
                precision.max_finite()
            ),
        });
    }
    Ok(match precision {
        Precision::F32 | Precision::Int8 => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Precision::F16 => data.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
        Precision::Bf16 => data.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect(),
    })
}

fn is_conv_bias(key: &str) -> bool {
    key.starts_with("first_conv.0.") || key.contains(".0.bias") || key.contains(".3.bias")
}

/// Folds an inference-mode BatchNorm (eps = 1e-5) into the preceding convolution:
/// `scale = gamma / sqrt(var + eps)`, `w' = w * scale` (per output channel),
/// `b' = (b - mean) * scale + beta`. Computed in f64, rounded once.
pub fn fold_batchnorm(
    weights: &[f32],
    bias: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    const EPS: f64 = 1e-5;
    let c = bias.len();
    let per_channel = weights.len() / c.max(1);
    let scale: Vec<f64> = (0..c).map(|o| gamma[o] as f64 / (var[o] as f64 + EPS).sqrt()).collect();
    let w = weights.iter().enumerate().map(|(i, &v)| (v as f64 * scale[i / per_channel]) as f32).collect();
    let b = (0..c).map(|o| ((bias[o] as f64 - mean[o] as f64) * scale[o] + beta[o] as f64) as f32).collect();
    (w, b)
}

/// `mobilenet convert`: rewrites `input` (checked against `config`) with every tensor
/// stored as `precision`, to `output` (which may be `input`). Returns the line to print,
/// with both sizes (the input's read before anything is written).
pub fn convert(input: &Path, config: &Config, precision: Precision, output: &Path) -> Result<String> {
    let in_bytes = std::fs::metadata(input).map_err(io_err(input))?.len();
    let w = Weights::load(input, config)?;
    let bytes = w.to_safetensors_as(precision)?;
    write_atomic(output, &bytes)?;
    Ok(format!(
        "{}: {} -> {} as {precision}: {} -> {} bytes",
        input.display(),
        w.summary(),
        output.display(),
        group(in_bytes),
        group(bytes.len() as u64)
    ))
}

/// The quantization of a whole model.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantization {
    /// The model input's parameters (quantized on entry, with the NCHW -> NHWC copy).
    pub input: kernels::int8::QuantParams,
    /// Per layer (conv0, dw1, pw1, ..., fc): its output's parameters.
    pub outputs: Vec<kernels::int8::QuantParams>,
    /// Per layer: one weight scale per output channel.
    pub weight_scales: Vec<Vec<f32>>,
}

impl Quantization {
    /// Every layer's [`QuantLayer`]: its input is the previous layer's output (the FC
    /// layer's, the last pointwise layer's through the pool).
    pub fn layers(&self) -> Vec<kernels::int8::QuantLayer> {
        let mut input = self.input;
        self.outputs
            .iter()
            .zip(&self.weight_scales)
            .map(|(&output, scales)| {
                let q = kernels::int8::QuantLayer { input, output, weight_scales: scales.clone() };
                input = output;
                q
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Config {
        Config { width: 0.25, resolution: 32, classes: 10 }
    }

    #[test]
    fn key_list_matches_the_reference_model() {
        let keys = expected_keys(&Config::default()).unwrap();
        // 27 conv layers x (weight, bias, 4 BN fields) + linear weight and bias.
        assert_eq!(keys.len(), 27 * 6 + 2);
        assert_eq!(keys[0], ("first_conv.0.weight".into(), vec![32, 3, 3, 3]));
        assert!(keys.contains(&("bottleneck.12.3.weight".into(), vec![1024, 1024, 1, 1])));
        assert!(keys.contains(&("bottleneck.0.0.weight".into(), vec![32, 1, 3, 3])));
        assert!(keys.contains(&("bottleneck.5.4.running_var".into(), vec![512])));
    }

    #[test]
    fn safetensors_round_trip_and_errors_name_the_key() {
        let cfg = small();
        let mut w = Weights::random(&cfg, 7).unwrap();
        w.randomize_batchnorm(3);
        let bytes = w.to_safetensors().unwrap();
        assert_eq!(Weights::from_safetensors(&bytes, &cfg).unwrap(), w);

        let truncated = Weights::from_safetensors(&bytes[..bytes.len() - 10], &cfg).unwrap_err();
        assert!(truncated.to_string().contains("not a valid safetensors"), "{truncated}");

        let mut missing = w.clone();
        missing.params.remove("bottleneck.3.4.running_mean");
        let e = Weights::from_safetensors(&missing.to_safetensors().unwrap(), &cfg).unwrap_err();
        assert!(
            e.to_string().contains("bottleneck.3.4.running_mean") && e.to_string().contains("missing"),
            "{e}"
        );

        let mut wrong = w.clone();
        wrong.params.insert("linear.bias".into(), Param { shape: vec![11], data: vec![0.0; 11] });
        let e = Weights::from_safetensors(&wrong.to_safetensors().unwrap(), &cfg).unwrap_err().to_string();
        assert!(e.contains("linear.bias") && e.contains("[11]") && e.contains("[10]"), "{e}");

        let mut extra = w.clone();
        extra.params.insert("head.weight".into(), Param { shape: vec![1], data: vec![0.0] });
        let e = Weights::from_safetensors(&extra.to_safetensors().unwrap(), &cfg).unwrap_err().to_string();
        assert!(e.contains("head.weight") && e.contains("unexpected"), "{e}");
    }

    /// One tensor of a hand-built file: key, dtype, shape, little-endian bytes.
    type Tensor = (String, Dtype, Vec<usize>, Vec<u8>);

    /// `data` as `dtype` bytes, encoded here independently of `narrow`. F64 values carry a
    /// relative offset of 1e-10, far below half an f32 ulp (6e-8), so they round back to `v`.
    fn encode(dtype: Dtype, data: &[f32]) -> Vec<u8> {
        match dtype {
            Dtype::F16 => data.iter().flat_map(|&v| f16::from_f32(v).to_bits().to_le_bytes()).collect(),
            Dtype::BF16 => data.iter().flat_map(|&v| bf16::from_f32(v).to_bits().to_le_bytes()).collect(),
            Dtype::F32 => data.iter().flat_map(|v| v.to_bits().to_le_bytes()).collect(),
            Dtype::F64 => data.iter().flat_map(|&v| (v as f64 * (1.0 + 1e-10)).to_le_bytes()).collect(),
            Dtype::I64 => data.iter().flat_map(|&v| (v as i64).to_le_bytes()).collect(),
            Dtype::I32 => data.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect(),
            Dtype::U8 => data.iter().map(|&v| v as u8).collect(),
            other => panic!("no test encoder for {other}"),
        }
    }

    /// Every tensor of `w`, the i-th (in key order) stored as `dtype_of(i)`.
    fn tensors(w: &Weights, dtype_of: impl Fn(usize) -> Dtype) -> Vec<Tensor> {
        w.iter()
            .enumerate()
            .map(|(i, (k, p))| (k.clone(), dtype_of(i), p.shape.clone(), encode(dtype_of(i), &p.data)))
            .collect()
    }

    fn file(tensors: &[Tensor]) -> Vec<u8> {
        let views: Vec<_> = tensors
            .iter()
            .map(|(k, d, s, b)| (k.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize(views, None).unwrap()
    }

    /// `w` with every value rounded through the storage type of its dtype in `tensors`.
    fn rounded(w: &Weights, tensors: &[Tensor]) -> Weights {
        let mut r = w.clone();
        for (k, d, _, _) in tensors {
            let p = match d {
                Dtype::F16 => Precision::F16,
                Dtype::BF16 => Precision::Bf16,
                _ => Precision::F32,
            };
            if let Some(param) = r.params.get_mut(k) {
                p.round_slice(&mut param.data);
            }
        }
        r
    }

    fn weights() -> Weights {
        let mut w = Weights::random(&small(), 7).unwrap();
        w.randomize_batchnorm(3);
        w
    }

    #[test]
    fn f16_and_bf16_files_load_as_the_f32_weights_rounded_through_that_type() {
        let (cfg, w) = (small(), weights());
        for (dtype, name) in [(Dtype::F16, "f16"), (Dtype::BF16, "bf16")] {
            let t = tensors(&w, |_| dtype);
            let loaded = Weights::from_safetensors(&file(&t), &cfg).unwrap();
            let want = rounded(&w, &t);
            assert_ne!(want, w, "{name}: rounding changed nothing, the test proves nothing");
            assert_eq!(loaded, want, "{name}");
            assert_eq!(loaded.stored_dtypes(), BTreeMap::from([(name, 164)]));
            assert_eq!(loaded.stored_dtype("linear.weight"), Some(name));
            assert_eq!(loaded.summary(), format!("164 tensors ({name})"));
        }
        assert_eq!(w.summary(), "164 tensors (seeded)");
    }

    #[test]
    fn a_mixed_file_loads_each_tensor_from_its_own_dtype_and_ignores_num_batches_tracked() {
        let (cfg, w) = (small(), weights());
        let dtypes = [Dtype::F16, Dtype::BF16, Dtype::F32, Dtype::F64];
        let mut t = tensors(&w, |i| dtypes[i % 4]);
        // PyTorch saves the batch-norm counters as I64 scalars.
        for bn in ["first_conv.1", "bottleneck.0.1", "bottleneck.12.4"] {
            t.push((format!("{bn}.num_batches_tracked"), Dtype::I64, vec![], encode(Dtype::I64, &[42.0])));
        }
        let loaded = Weights::from_safetensors(&file(&t), &cfg).unwrap();
        assert_eq!(loaded, rounded(&w, &t));
        assert_eq!(
            loaded.stored_dtypes(),
            BTreeMap::from([("bf16", 41), ("f16", 41), ("f32", 41), ("f64", 41)])
        );
        assert_eq!(loaded.summary(), "164 tensors (41 bf16, 41 f16, 41 f32, 41 f64)");
    }

    #[test]
    fn f64_overflowing_f32_is_an_error_naming_the_key_but_f64_infinity_is_kept() {
        let (cfg, w) = (small(), weights());
        let mut t = tensors(&w, |_| Dtype::F32);
        let bias = t.iter_mut().find(|(k, ..)| k == "linear.bias").unwrap();
        let mut values = [0.0f64; 10];
        values[3] = f64::INFINITY;
        values[4] = f64::NAN;
        bias.1 = Dtype::F64;
        bias.3 = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let loaded = Weights::from_safetensors(&file(&t), &cfg).unwrap();
        let b = &loaded.get("linear.bias").unwrap().data;
        assert!(b[3] == f32::INFINITY && b[4].is_nan() && b[5] == 0.0, "{b:?}");

        values[6] = 1e300;
        t.iter_mut().find(|(k, ..)| k == "linear.bias").unwrap().3 =
            values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let e = Weights::from_safetensors(&file(&t), &cfg).unwrap_err().to_string();
        assert!(e.contains("linear.bias") && e.contains("1e300") && e.contains("overflows f32"), "{e}");
    }

    #[test]
    fn integer_dtypes_under_a_real_key_are_errors_naming_key_and_dtype() {
        let (cfg, w) = (small(), weights());
        for (dtype, name) in [(Dtype::I32, "I32"), (Dtype::U8, "U8"), (Dtype::I64, "I64")] {
            let t = tensors(&w, |i| if i == 5 { dtype } else { Dtype::F16 });
            let key = &t[5].0;
            let e = Weights::from_safetensors(&file(&t), &cfg).unwrap_err().to_string();
            assert!(
                e.contains(key.as_str())
                    && e.contains(&format!("dtype {name}"))
                    && e.contains("F16, BF16, F32, F64"),
                "{e}"
            );
        }
    }

    #[test]
    fn truncated_and_misshapen_f16_files_give_the_usual_errors() {
        let (cfg, w) = (small(), weights());
        let good = file(&tensors(&w, |_| Dtype::F16));
        let e = Weights::from_safetensors(&good[..good.len() - 10], &cfg).unwrap_err().to_string();
        assert!(e.contains("not a valid safetensors"), "{e}");

        let mut t = tensors(&w, |_| Dtype::F16);
        let bias = t.iter_mut().find(|(k, ..)| k == "linear.bias").unwrap();
        (bias.2, bias.3) = (vec![11], encode(Dtype::F16, &[0.5; 11]));
        let e = Weights::from_safetensors(&file(&t), &cfg).unwrap_err().to_string();
        assert!(e.contains("linear.bias") && e.contains("[11]") && e.contains("[10]"), "{e}");
    }

    #[test]
    fn to_safetensors_as_round_trips_at_every_precision() {
        let (cfg, w) = (small(), weights());
        let f32_len = w.to_safetensors().unwrap().len();
        for p in Precision::FLOATS {
            let bytes = w.to_safetensors_as(p).unwrap();
            let loaded = Weights::from_safetensors(&bytes, &cfg).unwrap();
            let mut want = w.clone();
            want.params.values_mut().for_each(|param| p.round_slice(&mut param.data));
            assert_eq!(loaded, want, "{p}");
            assert_eq!(loaded.stored_dtypes(), BTreeMap::from([(p.name(), 164)]), "{p}");
            // Saving the loaded weights again at the same precision is lossless.
            assert_eq!(loaded.to_safetensors_as(p).unwrap(), bytes, "{p}");
            let params: usize = w.iter().map(|(_, param)| param.data.len()).sum();
            let st = SafeTensors::deserialize(&bytes).unwrap();
            let data: usize = st.tensors().iter().map(|(_, v)| v.data().len()).sum();
            assert_eq!(data, params * p.bytes(), "{p}");
            assert!(p == Precision::F32 || bytes.len() < f32_len * 6 / 10, "{p}: {} bytes", bytes.len());
        }
    }

    #[test]
    fn saving_f16_refuses_overflow_naming_the_key_and_keeps_inf_and_nan() {
        let (cfg, mut w) = (small(), weights());
        let data = &mut w.get_mut("bottleneck.2.3.weight").unwrap().data;
        // 65,519 is below the tie at 65,520 and rounds to 65,504; inf and NaN are kept as they are.
        (data[0], data[1], data[2], data[3]) = (65_519.0, -65_519.0, f32::NEG_INFINITY, f32::NAN);
        let loaded = Weights::from_safetensors(&w.to_safetensors_as(Precision::F16).unwrap(), &cfg).unwrap();
        let got = &loaded.get("bottleneck.2.3.weight").unwrap().data;
        assert_eq!(got[..3], [65_504.0, -65_504.0, f32::NEG_INFINITY]);
        assert!(got[3].is_nan());

        w.get_mut("bottleneck.2.3.weight").unwrap().data[7] = -70_000.0;
        let e = w.to_safetensors_as(Precision::F16).unwrap_err().to_string();
        assert!(
            e.contains("bottleneck.2.3.weight") && e.contains("-70000") && e.contains("overflows f16"),
            "{e}"
        );
        // bf16 has f32's range: 70,000 rounds to 70,144.
        let loaded = Weights::from_safetensors(&w.to_safetensors_as(Precision::Bf16).unwrap(), &cfg).unwrap();
        assert_eq!(loaded.get("bottleneck.2.3.weight").unwrap().data[7], -70_144.0);
        w.get_mut("bottleneck.2.3.weight").unwrap().data[7] = f32::MAX;
        let e = w.to_safetensors_as(Precision::Bf16).unwrap_err().to_string();
        assert!(e.contains("bottleneck.2.3.weight") && e.contains("overflows bf16"), "{e}");
    }

    #[test]
    fn seeded_init_is_deterministic() {
        let a = Weights::random(&small(), 1).unwrap();
        assert_eq!(a, Weights::random(&small(), 1).unwrap());
        assert_ne!(a, Weights::random(&small(), 2).unwrap());
    }

    #[test]
    fn convert_in_place_reports_the_input_size_it_read() {
        let d = std::env::temp_dir().join(format!("model-weights-convert-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let config = Config { width: 0.25, resolution: 32, classes: 4 };
        let p = d.join("w.safetensors");
        Weights::random(&config, 1).unwrap().save(&p).unwrap();
        let before = std::fs::metadata(&p).unwrap().len();
        let line = convert(&p, &config, Precision::F16, &p).unwrap();
        let after = std::fs::metadata(&p).unwrap().len();
        assert!(after < before, "{before} -> {after}");
        assert!(line.ends_with(&format!("{} -> {} bytes", group(before), group(after))), "{line}");
        assert!(Weights::load(&p, &config).unwrap().summary().contains("(f16)"));
        let _ = std::fs::remove_dir_all(&d);
    }
}
