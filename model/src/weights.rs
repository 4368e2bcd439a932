//! MobileNetV1 weights under the PyTorch reference model's `state_dict` names, loaded from
//! and saved to safetensors, or initialised from a seed.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::config::{Config, BLOCKS, CONV0_CHANNELS};
use crate::error::{io_err, ModelError, Result};

/// One named f32 tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A complete set of MobileNetV1 weights, keyed by PyTorch `state_dict` name.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    params: BTreeMap<String, Param>,
}

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

/// A small deterministic generator (SplitMix64), so seeded weights are identical on every
/// platform and need no dependency.
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
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
        Ok(Weights { params })
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
    /// A missing key, a wrong shape or dtype, an unexpected key or a truncated file is an
    /// error naming the key (and both shapes).
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
        for (key, shape) in expected {
            let view = st.tensor(&key).map_err(|_| ModelError::Weights {
                key: key.clone(),
                problem: format!("missing (expected shape {shape:?})"),
            })?;
            if view.dtype() != Dtype::F32 {
                return Err(ModelError::Weights {
                    key,
                    problem: format!("dtype {:?}, expected F32", view.dtype()),
                });
            }
            if view.shape() != shape.as_slice() {
                return Err(ModelError::Weights {
                    key,
                    problem: format!("shape {:?}, expected {:?}", view.shape(), shape),
                });
            }
            let data =
                view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            params.insert(key, Param { shape, data });
        }
        Ok(Weights { params })
    }

    /// Serialises to safetensors bytes under the reference names.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = self
            .params
            .iter()
            .map(|(k, p)| (k.clone(), p.data.iter().flat_map(|v| v.to_le_bytes()).collect(), p.shape.clone()))
            .collect();
        let views = bytes
            .iter()
            .map(|(k, b, s)| {
                TensorView::new(Dtype::F32, s.clone(), b)
                    .map(|v| (k.clone(), v))
                    .map_err(|e| ModelError::Weights { key: k.clone(), problem: e.to_string() })
            })
            .collect::<Result<Vec<_>>>()?;
        safetensors::serialize(views, None)
            .map_err(|e| ModelError::Weights { key: String::new(), problem: e.to_string() })
    }

    /// Writes a safetensors file.
    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_safetensors()?).map_err(io_err(path))
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

    #[test]
    fn seeded_init_is_deterministic() {
        let a = Weights::random(&small(), 1).unwrap();
        assert_eq!(a, Weights::random(&small(), 1).unwrap());
        assert_ne!(a, Weights::random(&small(), 2).unwrap());
    }
}
