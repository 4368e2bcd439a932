//! MobileNetV1's configuration and its layer table (shapes, ops and costs).

use kernels::cost::{conv_cost, Cost};
use kernels::{ConvSpec, LayerKind};

use crate::error::{ModelError, Result};

/// Output channels and depthwise stride of the 13 depthwise-separable blocks (1.0 width).
pub const BLOCKS: [(usize, usize); 13] = [
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
];

/// Output channels of conv0 at width 1.0.
pub const CONV0_CHANNELS: usize = 32;

/// A MobileNetV1 variant: width multiplier, input resolution and number of classes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Width multiplier alpha in (0, 1] and above; channels are `max(8, floor(c * alpha))`.
    pub width: f64,
    /// Input height and width: a multiple of 32, at least 32.
    pub resolution: usize,
    /// Number of output classes.
    pub classes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { width: 1.0, resolution: 224, classes: 1000 }
    }
}

/// One layer of the table: conv0, dw1..dw13, pw1..pw13 (interleaved) and fc.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerInfo {
    pub name: String,
    pub kind: LayerKind,
    pub spec: ConvSpec,
    /// Input height, width, channels (one image).
    pub input_hw: (usize, usize),
    pub output_hw: (usize, usize),
    /// Cost for one image, with the (folded) bias.
    pub cost: Cost,
}

impl LayerInfo {
    /// A short op description, for example `dw 3x3 s2` or `1x1 64->128`.
    pub fn op(&self) -> String {
        let s = &self.spec;
        match self.kind {
            LayerKind::Dense => format!(
                "conv {}x{} s{} {}->{}",
                s.kernel_h, s.kernel_w, s.stride_h, s.in_channels, s.out_channels
            ),
            LayerKind::Depthwise => {
                format!("dw {}x{} s{} c{}", s.kernel_h, s.kernel_w, s.stride_h, s.in_channels)
            }
            LayerKind::Pointwise => format!("pw 1x1 {}->{}", s.in_channels, s.out_channels),
            LayerKind::FullyConnected => format!("pool + fc {}->{}", s.in_channels, s.out_channels),
        }
    }
}

impl Config {
    /// Checks the configuration, with a message saying what is wrong.
    pub fn validate(&self) -> Result<()> {
        if !(self.width.is_finite() && self.width > 0.0 && self.width <= 4.0) {
            return Err(ModelError::Config(format!(
                "width multiplier must be in (0, 4], got {}",
                self.width
            )));
        }
        if self.resolution < 32 || !self.resolution.is_multiple_of(32) || self.resolution > 8192 {
            return Err(ModelError::Config(format!(
                "resolution must be a multiple of 32 between 32 and 8192, got {}",
                self.resolution
            )));
        }
        if self.classes == 0 || self.classes > 1 << 20 {
            return Err(ModelError::Config(format!("classes must be in 1..=1048576, got {}", self.classes)));
        }
        Ok(())
    }

    /// Channels after the width multiplier: `max(8, floor(c * alpha))` (TF-slim's rule).
    pub fn channels(&self, c: usize) -> usize {
        ((c as f64 * self.width + 1e-9).floor() as usize).max(8)
    }

    /// Channels of the last block (the FC layer's input).
    pub fn feature_channels(&self) -> usize {
        self.channels(BLOCKS[12].0)
    }

    /// The layer table for one image, in execution order.
    pub fn layers(&self) -> Result<Vec<LayerInfo>> {
        self.table(false)
    }

    /// The layer table of the network with each depthwise-separable block (dw 3x3 + pw 1x1)
    /// replaced by the standard 3x3 convolution it factorises (same channels, stride and
    /// padding; named `conv1`..`conv13`): the paper's Table 4 "Conv MobileNet" row, 4,866M
    /// mult-adds and 29.3M parameters at 1.0-224, against 569M and 4.2M. Only counted,
    /// never run (`mobilenet info --standard-conv`).
    pub fn standard_conv_layers(&self) -> Result<Vec<LayerInfo>> {
        self.table(true)
    }

    fn table(&self, standard: bool) -> Result<Vec<LayerInfo>> {
        self.validate()?;
        let mut out = Vec::with_capacity(28);
        let mut hw = (self.resolution, self.resolution);
        let mut push = |name: String, kind, spec: ConvSpec, hw: &mut (usize, usize)| -> Result<()> {
            let output_hw = spec.output_hw(hw.0, hw.1)?;
            let cost = conv_cost(&spec, hw.0, hw.1, true)?;
            out.push(LayerInfo { name, kind, spec, input_hw: *hw, output_hw, cost });
            *hw = output_hw;
            Ok(())
        };
        let c0 = self.channels(CONV0_CHANNELS);
        push("conv0".into(), LayerKind::Dense, ConvSpec::dense(3, c0, 3, 2, 1), &mut hw)?;
        let mut cin = c0;
        for (i, &(cout, stride)) in BLOCKS.iter().enumerate() {
            let cout = self.channels(cout);
            if standard {
                let spec = ConvSpec::dense(cin, cout, 3, stride, 1);
                push(format!("conv{}", i + 1), LayerKind::Dense, spec, &mut hw)?;
            } else {
                let dw = ConvSpec::depthwise(cin, 3, stride, 1);
                push(format!("dw{}", i + 1), LayerKind::Depthwise, dw, &mut hw)?;
                push(format!("pw{}", i + 1), LayerKind::Pointwise, ConvSpec::pointwise(cin, cout), &mut hw)?;
            }
            cin = cout;
        }
        // Global average pooling, then the FC layer as a 1x1 convolution on a 1x1 image.
        let mut pooled = (1, 1);
        push("fc".into(), LayerKind::FullyConnected, ConvSpec::pointwise(cin, self.classes), &mut pooled)?;
        if let Some(fc) = out.last_mut() {
            fc.input_hw = hw;
        }
        Ok(out)
    }

    /// Total cost for one image.
    pub fn total_cost(&self) -> Result<Cost> {
        Ok(self.layers()?.iter().map(|l| l.cost).sum())
    }
}

/// The conv name of layer `idx` in the reference model (`first_conv.0`, `bottleneck.{i}.0`
/// or `.3`, `linear`).
pub fn conv_name(idx: usize, kind: kernels::LayerKind) -> String {
    match (idx, kind) {
        (_, kernels::LayerKind::FullyConnected) => "linear".into(),
        (0, _) => "first_conv.0".into(),
        (i, _) if i % 2 == 1 => format!("bottleneck.{}.0", (i - 1) / 2),
        (i, _) => format!("bottleneck.{}.3", (i - 1) / 2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(width: f64, resolution: usize) -> Config {
        Config { width, resolution, classes: 1000 }
    }

    /// Checks a layer table's length and its summed multiply-adds and parameters; returns
    /// the sum.
    fn assert_totals(layers: &[LayerInfo], len: usize, macs: u64, params: u64) -> Cost {
        assert_eq!(layers.len(), len);
        let total: Cost = layers.iter().map(|l| l.cost).sum();
        assert_eq!((total.macs, total.params()), (macs, params));
        total
    }

    #[test]
    fn paper_totals_for_1_0_224() {
        let layers = cfg(1.0, 224).layers().unwrap();
        let total = assert_totals(&layers, 28, 568_740_352, 4_221_032);
        let share = |kind| {
            let m: u64 = layers.iter().filter(|l| l.kind == kind).map(|l| l.cost.macs).sum();
            (10_000.0 * m as f64 / total.macs as f64).round() / 100.0
        };
        assert_eq!(share(LayerKind::Pointwise), 94.86);
        assert_eq!(share(LayerKind::Depthwise), 3.06);
        assert_eq!(share(LayerKind::Dense), 1.91);
        assert_eq!(share(LayerKind::FullyConnected), 0.18);
        assert_eq!(layers[0].output_hw, (112, 112));
        assert_eq!(layers[26].output_hw, (7, 7));
        assert_eq!(layers[27].input_hw, (7, 7));
    }

    #[test]
    fn standard_conv_mobilenet_is_the_paper_table_4_row() {
        let layers = cfg(1.0, 224).standard_conv_layers().unwrap();
        // Paper: 4,866M mult-adds, 29.3M parameters.
        let total = assert_totals(&layers, 15, 4_867_293_184, 29_288_104);
        // Within 0.03% of the paper's figure (which counts 1.3M fewer).
        assert!((total.macs as f64 / 1e6 - 4866.0).abs() / 4866.0 < 3e-4);
        assert_eq!((total.params() as f64 / 1e5).round() / 10.0, 29.3);
        assert_eq!(layers[13].name, "conv13");
        assert_eq!(layers[13].output_hw, (7, 7));
        assert!(layers[1..14].iter().all(|l| l.kind == LayerKind::Dense && l.spec.kernel_h == 3));
        // conv0 and fc are the same layers as in MobileNetV1.
        let ours = cfg(1.0, 224).layers().unwrap();
        assert_eq!(layers[0], ours[0]);
        assert_eq!(layers[14], ours[27]);
    }

    #[test]
    fn paper_tables_6_and_7_within_rounding() {
        // (width, resolution, paper MACs in millions, paper params in millions)
        let rows = [
            (0.75, 224, 325.0, 2.6),
            (0.5, 224, 149.0, 1.3),
            (0.25, 224, 41.0, 0.5),
            (1.0, 192, 418.0, 4.2),
            (1.0, 160, 290.0, 4.2),
            (1.0, 128, 186.0, 4.2),
        ];
        for (w, r, macs_m, params_m) in rows {
            let c = cfg(w, r).total_cost().unwrap();
            let got_macs = c.macs as f64 / 1e6;
            let got_params = c.params() as f64 / 1e6;
            assert!(
                (got_macs - macs_m).abs() <= 0.5 + 0.005 * macs_m,
                "{w}-{r}: {got_macs} M MACs vs {macs_m}"
            );
            assert!((got_params - params_m).abs() <= 0.05, "{w}-{r}: {got_params} M params vs {params_m}");
        }
    }

    #[test]
    fn channel_rule_and_bad_configs() {
        let c = cfg(0.25, 224);
        assert_eq!(c.channels(32), 8);
        assert_eq!(c.channels(1024), 256);
        assert_eq!(cfg(0.1, 224).channels(32), 8);
        assert!(cfg(1.0, 100).validate().is_err());
        assert!(cfg(1.0, 0).validate().is_err());
        assert!(cfg(0.0, 224).validate().is_err());
        assert!(cfg(f64::NAN, 224).validate().is_err());
        assert!(Config { classes: 0, ..cfg(1.0, 224) }.validate().is_err());
        let l = cfg(1.0, 32).layers().unwrap();
        assert_eq!(l[26].output_hw, (1, 1));
    }
}
