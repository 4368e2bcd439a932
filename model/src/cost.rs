//! `mobilenet cost`: the seed's arithmetic for a layer of the reader's own. One convolution
//! (input HxWxC, KxK kernel, stride, padding, N outputs) counted three ways side by side:
//! standard, grouped (with `--groups`), and depthwise-separable (a KxK depthwise layer, then
//! a 1x1 pointwise layer to N outputs), with the ratio `1/N + 1/K^2` of MobileNetV1's
//! equation 5. The counting is [`kernels::cost::conv_cost`]'s (its module docs give the
//! conventions); this module lays it out and says where the explainer this project grew
//! from prints a figure that its own formula does not give.

use kernels::cost::{conv_cost, separable_ratio, Cost};
use kernels::ConvSpec;

use crate::error::{ModelError, Result};
use crate::units::group;

/// One layer to count: `input` is (height, width, channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layer {
    pub input: (usize, usize, usize),
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub out: usize,
    pub groups: Option<usize>,
}

/// The explainer's worked example (227x227x3, 11x11, stride 4, no padding, 6 outputs) and
/// what it prints: 2,178 parameters (weights, no bias) and 13,176,900 FLOPs for the
/// standard layer, which its formula gives; 726 parameters and 2,205,225 FLOPs for 3 groups,
/// where its formula `2 (Cin/G) K^2 Hout Wout Cout` gives 4,392,300.
pub const EXPLAINER: Layer =
    Layer { input: (227, 227, 3), kernel: 11, stride: 4, padding: 0, out: 6, groups: None };
/// The explainer's printed FLOPs of the grouped (3 groups) example.
pub const EXPLAINER_GROUPED_FLOPS: u64 = 2_205_225;
/// The groups of the explainer's grouped example.
pub const EXPLAINER_GROUPS: usize = 3;

/// The counts of one layer, three ways.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub layer: Layer,
    /// Output height and width.
    pub out_hw: (usize, usize),
    pub standard: Cost,
    pub grouped: Option<Cost>,
    /// The depthwise KxK layer and the pointwise 1x1 layer of the separable version.
    pub depthwise: Cost,
    pub pointwise: Cost,
}

/// Parses `HxWxC` (`227x227x3`) into (height, width, channels).
pub fn parse_shape(s: &str) -> std::result::Result<(usize, usize, usize), String> {
    let parts: Vec<&str> = s.split(['x', 'X']).collect();
    let bad = || format!("expected HxWxC with positive integers, e.g. 227x227x3, got {s:?}");
    match parts.as_slice() {
        [h, w, c] => {
            let n = |p: &str| p.trim().parse::<usize>().ok().filter(|&v| v > 0).ok_or_else(bad);
            Ok((n(h)?, n(w)?, n(c)?))
        }
        _ => Err(bad()),
    }
}

/// Counts `layer` three ways. Errors (never panics) on a kernel larger than the padded
/// input, groups that do not divide both channel counts, zero sizes, or overflow.
pub fn compare(layer: Layer) -> Result<Comparison> {
    let (h, w, c) = layer.input;
    let (k, s, p, n) = (layer.kernel, layer.stride, layer.padding, layer.out);
    let count = |spec: ConvSpec| -> Result<Cost> {
        spec.validate()?;
        Ok(conv_cost(&spec, h, w, true)?)
    };
    let dense = ConvSpec::dense(c, n, k, s, p);
    let standard = count(dense)?;
    let grouped = match layer.groups {
        Some(0) => return Err(ModelError::Config("--groups must be positive".into())),
        Some(g) => Some(count(dense.with_groups(g))?),
        None => None,
    };
    let depthwise = count(ConvSpec::depthwise(c, k, s, p))?;
    let out_hw = dense.output_hw(h, w)?;
    let pointwise = conv_cost(&ConvSpec::pointwise(c, n), out_hw.0, out_hw.1, true)?;
    Ok(Comparison { layer, out_hw, standard, grouped, depthwise, pointwise })
}

impl Comparison {
    /// The separable version: both layers together.
    pub fn separable(&self) -> Cost {
        self.depthwise + self.pointwise
    }

    /// MACs of the separable version over the standard one (equals `1/N + 1/K^2`).
    pub fn measured_ratio(&self) -> f64 {
        self.separable().macs as f64 / self.standard.macs as f64
    }

    /// Whether this is the explainer's worked example (any `--groups`).
    pub fn is_explainer_example(&self) -> bool {
        Layer { groups: None, ..self.layer } == EXPLAINER
    }

    /// The table and the notes `mobilenet cost` prints.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let l = &self.layer;
        let (h, w, c) = l.input;
        let (k, n) = (l.kernel, l.out);
        let (oh, ow) = self.out_hw;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "layer: {h}x{w}x{c} input, {k}x{k} kernel, stride {}, padding {}, {n} outputs -> {oh}x{ow}x{n} (one image)\n",
            l.stride, l.padding
        );
        let _ = writeln!(
            s,
            "{:<32} {:>13} {:>13} {:>15} {:>15}",
            "version", "weights", "params", "MACs", "FLOPs"
        );
        let mut row = |name: &str, cost: &Cost| {
            let _ = writeln!(
                s,
                "{name:<32} {:>13} {:>13} {:>15} {:>15}",
                group(cost.weights),
                group(cost.params()),
                group(cost.macs),
                group(cost.flops)
            );
        };
        row("standard", &self.standard);
        if let (Some(g), Some(cost)) = (l.groups, &self.grouped) {
            row(&format!("grouped, {g} groups"), cost);
        }
        row("depthwise-separable", &self.separable());
        row(&format!("  depthwise {k}x{k}, {c} groups"), &self.depthwise);
        row(&format!("  pointwise 1x1 {c}->{n}"), &self.pointwise);
        let _ = writeln!(
            s,
            "\nparams = weights + biases (one per output channel); FLOPs = 2 x MACs (the bias add counted, as the \
             explainer counts)"
        );
        let _ = writeln!(
            s,
            "depthwise-separable / standard, MACs: {:.6}; 1/N + 1/K^2 = 1/{n} + 1/{} = {:.6}",
            self.measured_ratio(),
            k * k,
            separable_ratio(n, k)
        );
        if let (Some(g), Some(cost)) = (l.groups, &self.grouped) {
            let _ = writeln!(
                s,
                "grouped FLOPs = 2 x (Cin/G) x K x K x Hout x Wout x Cout = 2 x {} x {k} x {k} x {oh} x {ow} x {n} = {}",
                c / g,
                group(cost.flops)
            );
        }
        s.push('\n');
        s.push_str(&self.explainer_note());
        s
    }

    /// Where the explainer's printed figures agree with its formula, and where not.
    fn explainer_note(&self) -> String {
        if !self.is_explainer_example() {
            return "explainer: no printed figure for this layer (its worked example is --input 227x227x3 \
                    --kernel 11 --stride 4 --out 6 [--groups 3])\n"
                .into();
        }
        let mut s = format!(
            "explainer: its standard example prints {} parameters (the weights, without biases) and {} FLOPs: \
             the formula agrees.\n",
            group(self.standard.weights),
            group(self.standard.flops)
        );
        match (self.layer.groups, &self.grouped) {
            (Some(EXPLAINER_GROUPS), Some(g)) => s.push_str(&format!(
                "explainer: for the grouped version it prints {} weights (agrees) but {} FLOPs, which its own \
                 formula does not give: the formula gives {} ({} MACs); this table follows the formula.\n",
                group(g.weights),
                group(EXPLAINER_GROUPED_FLOPS),
                group(g.flops),
                group(g.macs)
            )),
            _ => s.push_str(&format!(
                "explainer: with --groups {EXPLAINER_GROUPS} it prints {} FLOPs for the grouped version, which \
                 its own formula does not give (see --groups {EXPLAINER_GROUPS}).\n",
                group(EXPLAINER_GROUPED_FLOPS)
            )),
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_explainer_example_three_ways() {
        let c = compare(Layer { groups: Some(3), ..EXPLAINER }).unwrap();
        assert_eq!(c.out_hw, (55, 55));
        assert_eq!((c.standard.weights, c.standard.flops, c.standard.macs), (2_178, 13_176_900, 6_588_450));
        let g = c.grouped.unwrap();
        assert_eq!((g.weights, g.flops, g.macs), (726, 4_392_300, 2_196_150));
        assert_eq!(c.depthwise.macs, 55 * 55 * 3 * 121);
        assert_eq!(c.pointwise.macs, 55 * 55 * 3 * 6);
        assert!((c.measured_ratio() - (1.0 / 6.0 + 1.0 / 121.0)).abs() < 1e-12);
        let text = c.render();
        for needle in
            ["2,205,225", "4,392,300", "2,196,150", "13,176,900", "1/6 + 1/121", "grouped, 3 groups"]
        {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        assert!(c.is_explainer_example());
    }

    #[test]
    fn another_layer_has_no_explainer_figure() {
        let l = Layer { input: (14, 14, 512), kernel: 3, stride: 1, padding: 1, out: 512, groups: None };
        let c = compare(l).unwrap();
        assert!(c.grouped.is_none());
        assert!((c.measured_ratio() - separable_ratio(512, 3)).abs() < 1e-12);
        let text = c.render();
        assert!(text.contains("no printed figure") && !text.contains("grouped,"), "{text}");
    }

    #[test]
    fn bad_layers_are_errors() {
        let bad = |l: Layer| compare(l).unwrap_err().to_string();
        assert!(bad(Layer { groups: Some(4), ..EXPLAINER }).contains("groups"));
        assert!(bad(Layer { groups: Some(0), ..EXPLAINER }).contains("groups"));
        assert!(bad(Layer { kernel: 300, ..EXPLAINER }).contains("larger than the padded input"));
        assert!(bad(Layer { stride: 0, ..EXPLAINER }).contains("stride"));
        assert_eq!(parse_shape("227x227x3"), Ok((227, 227, 3)));
        assert!(parse_shape("227x227").is_err());
        assert!(parse_shape("0x2x3").is_err());
        assert!(parse_shape("axbxc").is_err());
    }
}
