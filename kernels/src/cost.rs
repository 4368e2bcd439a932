//! The cost model: parameters, multiply-accumulates and FLOPs of a convolution.
//!
//! Conventions (those of the MobileNetV1 paper and its explainer):
//! - one output of a (grouped) convolution costs `(in/groups) * kh * kw` MACs;
//! - FLOPs = 2 x MACs when a bias is added (the `n` products, `n - 1` sums and the bias add
//!   make `2n` operations per output); without a bias, one add fewer per output.
//!
//! Worked examples checked by the tests below. Dense: a 227x227x3 input, 11x11 kernel,
//! stride 4, 6 outputs (55x55x6 output) has 11*11*3*6 = 2,178 weights and
//! 2 * 363 * 3,025 * 6 = 13,176,900 FLOPs counting the bias add. Grouped, 3 groups: 726
//! weights and 2 * 1 * 121 * 3,025 * 6 = 4,392,300 FLOPs (2,196,150 MACs). The explainer
//! prints 2,205,225 FLOPs for the grouped case, which its own formula does not give; we
//! follow the formula.

use crate::error::{checked_product, Result};
use crate::spec::ConvSpec;

/// The cost of one convolution layer for one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cost {
    /// Weight count (OIHW).
    pub weights: u64,
    /// Bias count (0 without bias).
    pub biases: u64,
    /// Multiply-accumulates.
    pub macs: u64,
    /// Floating-point operations (see the module docs for the bias convention).
    pub flops: u64,
}

impl Cost {
    /// Weights plus biases.
    pub fn params(&self) -> u64 {
        self.weights + self.biases
    }
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, o: Cost) -> Cost {
        Cost {
            weights: self.weights + o.weights,
            biases: self.biases + o.biases,
            macs: self.macs + o.macs,
            flops: self.flops + o.flops,
        }
    }
}

impl std::iter::Sum for Cost {
    fn sum<I: Iterator<Item = Cost>>(iter: I) -> Cost {
        iter.fold(Cost::default(), |a, b| a + b)
    }
}

/// The cost of `spec` on an `h x w` input (one image), with or without a bias.
pub fn conv_cost(spec: &ConvSpec, h: usize, w: usize, bias: bool) -> Result<Cost> {
    let (oh, ow) = spec.output_hw(h, w)?;
    let outputs = checked_product("output count", &[oh, ow, spec.out_channels])?;
    let per_output =
        checked_product("MACs per output", &[spec.in_per_group(), spec.kernel_h, spec.kernel_w])?;
    let macs = checked_product("MACs", &[outputs, per_output])? as u64;
    let flops = if bias { 2 * macs } else { 2 * macs - outputs as u64 };
    Ok(Cost {
        weights: spec.weights_len()? as u64,
        biases: if bias { spec.out_channels as u64 } else { 0 },
        macs,
        flops,
    })
}

/// The cost ratio of a depthwise-separable convolution (depthwise KxK then pointwise to `n`
/// outputs) to the dense KxK convolution it replaces: `1/n + 1/k^2` (MobileNetV1, eq. 5).
pub fn separable_ratio(out_channels: usize, kernel: usize) -> f64 {
    1.0 / out_channels as f64 + 1.0 / (kernel * kernel) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explainer_dense_example() {
        let spec = ConvSpec::dense(3, 6, 11, 4, 0);
        let c = conv_cost(&spec, 227, 227, true).unwrap();
        assert_eq!(c.weights, 2_178);
        assert_eq!(c.flops, 13_176_900);
        assert_eq!(c.macs, 6_588_450);
    }

    #[test]
    fn explainer_grouped_example_follows_the_formula_not_the_misprint() {
        let spec = ConvSpec::dense(3, 6, 11, 4, 0).with_groups(3);
        let c = conv_cost(&spec, 227, 227, true).unwrap();
        assert_eq!(c.weights, 726);
        assert_eq!(c.flops, 4_392_300);
        assert_eq!(c.macs, 2_196_150);
        assert_ne!(c.flops, 2_205_225, "the explainer's printed figure");
    }

    #[test]
    fn separable_ratio_matches_the_direct_count() {
        // dw3x3 + pw 512->512 on 14x14 against a dense 3x3 512->512.
        let dw = conv_cost(&ConvSpec::depthwise(512, 3, 1, 1), 14, 14, false).unwrap();
        let pw = conv_cost(&ConvSpec::pointwise(512, 512), 14, 14, false).unwrap();
        let dense = conv_cost(&ConvSpec::dense(512, 512, 3, 1, 1), 14, 14, false).unwrap();
        let ratio = (dw.macs + pw.macs) as f64 / dense.macs as f64;
        assert!((ratio - separable_ratio(512, 3)).abs() < 1e-12);
        assert!((separable_ratio(1024, 3) - (1.0 / 1024.0 + 1.0 / 9.0)).abs() < 1e-15);
    }

    #[test]
    fn no_bias_flops_and_errors() {
        let spec = ConvSpec::pointwise(4, 8);
        let c = conv_cost(&spec, 2, 3, false).unwrap();
        assert_eq!(c.macs, 4 * 8 * 6);
        assert_eq!(c.flops, 2 * c.macs - 8 * 6);
        assert!(conv_cost(&spec, 0, 3, false).is_err());
    }
}
