//! int8 MobileNetV1: calibration, and the quantized safetensors file (`docs/int8.md`).
//!
//! [`quantize`] runs the f32 model over calibration inputs, records every layer's output
//! range (MinMax), and quantizes each layer's batch-norm-folded weights per output channel.
//! The result is a [`Weights`] that carries its [`Quantization`]; [`to_safetensors`] and
//! [`from_safetensors`] write and read it under these names (`{conv}` is `first_conv.0`,
//! `bottleneck.{i}.0` (depthwise), `bottleneck.{i}.3` (pointwise) or `linear`):
//!
//! | key | dtype, shape | meaning |
//! |---|---|---|
//! | `{conv}.weight` | I8, the layer's OIHW shape | folded weights, per-channel symmetric |
//! | `{conv}.weight_scale` | F32 `[Cout]` | `real = q * scale[c]` |
//! | `{conv}.bias` | F32 `[Cout]` | folded bias (quantized to i32 at load, `b / (s_x s_w)`) |
//! | `{conv}.output_scale`, `{conv}.output_zero_point` | F32 `[1]`, U8 `[1]` | the layer's output |
//! | `input.scale`, `input.zero_point` | F32 `[1]`, U8 `[1]` | the model input |
//!
//! Metadata: `format = dwconv-int8-v1`, and `width`, `resolution`, `classes` of the model.
//! The global average pool keeps the last pointwise layer's parameters (a mean stays inside
//! the range of what it averages), so the FC layer's input is quantized with them.

use std::collections::{BTreeMap, HashMap};

use kernels::int8::{quantize_weights, weight_scales, QuantLayer, QuantParams};
use kernels::LayerKind;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::config::{conv_name, Config};
use crate::error::{ModelError, Result};
use crate::net::MobileNet;
use crate::weights::{Param, Quantization, Weights};

/// The format tag of a quantized file.
pub const FORMAT: &str = "dwconv-int8-v1";

/// Calibrates `weights` (f32) on `images` (`n` NCHW images, `[n, 3, r, r]`) and quantizes
/// them: MinMax ranges of the input and of every layer's output, per-channel symmetric
/// weights. `progress(done, n)` is called after each image.
pub fn quantize(
    config: &Config,
    weights: &Weights,
    images: &[f32],
    n: usize,
    threads: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Weights> {
    if weights.quantization().is_some() {
        return Err(ModelError::Config("these weights are already quantized".into()));
    }
    let r = config.resolution;
    let per = 3 * r * r;
    if n == 0 || images.len() != n * per {
        return Err(ModelError::Config(format!(
            "calibration needs at least one [3, {r}, {r}] image; got {} values for {n} images",
            images.len()
        )));
    }
    let infos = config.layers()?;
    // Unfused `direct`: every layer's output is observable.
    let set = kernels::kernel_set("direct")?;
    let mut net = MobileNet::new(*config, weights, &set, 1, threads)?;
    let mut ranges = vec![(0.0f32, 0.0f32); infos.len()];
    let mut input = (0.0f32, 0.0f32);
    for (i, img) in images.chunks_exact(per).enumerate() {
        for &x in img {
            input = (input.0.min(x), input.1.max(x));
        }
        net.forward_observed(img, &mut |layer, lo, hi| {
            let r = &mut ranges[layer];
            *r = (r.0.min(lo), r.1.max(hi));
        })?;
        progress(i + 1, n);
    }
    let mut params = BTreeMap::new();
    let (mut outputs, mut scales) = (Vec::new(), Vec::new());
    for (idx, info) in infos.iter().enumerate() {
        let (w, b, _) = weights.layer(idx, info.kind)?;
        let s = weight_scales(info.spec.out_channels, &w);
        let q = quantize_weights(&w, &s);
        let shape = weight_shape(info);
        let dequantized = dequantize(&q, &s);
        let name = conv_name(idx, info.kind);
        params.insert(format!("{name}.weight"), Param { shape, data: dequantized });
        params.insert(format!("{name}.bias"), Param { shape: vec![b.len()], data: b });
        outputs.push(QuantParams::from_range(ranges[idx].0, ranges[idx].1)?);
        scales.push(s);
    }
    let quant =
        Quantization { input: QuantParams::from_range(input.0, input.1)?, outputs, weight_scales: scales };
    Ok(Weights::quantized(params, quant))
}

/// The OIHW shape of a layer's weights.
fn weight_shape(info: &crate::config::LayerInfo) -> Vec<usize> {
    let s = &info.spec;
    vec![s.out_channels, s.in_per_group(), s.kernel_h, s.kernel_w]
        .into_iter()
        .take(if info.kind == LayerKind::FullyConnected { 2 } else { 4 })
        .collect()
}

fn dequantize(q: &[i8], scales: &[f32]) -> Vec<f32> {
    let per = q.len() / scales.len();
    q.iter().enumerate().map(|(i, &v)| v as f32 * scales[i / per]).collect()
}

/// Whether safetensors bytes are a quantized file (its metadata's format tag).
pub fn is_quantized(bytes: &[u8]) -> bool {
    SafeTensors::read_metadata(bytes)
        .ok()
        .and_then(|(_, m)| m.metadata().as_ref().and_then(|m| m.get("format").cloned()))
        .is_some_and(|f| f == FORMAT)
}

/// Serialises quantized weights (see the module docs for the names).
pub fn to_safetensors(weights: &Weights, config: &Config) -> Result<Vec<u8>> {
    let q = weights
        .quantization()
        .ok_or_else(|| ModelError::Config("only quantized weights are written as an int8 file".into()))?;
    let infos = config.layers()?;
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    tensors.push(("input.scale".into(), Dtype::F32, vec![1], f32s(&[q.input.scale])));
    tensors.push(("input.zero_point".into(), Dtype::U8, vec![1], vec![q.input.zero_point as u8]));
    for (idx, info) in infos.iter().enumerate() {
        let name = conv_name(idx, info.kind);
        let w = weights.get(&format!("{name}.weight"))?;
        let s = &q.weight_scales[idx];
        let iq = quantize_weights(&w.data, s);
        tensors.push((
            format!("{name}.weight"),
            Dtype::I8,
            w.shape.clone(),
            iq.iter().map(|&x| x as u8).collect(),
        ));
        tensors.push((format!("{name}.weight_scale"), Dtype::F32, vec![s.len()], f32s(s)));
        let b = weights.get(&format!("{name}.bias"))?;
        tensors.push((format!("{name}.bias"), Dtype::F32, vec![b.data.len()], f32s(&b.data)));
        let o = q.outputs[idx];
        tensors.push((format!("{name}.output_scale"), Dtype::F32, vec![1], f32s(&[o.scale])));
        tensors.push((format!("{name}.output_zero_point"), Dtype::U8, vec![1], vec![o.zero_point as u8]));
    }
    let views = tensors
        .iter()
        .map(|(k, d, s, b)| {
            TensorView::new(*d, s.clone(), b)
                .map(|v| (k.clone(), v))
                .map_err(|e| ModelError::Weights { key: k.clone(), problem: e.to_string() })
        })
        .collect::<Result<Vec<_>>>()?;
    let meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("width".to_string(), config.width.to_string()),
        ("resolution".to_string(), config.resolution.to_string()),
        ("classes".to_string(), config.classes.to_string()),
    ]);
    safetensors::serialize(views, Some(meta))
        .map_err(|e| ModelError::Weights { key: String::new(), problem: e.to_string() })
}

fn bad(key: &str, problem: impl Into<String>) -> ModelError {
    ModelError::Weights { key: key.to_string(), problem: problem.into() }
}

/// Parses a quantized file for `config`: every key, dtype and shape checked, and every scale
/// and zero point (a one-line error naming the key).
pub fn from_safetensors(bytes: &[u8], config: &Config) -> Result<Weights> {
    let st =
        SafeTensors::deserialize(bytes).map_err(|e| bad("", format!("not a valid safetensors file: {e}")))?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| bad("", e.to_string()))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(bad("", format!("not an int8 file (metadata format is not {FORMAT:?})")));
    }
    for (key, want) in [
        ("width", config.width.to_string()),
        ("resolution", config.resolution.to_string()),
        ("classes", config.classes.to_string()),
    ] {
        let got = meta.get(key).cloned().unwrap_or_default();
        let same = match key {
            "width" => got.parse::<f64>().ok() == Some(config.width),
            _ => got == want,
        };
        if !same {
            return Err(bad(
                key,
                format!("the file is quantized for {key} {got}, the model asks for {want}"),
            ));
        }
    }
    let get = |key: &str, dtype: Dtype, shape: &[usize]| -> Result<Vec<u8>> {
        let v = st.tensor(key).map_err(|_| bad(key, format!("missing (expected {dtype:?} {shape:?})")))?;
        if v.dtype() != dtype {
            return Err(bad(key, format!("dtype {:?}, expected {dtype:?}", v.dtype())));
        }
        if v.shape() != shape {
            return Err(bad(key, format!("shape {:?}, expected {shape:?}", v.shape())));
        }
        Ok(v.data().to_vec())
    };
    let f32s = |b: Vec<u8>| {
        b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect::<Vec<f32>>()
    };
    let params_of = |prefix: &str| -> Result<QuantParams> {
        let scale = f32s(get(&format!("{prefix}scale"), Dtype::F32, &[1])?)[0];
        let zp = get(&format!("{prefix}zero_point"), Dtype::U8, &[1])?[0];
        QuantParams::new(scale, zp as i32).map_err(|e| bad(&format!("{prefix}scale"), e.to_string()))
    };
    let input = params_of("input.")?;
    let infos = config.layers()?;
    let mut params = BTreeMap::new();
    let (mut outputs, mut scales) = (Vec::new(), Vec::new());
    let mut expected = vec!["input.scale".to_string(), "input.zero_point".to_string()];
    for (idx, info) in infos.iter().enumerate() {
        let name = conv_name(idx, info.kind);
        let c = info.spec.out_channels;
        let shape = weight_shape(info);
        let q: Vec<i8> =
            get(&format!("{name}.weight"), Dtype::I8, &shape)?.into_iter().map(|x| x as i8).collect();
        let skey = format!("{name}.weight_scale");
        let s = f32s(get(&skey, Dtype::F32, &[c])?);
        if let Some(bad_scale) = s.iter().find(|x| !(x.is_finite() && **x > 0.0)) {
            return Err(bad(&skey, format!("scale must be finite and positive, got {bad_scale}")));
        }
        let b = f32s(get(&format!("{name}.bias"), Dtype::F32, &[c])?);
        outputs.push(params_of(&format!("{name}.output_"))?);
        params.insert(format!("{name}.weight"), Param { shape, data: dequantize(&q, &s) });
        params.insert(format!("{name}.bias"), Param { shape: vec![c], data: b });
        scales.push(s);
        for f in ["weight", "weight_scale", "bias", "output_scale", "output_zero_point"] {
            expected.push(format!("{name}.{f}"));
        }
    }
    if let Some(extra) = st.names().into_iter().find(|n| !expected.iter().any(|e| e == *n)) {
        return Err(bad(extra, "unexpected key (not in an int8 file for this configuration)"));
    }
    Ok(Weights::quantized(params, Quantization { input, outputs, weight_scales: scales }))
}

/// A built-in synthetic calibration set: `n` seeded images of ImageNet-normalised noise
/// (uniform pixels in 0..=1 through the mean / std normalisation), for `bench --precision int8`
/// without a quantized file.
pub fn synthetic_calibration(config: &Config, n: usize, seed: u64) -> Vec<f32> {
    const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
    const STD: [f32; 3] = [0.229, 0.224, 0.225];
    let r = config.resolution;
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut out = Vec::with_capacity(n * 3 * r * r);
    for _ in 0..n {
        for c in 0..3 {
            for _ in 0..r * r {
                out.push((next() - MEAN[c]) / STD[c]);
            }
        }
    }
    out
}

/// The parameters a synthetic layer (tune's races, benches) runs with at each storage type:
/// none for the floats; for int8, activations over [-2, 2] in and [0, 6] out, and the
/// weights' own per-channel scales.
pub trait Synthetic: kernels::Storage {
    fn synthetic(spec: &kernels::ConvSpec, weights_oihw: &[f32]) -> Self::Quant;
}

macro_rules! float_synthetic {
    ($($t:ty),*) => {$(
        impl Synthetic for $t {
            fn synthetic(_: &kernels::ConvSpec, _: &[f32]) {}
        }
    )*};
}
float_synthetic!(f32, half::f16, half::bf16);

impl Synthetic for u8 {
    fn synthetic(spec: &kernels::ConvSpec, weights_oihw: &[f32]) -> QuantLayer {
        QuantLayer {
            input: QuantParams { scale: 4.0 / 255.0, zero_point: 128 },
            output: QuantParams { scale: 6.0 / 255.0, zero_point: 0 },
            weight_scales: weight_scales(spec.out_channels, weights_oihw),
        }
    }
}

/// Loads a weights file of either kind: a quantized file (by its format tag) or an f32 /
/// f16 / bf16 file of the reference model's names.
pub fn load(path: &std::path::Path, config: &Config) -> Result<Weights> {
    let bytes = std::fs::read(path).map_err(crate::error::io_err(path))?;
    if is_quantized(&bytes) {
        from_safetensors(&bytes, config)
    } else {
        Weights::from_safetensors(&bytes, config)
    }
}

/// Loads calibration inputs: an f32 `.npy` batch `[N, 3, r, r]`, one image, or a folder of
/// PNG / JPEG images (sorted by name), each preprocessed as `run` does. Returns `(n, data)`.
pub fn load_calibration(path: &std::path::Path, resolution: usize) -> Result<(usize, Vec<f32>)> {
    if !path.is_dir() {
        let b = crate::input::load(path, resolution)?;
        return Ok((b.n, b.data));
    }
    let mut files: Vec<_> = std::fs::read_dir(path)
        .map_err(crate::error::io_err(path))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ["png", "jpg", "jpeg"].contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ModelError::Config(format!("{}: no PNG or JPEG images to calibrate on", path.display())));
    }
    let mut data = Vec::new();
    for f in &files {
        data.extend(crate::input::load(f, resolution)?.data);
    }
    Ok((files.len(), data))
}

/// Weights for `--precision int8` when no file is given: the seeded f32 weights quantized
/// on [`synthetic_calibration`] (`images` of them).
pub fn seeded(config: &Config, seed: u64, images: usize, threads: usize) -> Result<Weights> {
    let w = Weights::random(config, seed)?;
    let calib = synthetic_calibration(config, images, seed);
    quantize(config, &w, &calib, images, threads, &mut |_, _| {})
}
