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

use crate::error::{KernelError, Result};

/// The storage type of a model's weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    #[default]
    F32,
    F16,
    Bf16,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::F16, Precision::Bf16];

    /// The name used by `--precision`, bench ids and reports.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }

    /// Parses a `--precision` value (case-insensitive).
    pub fn parse(s: &str) -> Result<Precision> {
        let t = s.trim().to_ascii_lowercase();
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == t)
            .ok_or_else(|| KernelError::UnknownPrecision(s.to_string()))
    }

    /// Bytes per stored element.
    pub fn bytes(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::F16 | Precision::Bf16 => 2,
        }
    }

    /// `x` rounded to this storage type and widened back (round to nearest, ties to even).
    #[inline]
    pub fn round(self, x: f32) -> f32 {
        match self {
            Precision::F32 => x,
            Precision::F16 => f16::from_f32(x).to_f32(),
            Precision::Bf16 => bf16::from_f32(x).to_f32(),
        }
    }

    /// Rounds every value of `v` in place.
    pub fn round_slice(self, v: &mut [f32]) {
        if self != Precision::F32 {
            v.iter_mut().for_each(|x| *x = self.round(*x));
        }
    }

    /// The unit roundoff `u` (half the distance from 1 to the next value): `2^-24`, `2^-11`,
    /// `2^-8`. Tolerances are written as multiples of it.
    pub fn unit_roundoff(self) -> f64 {
        match self {
            Precision::F32 => 2f64.powi(-24),
            Precision::F16 => 2f64.powi(-11),
            Precision::Bf16 => 2f64.powi(-8),
        }
    }

    /// The largest finite value (f16 overflows to infinity above 65,504).
    pub fn max_finite(self) -> f32 {
        match self {
            Precision::F32 => f32::MAX,
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
        assert!(matches!(Precision::parse("f8"), Err(KernelError::UnknownPrecision(_))));
    }

    #[test]
    fn rounding_is_nearest_even_and_keeps_nan() {
        // 1 + 2^-11 is the f16 tie between 1 and 1 + 2^-10: ties go to the even 1.
        assert_eq!(Precision::F16.round(1.0 + 2f32.powi(-11)), 1.0);
        assert_eq!(Precision::F16.round(1.0 + 3.0 * 2f32.powi(-11)), 1.0 + 2.0 * 2f32.powi(-10));
        assert_eq!(Precision::Bf16.round(1.0 + 2f32.powi(-8)), 1.0);
        assert_eq!(Precision::F16.round(70_000.0), f32::INFINITY);
        assert_eq!(Precision::Bf16.round(70_000.0), 70_144.0);
        for p in Precision::ALL {
            assert!(p.round(f32::NAN).is_nan());
            assert_eq!(p.round(f32::NEG_INFINITY), f32::NEG_INFINITY);
            let x = 0.123_456_79f32;
            assert!(((p.round(x) - x) / x).abs() as f64 <= p.unit_roundoff());
        }
    }
}
