//! A small seeded generator for the crate's synthetic data (seeded weights, `tune`'s timing
//! inputs): production code must not depend on `kernels::testing`, and SplitMix64 is a few
//! lines with no dependency that give the same numbers on every platform.

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

/// `len` values uniform in `[-1, 1)` from `seed`: inputs, weights and biases whose values do
/// not matter beyond being finite, reproducible and of a realistic range (tuning times them).
pub(crate) fn uniform_values(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..len).map(|_| (2.0 * rng.uniform() - 1.0) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_values_reproduce_and_stay_in_range() {
        let v = uniform_values(10_000, 7);
        assert_eq!(v, uniform_values(10_000, 7));
        assert_ne!(v, uniform_values(10_000, 8));
        assert!(v.iter().all(|x| (-1.0..1.0).contains(x)), "out of [-1, 1)");
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.05, "mean {mean}");
    }
}
