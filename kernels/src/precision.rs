//! Precision: the storage type of weights and activations, an axis of the product like the
//! ISA.
//!
//! - `f32`: everything in f32 (the default and the reference).
//! - `f16`: IEEE binary16 storage (`half::f16`: 5 exponent bits, 10 mantissa bits, largest
//!   finite 65,504), computed in f32 lanes: the memory-bound layers move half the bytes.
//! - `bf16`: bfloat16 storage (`half::bf16`: f32's 8 exponent bits, 7 mantissa bits), the
//!   operand type of the AVX512_BF16 and Arm BF16 dot-product instructions, accumulated in f32.
//!
//! Every conversion to a narrower type rounds to nearest, ties to even, as `half` and the
//! hardware converters (`vcvtps2ph` with imm 0, `vcvtneps2bf16`) do; NaN stays NaN.

use std::fmt;

use half::{bf16, f16};

/// `--precision` (or a caller) named a precision that does not exist. `precision.rs` is a
/// leaf with its own error, which [`crate::KernelError`] wraps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPrecision(pub String);

impl fmt::Display for UnknownPrecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Precision::ALL.iter().map(|p| p.name()).collect();
        write!(f, "unknown precision {:?} (expected one of {})", self.0, names.join(", "))
    }
}

impl std::error::Error for UnknownPrecision {}

/// The storage type of a model's weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    #[default]
    F32,
    F16,
    Bf16,
    /// 8-bit quantized activations (`u8`, per-tensor scale and zero point) and weights
    /// (`i8`, per-output-channel scales), accumulated in i32 (`crate::int8`).
    Int8,
}

impl Precision {
    pub const ALL: [Precision; 4] = [Precision::F32, Precision::F16, Precision::Bf16, Precision::Int8];
    /// The float types: stored values are numbers by themselves (no scale, no zero point).
    pub const FLOATS: [Precision; 3] = [Precision::F32, Precision::F16, Precision::Bf16];

    /// The name used by `--precision`, bench ids and reports.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }

    /// Parses a `--precision` value (case-insensitive).
    pub fn parse(s: &str) -> Result<Precision, UnknownPrecision> {
        let t = s.trim().to_ascii_lowercase();
        Precision::ALL.into_iter().find(|p| p.name() == t).ok_or_else(|| UnknownPrecision(s.to_string()))
    }

    /// Bytes per stored element.
    pub fn bytes(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::F16 | Precision::Bf16 => 2,
            Precision::Int8 => 1,
        }
    }

    /// Whether the type is a float (see [`Precision::FLOATS`]).
    pub fn is_float(self) -> bool {
        self != Precision::Int8
    }

    /// `x` rounded to this storage type and widened back (round to nearest, ties to even).
    /// int8 values only mean a number with a scale (`crate::int8::QuantParams`): here they
    /// pass unchanged, and layers quantize their weights at prepare.
    #[inline]
    pub fn round(self, x: f32) -> f32 {
        match self {
            Precision::F32 | Precision::Int8 => x,
            Precision::F16 => f16::from_f32(x).to_f32(),
            Precision::Bf16 => bf16::from_f32(x).to_f32(),
        }
    }

    /// Rounds every value of `v` in place.
    pub fn round_slice(self, v: &mut [f32]) {
        if !matches!(self, Precision::F32 | Precision::Int8) {
            v.iter_mut().for_each(|x| *x = self.round(*x));
        }
    }

    /// The unit roundoff `u` (half the distance from 1 to the next value): `2^-24`, `2^-11`,
    /// `2^-8` (and for int8 half a step of 256 over the tensor's range, `2^-8` of it). Tolerances are written as multiples of it.
    pub fn unit_roundoff(self) -> f64 {
        match self {
            Precision::F32 => 2f64.powi(-24),
            Precision::F16 => 2f64.powi(-11),
            Precision::Bf16 | Precision::Int8 => 2f64.powi(-8),
        }
    }

    /// The largest finite value (f16 overflows to infinity above 65,504).
    pub fn max_finite(self) -> f32 {
        match self {
            Precision::F32 | Precision::Int8 => f32::MAX,
            Precision::F16 => f16::MAX.to_f32(),
            Precision::Bf16 => bf16::MAX.to_f32(),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips_and_rejects_unknown() {
        for p in Precision::ALL {
            assert_eq!(Precision::parse(p.name()), Ok(p));
        }
        assert_eq!(Precision::parse("BF16"), Ok(Precision::Bf16));
        assert!(matches!(Precision::parse("f8"), Err(UnknownPrecision(_))));
    }

    #[test]
    fn rounding_is_nearest_even_and_keeps_nan() {
        // 1 + 2^-11 is the f16 tie between 1 and 1 + 2^-10: ties go to the even 1.
        assert_eq!(Precision::F16.round(1.0 + 2f32.powi(-11)), 1.0);
        assert_eq!(Precision::F16.round(1.0 + 3.0 * 2f32.powi(-11)), 1.0 + 2.0 * 2f32.powi(-10));
        assert_eq!(Precision::Bf16.round(1.0 + 2f32.powi(-8)), 1.0);
        assert_eq!(Precision::F16.round(70_000.0), f32::INFINITY);
        assert_eq!(Precision::Bf16.round(70_000.0), 70_144.0);
        for p in Precision::FLOATS {
            assert!(p.round(f32::NAN).is_nan());
            assert_eq!(p.round(f32::NEG_INFINITY), f32::NEG_INFINITY);
            let x = 0.123_456_79f32;
            assert!(((p.round(x) - x) / x).abs() as f64 <= p.unit_roundoff());
        }
    }
}
