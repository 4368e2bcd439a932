//! How accurate Winograd is (the report `results/winograd-accuracy.md`; it lives in the
//! harness, not in `kernels`, because it walks the registry): max and mean error against the f64-accumulating naive oracle,
//! per tile size, layer kind and data distribution, in the relative measure of
//! [`kernels::testing`] (`|got - want| / (|bias| + sum |w| |x|)`), the measure each algorithm's
//! `tolerance()` bounds. A plain f32 direct sum is measured alongside as the yardstick: it
//! is what any non-Winograd f32 kernel costs in accuracy.

use kernels::testing::{agreement, random_values, Case};
use kernels::{registry, Activation, ConvAlgorithm, ConvSpec, Dims, Result};

/// One measurement: an algorithm (or the f32 direct yardstick) on one layer and data set.
#[derive(Debug, Clone)]
pub struct AccuracyRow {
    /// The algorithm name, or `direct-f32` for the yardstick.
    pub algorithm: String,
    /// Output tile side `m` (0 for the yardstick).
    pub tile: usize,
    /// `dense` or `depthwise`, with the shape.
    pub layer: String,
    /// The data distribution.
    pub data: &'static str,
    pub max_rel: f64,
    pub mean_rel: f64,
    /// The algorithm's promised bound (0 for the yardstick).
    pub tolerance: f64,
}

/// Random draws per layer and data set.
pub const SEEDS: u64 = 4;

/// Whether `tolerance()` bounds the rows of data set `data`: the MobileNet range and the
/// test data do; `large` (inputs 1e4, bias 1) and `mixed` (six decades) put a dynamic range
/// inside one tile, and Winograd's error is relative to the tile, not the output.
pub fn bounded(data: &str) -> bool {
    data.starts_with("mobilenet") || data.starts_with("uniform")
}

/// The data distributions: MobileNetV1's activations are ReLU6 outputs in `[0, 6]` with
/// BN-folded weights mostly within +-1; the others stress magnitude and dynamic range.
const DATA: [&str; 4] = ["mobilenet [0,6) x +-0.5", "uniform +-1", "large +-1e4", "mixed 1e-3..1e3"];

fn values(kind: usize, len: usize, seed: u64, is_input: bool) -> Vec<f32> {
    let r = random_values(len, seed);
    match kind {
        0 if is_input => r.iter().map(|x| (x + 1.0) * 3.0).collect(),
        0 => r.iter().map(|x| x * 0.5).collect(),
        1 => r,
        2 if is_input => r.iter().map(|x| x * 1e4).collect(),
        2 => r,
        _ => {
            // Sign * 10^u with u uniform in [-3, 3): six decades in one tile.
            let e = random_values(len, seed ^ 0x5555);
            r.iter().zip(e).map(|(s, u)| s.signum() * 10f32.powf(3.0 * u)).collect()
        }
    }
}

/// The layers measured: MobileNetV1-like depthwise and dense 3x3 stride-1 shapes, small
/// enough for the f64 oracle to run in a second, and padding 2 on a small image: its corner
/// outputs see a single input pixel while their tile holds up to `a x a`, the worst case of
/// the tile-relative error (found by the proptest: F(6) 4.8e-4 there, 2.3e-5 in the interior).
fn layers() -> Vec<(ConvSpec, Dims)> {
    vec![
        (ConvSpec::depthwise(64, 3, 1, 1), Dims::new(1, 28, 28, 64)),
        (ConvSpec::depthwise(64, 3, 1, 2), Dims::new(4, 7, 18, 64)),
        (ConvSpec::dense(64, 32, 3, 1, 1), Dims::new(1, 14, 14, 64)),
        (ConvSpec::dense(8, 32, 3, 1, 2), Dims::new(4, 7, 18, 8)),
        (ConvSpec::dense(256, 16, 3, 1, 1), Dims::new(1, 10, 10, 256)),
    ]
}

fn layer_name(spec: &ConvSpec, d: Dims) -> String {
    let kind = if spec.groups > 1 { "depthwise" } else { "dense" };
    format!("{kind} {}x{}x{}->{} pad {}", d.h, d.w, d.c, spec.out_channels, spec.padding.top)
}

/// A plain f32-accumulating direct convolution (stride 1, no dilation): the yardstick.
fn direct_f32(case: &Case) -> Result<Vec<f32>> {
    let (spec, d) = (&case.spec, case.in_dims);
    let o = spec.output_dims(d)?;
    let (ipg, opg) = (spec.in_per_group(), spec.out_per_group());
    let mut out = vec![0.0f32; o.len()?];
    for b in 0..o.n {
        let (inp, res) = (&case.input[b * d.h * d.w * d.c..], &mut out[b * o.h * o.w * o.c..]);
        for y in 0..o.h {
            for x in 0..o.w {
                for oc in 0..o.c {
                    let g = oc / opg;
                    let mut acc = case.bias[oc];
                    for ky in 0..3 {
                        let Some(iy) = (y + ky).checked_sub(spec.padding.top).filter(|&v| v < d.h) else {
                            continue;
                        };
                        for kx in 0..3 {
                            let Some(ix) = (x + kx).checked_sub(spec.padding.left).filter(|&v| v < d.w)
                            else {
                                continue;
                            };
                            for i in 0..ipg {
                                acc += inp[(iy * d.w + ix) * d.c + g * ipg + i]
                                    * case.weights[((oc * ipg + i) * 3 + ky) * 3 + kx];
                            }
                        }
                    }
                    res[(y * o.w + x) * o.c + oc] = acc;
                }
            }
        }
    }
    Ok(out)
}

/// Measures every runnable Winograd algorithm (and the f32 direct yardstick) on every layer
/// of [`layers`] and every data distribution, [`SEEDS`] seeds each (the worst and the mean).
pub fn accuracy() -> Result<Vec<AccuracyRow>> {
    let algos: Vec<&dyn ConvAlgorithm> =
        registry::algorithms()?.into_iter().filter(|a| a.family() == kernels::Family::Winograd).collect();
    let mut rows = Vec::new();
    for (spec, dims) in layers() {
        for (k, &data) in DATA.iter().enumerate() {
            let mut acc: Vec<(f64, f64)> = vec![(0.0, 0.0); algos.len() + 1];
            for seed in 0..SEEDS {
                let s = seed * 7919 + k as u64;
                let case = Case {
                    spec,
                    activation: Activation::None,
                    in_dims: dims,
                    input: values(k, dims.len()?, s, true),
                    weights: values(k, spec.weights_len()?, s ^ 0xABCD, false),
                    bias: values(k, spec.out_channels, s ^ 0x1234, false),
                };
                let (want, scale) = case.reference()?;
                let mut record = |i: usize, got: &[f32]| {
                    let a = agreement(got, &want, &scale);
                    acc[i].0 = acc[i].0.max(a.max_rel);
                    acc[i].1 += a.mean_rel / SEEDS as f64;
                };
                record(0, &direct_f32(&case)?);
                for (i, algo) in algos.iter().enumerate() {
                    record(i + 1, &case.run(*algo, 1)?);
                }
            }
            let layer = layer_name(&spec, dims);
            rows.push(AccuracyRow {
                algorithm: "direct-f32".into(),
                tile: 0,
                layer: layer.clone(),
                data,
                max_rel: acc[0].0,
                mean_rel: acc[0].1,
                tolerance: 0.0,
            });
            for (i, algo) in algos.iter().enumerate() {
                rows.push(AccuracyRow {
                    algorithm: algo.name().into(),
                    tile: algo.winograd_tile().unwrap_or(0),
                    layer: layer.clone(),
                    data,
                    max_rel: acc[i + 1].0,
                    mean_rel: acc[i + 1].1,
                    tolerance: algo.tolerance(),
                });
            }
        }
    }
    Ok(rows)
}

/// The markdown table of [`accuracy`]'s rows, one line per tile size, layer and data set
/// (the worst flavour of each tile size; flavours differ only in FMA contraction).
pub fn accuracy_table(rows: &[AccuracyRow]) -> String {
    let mut out = String::from(
        "| tile | layer | data | max rel err | mean rel err | tolerance | worst flavour |\n\
         |---|---|---|---:|---:|---:|---|\n",
    );
    let mut keys: Vec<(usize, String, &str)> = Vec::new();
    for r in rows {
        let key = (r.tile, r.layer.clone(), r.data);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    for (tile, layer, data) in keys {
        let group: Vec<&AccuracyRow> =
            rows.iter().filter(|r| r.tile == tile && r.layer == layer && r.data == data).collect();
        let worst = group.iter().max_by(|a, b| a.max_rel.total_cmp(&b.max_rel)).expect("non-empty group");
        let mean = group.iter().map(|r| r.mean_rel).fold(0.0, f64::max);
        let name = if tile == 0 { "f32 direct".to_string() } else { format!("F({tile}x{tile},3x3)") };
        let tol = if tile == 0 { "-".to_string() } else { format!("{:.0e}", worst.tolerance) };
        out += &format!(
            "| {name} | {layer} | {data} | {:.2e} | {:.2e} | {tol} | {} |\n",
            worst.max_rel, mean, worst.algorithm
        );
    }
    out
}
