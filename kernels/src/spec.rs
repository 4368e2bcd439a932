//! What a convolution is: [`ConvSpec`], the fused [`Activation`] and NHWC [`Dims`].

use std::fmt;

use crate::error::{checked_product, KernelError, Result};

/// Zero padding added on each side of the input, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Padding {
    pub top: usize,
    pub left: usize,
    pub bottom: usize,
    pub right: usize,
}

impl Padding {
    /// The same padding on all four sides (PyTorch's `padding=p`).
    pub const fn uniform(p: usize) -> Self {
        Padding { top: p, left: p, bottom: p, right: p }
    }
}

/// A 2-D convolution, described as PyTorch's `Conv2d` describes it (weights OIHW,
/// `[out_channels, in_channels / groups, kernel_h, kernel_w]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub padding: Padding,
    pub groups: usize,
    pub dilation_h: usize,
    pub dilation_w: usize,
}

impl ConvSpec {
    /// A dense square convolution (`groups = 1`).
    pub const fn dense(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
    ) -> Self {
        ConvSpec {
            in_channels,
            out_channels,
            kernel_h: kernel,
            kernel_w: kernel,
            stride_h: stride,
            stride_w: stride,
            padding: Padding::uniform(pad),
            groups: 1,
            dilation_h: 1,
            dilation_w: 1,
        }
    }

    /// A depthwise square convolution (`groups = in = out = channels`).
    pub const fn depthwise(channels: usize, kernel: usize, stride: usize, pad: usize) -> Self {
        let mut s = Self::dense(channels, channels, kernel, stride, pad);
        s.groups = channels;
        s
    }

    /// A 1x1 stride-1 convolution: a matrix product over the channels of every pixel.
    pub const fn pointwise(in_channels: usize, out_channels: usize) -> Self {
        Self::dense(in_channels, out_channels, 1, 1, 0)
    }

    /// The same spec with `groups` set.
    pub const fn with_groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// The same spec with a square dilation.
    pub const fn with_dilation(mut self, dilation: usize) -> Self {
        self.dilation_h = dilation;
        self.dilation_w = dilation;
        self
    }

    /// The same spec with explicit (possibly asymmetric) padding.
    pub const fn with_padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }

    /// Checks everything that does not depend on the input size.
    pub fn validate(&self) -> Result<()> {
        let sizes = [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("kernel_h", self.kernel_h),
            ("kernel_w", self.kernel_w),
            ("stride_h", self.stride_h),
            ("stride_w", self.stride_w),
            ("groups", self.groups),
            ("dilation_h", self.dilation_h),
            ("dilation_w", self.dilation_w),
        ];
        if let Some((what, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(KernelError::ZeroSize { what });
        }
        if !self.in_channels.is_multiple_of(self.groups) || !self.out_channels.is_multiple_of(self.groups) {
            return Err(KernelError::GroupsMismatch {
                in_channels: self.in_channels,
                out_channels: self.out_channels,
                groups: self.groups,
            });
        }
        self.weights_len()?;
        self.kernel_extent()?;
        Ok(())
    }

    /// The dilated kernel extent `(dilation * (k - 1) + 1)` along h and w.
    pub fn kernel_extent(&self) -> Result<(usize, usize)> {
        let ext = |d: usize, k: usize, what| {
            d.checked_mul(k.saturating_sub(1))
                .and_then(|x| x.checked_add(1))
                .ok_or(KernelError::Overflow { what })
        };
        Ok((
            ext(self.dilation_h, self.kernel_h, "dilated kernel height")?,
            ext(self.dilation_w, self.kernel_w, "dilated kernel width")?,
        ))
    }

    /// Output height and width for an `h x w` input, exactly as PyTorch computes them:
    /// `floor((in + pad_before + pad_after - dilation * (k - 1) - 1) / stride) + 1`.
    pub fn output_hw(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        self.validate()?;
        if h == 0 {
            return Err(KernelError::ZeroSize { what: "input height" });
        }
        if w == 0 {
            return Err(KernelError::ZeroSize { what: "input width" });
        }
        let (eh, ew) = self.kernel_extent()?;
        let axis = |len: usize, before: usize, after: usize, extent: usize, stride: usize, axis| {
            let padded = len
                .checked_add(before)
                .and_then(|x| x.checked_add(after))
                .ok_or(KernelError::Overflow { what: "padded input size" })?;
            if extent > padded {
                return Err(KernelError::KernelTooLarge { axis, kernel: extent, padded_input: padded });
            }
            Ok((padded - extent) / stride + 1)
        };
        Ok((
            axis(h, self.padding.top, self.padding.bottom, eh, self.stride_h, "height")?,
            axis(w, self.padding.left, self.padding.right, ew, self.stride_w, "width")?,
        ))
    }

    /// The output dims for an NHWC input of `dims` (checks the input's channels too).
    pub fn output_dims(&self, input: Dims) -> Result<Dims> {
        if input.c != self.in_channels {
            return Err(KernelError::ShapeMismatch {
                what: "input channels",
                expected: format!("C = {}", self.in_channels),
                actual: format!("C = {}", input.c),
            });
        }
        if input.n == 0 {
            return Err(KernelError::ZeroSize { what: "batch" });
        }
        let (oh, ow) = self.output_hw(input.h, input.w)?;
        let out = Dims { n: input.n, h: oh, w: ow, c: self.out_channels };
        out.len()?;
        input.len()?;
        Ok(out)
    }

    /// Input channels seen by one output channel (`in_channels / groups`).
    pub fn in_per_group(&self) -> usize {
        self.in_channels / self.groups
    }

    /// Output channels produced by one group.
    pub fn out_per_group(&self) -> usize {
        self.out_channels / self.groups
    }

    /// Number of weights in OIHW order: `out * (in / groups) * kh * kw`.
    pub fn weights_len(&self) -> Result<usize> {
        checked_product(
            "weights length",
            &[self.out_channels, self.in_channels / self.groups.max(1), self.kernel_h, self.kernel_w],
        )
    }

    /// Depthwise: one filter per channel (`groups = in = out`).
    pub fn is_depthwise(&self) -> bool {
        self.groups == self.in_channels && self.groups == self.out_channels
    }

    /// Pointwise: 1x1, stride 1, no padding, dense, so a plain matrix product on NHWC.
    pub fn is_pointwise(&self) -> bool {
        self.kernel_h == 1
            && self.kernel_w == 1
            && self.stride_h == 1
            && self.stride_w == 1
            && self.padding == Padding::default()
            && self.groups == 1
    }

    /// No dilation along either axis.
    pub fn is_undilated(&self) -> bool {
        self.dilation_h == 1 && self.dilation_w == 1
    }
}

impl fmt::Display for ConvSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.padding;
        write!(
            f,
            "conv {}->{} k{}x{} s{}x{} pad(t{} l{} b{} r{}) g{} d{}x{}",
            self.in_channels,
            self.out_channels,
            self.kernel_h,
            self.kernel_w,
            self.stride_h,
            self.stride_w,
            p.top,
            p.left,
            p.bottom,
            p.right,
            self.groups,
            self.dilation_h,
            self.dilation_w
        )
    }
}

/// The epilogue fused into a convolution's store.
///
/// NaN handling is the same in every backend: the clamp is `min(max(x, lo), hi)` with
/// IEEE `maxNum`/`minNum` semantics (what `f32::max` and `vmaxps(x, lo)` give), so **a NaN
/// becomes `lo`**: ReLU and ReLU6 map NaN to 0. `None` passes NaN through.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Activation {
    #[default]
    None,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`, MobileNetV1's activation.
    Relu6,
    /// `min(max(x, min), max)`.
    Clamp { min: f32, max: f32 },
}

impl Activation {
    /// The clamp bounds this activation applies (infinite for `None`).
    pub fn bounds(self) -> (f32, f32) {
        match self {
            Activation::None => (f32::NEG_INFINITY, f32::INFINITY),
            Activation::Relu => (0.0, f32::INFINITY),
            Activation::Relu6 => (0.0, 6.0),
            Activation::Clamp { min, max } => (min, max),
        }
    }

    /// Rejects NaN or inverted clamp bounds.
    pub fn validate(self) -> Result<()> {
        let (lo, hi) = self.bounds();
        if lo.is_nan() || hi.is_nan() || lo > hi {
            return Err(KernelError::InvalidActivation { min: lo, max: hi });
        }
        Ok(())
    }

    /// Applies the activation to one value (the scalar definition every SIMD path matches).
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            _ => {
                let (lo, hi) = self.bounds();
                x.max(lo).min(hi)
            }
        }
    }
}

/// The shape of an NHWC tensor: batch, height, width, channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dims {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Dims {
    pub const fn new(n: usize, h: usize, w: usize, c: usize) -> Self {
        Dims { n, h, w, c }
    }

    /// Number of elements, or an overflow error.
    pub fn len(&self) -> Result<usize> {
        checked_product("tensor element count", &[self.n, self.h, self.w, self.c])
    }

    /// Whether any dimension is zero.
    pub fn is_empty(&self) -> bool {
        self.n == 0 || self.h == 0 || self.w == 0 || self.c == 0
    }
}

impl fmt::Display for Dims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[N={}, H={}, W={}, C={}]", self.n, self.h, self.w, self.c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pytorch_output_arithmetic() {
        // MobileNetV1 stride-2 layers on even sizes: floor((112 + 2 - 3) / 2) + 1 = 56.
        assert_eq!(ConvSpec::depthwise(32, 3, 2, 1).output_hw(112, 112), Ok((56, 56)));
        assert_eq!(ConvSpec::dense(3, 32, 3, 2, 1).output_hw(224, 224), Ok((112, 112)));
        assert_eq!(ConvSpec::dense(3, 6, 11, 4, 0).output_hw(227, 227), Ok((55, 55)));
        assert_eq!(ConvSpec::depthwise(8, 3, 2, 1).output_hw(1, 1), Ok((1, 1)));
        let dil = ConvSpec::dense(1, 1, 3, 1, 0).with_dilation(2);
        assert_eq!(dil.output_hw(5, 7), Ok((1, 3)));
    }

    #[test]
    fn validation_errors_are_typed() {
        let mut s = ConvSpec::dense(4, 4, 3, 1, 1);
        s.stride_h = 0;
        assert_eq!(s.validate(), Err(KernelError::ZeroSize { what: "stride_h" }));
        assert!(matches!(
            ConvSpec::dense(4, 6, 3, 1, 1).with_groups(4).validate(),
            Err(KernelError::GroupsMismatch { .. })
        ));
        assert!(matches!(
            ConvSpec::dense(1, 1, 5, 1, 0).output_hw(3, 9),
            Err(KernelError::KernelTooLarge { axis: "height", .. })
        ));
        assert!(matches!(
            ConvSpec::dense(usize::MAX, usize::MAX, 3, 1, 1).validate(),
            Err(KernelError::Overflow { .. })
        ));
        assert!(matches!(
            ConvSpec::dense(1, 1, 3, 1, usize::MAX).output_hw(3, 3),
            Err(KernelError::Overflow { .. })
        ));
        assert!(matches!(
            ConvSpec::dense(1, 1, 3, 1, 1).with_dilation(usize::MAX).validate(),
            Err(KernelError::Overflow { .. })
        ));
        assert_eq!(
            ConvSpec::dense(1, 1, 3, 1, 1).output_hw(0, 3),
            Err(KernelError::ZeroSize { what: "input height" })
        );
    }

    #[test]
    fn activation_semantics_including_nan() {
        assert_eq!(Activation::Relu6.apply(7.5), 6.0);
        assert_eq!(Activation::Relu6.apply(-1.0), 0.0);
        assert_eq!(Activation::Relu6.apply(f32::NAN), 0.0);
        assert_eq!(Activation::Relu.apply(f32::INFINITY), f32::INFINITY);
        assert!(Activation::None.apply(f32::NAN).is_nan());
        assert!(Activation::Clamp { min: 1.0, max: 0.0 }.validate().is_err());
        assert!(Activation::Clamp { min: f32::NAN, max: 0.0 }.validate().is_err());
    }
}
