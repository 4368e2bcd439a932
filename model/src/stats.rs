//! The one statistics module of the workspace: the CLI's `bench`, `tune`, the harness and the
//! precision bench all summarise timings with these functions, so that "median" means one
//! thing everywhere (three hand-written copies used to disagree on even counts: two took the
//! upper middle value, one the mean of the two middle values).
//!
//! Definitions:
//! - **median**: the middle value of the sorted values for an odd count, and the mean of the
//!   two middle values for an even count (the textbook definition, and NumPy's
//!   `np.median`, which `tools/onnx-reference/peers.py` uses for the peers' times);
//! - **min** and **max**: the smallest and the largest value;
//! - an empty slice has no statistic (`None`);
//! - a NaN among the values makes every statistic NaN: a NaN timing is a bug upstream, and
//!   sorting it to one end (as `f64::total_cmp` would) or dropping it would hide it.

/// The median of `values` (see the module docs): `None` if empty, NaN if any value is NaN.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    if values.iter().any(|v| v.is_nan()) {
        return Some(f64::NAN);
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// The median, min and max of one set of measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// How many values were summarised.
    pub n: usize,
}

impl Summary {
    /// The summary of `values`: `None` if empty; every field but `n` NaN if any value is NaN.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let median = median(values)?;
        let (min, max) = if median.is_nan() {
            (f64::NAN, f64::NAN)
        } else {
            values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)))
        };
        Some(Summary { median, min, max, n: values.len() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_count_takes_the_middle_value() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[7.5]), Some(7.5));
        let s = Summary::of(&[5.0, -1.0, 2.0, 9.0, 0.0]).unwrap();
        assert_eq!(s, Summary { median: 2.0, min: -1.0, max: 9.0, n: 5 });
    }

    #[test]
    fn even_count_takes_the_mean_of_the_two_middle_values() {
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[1.0, 2.0]), Some(1.5));
        // Not the upper middle value (what two of the old copies returned).
        assert_ne!(median(&[1.0, 2.0, 3.0, 10.0]), Some(3.0));
        let s = Summary::of(&[10.0, 0.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (5.0, 0.0, 10.0, 2));
    }

    #[test]
    fn empty_has_no_statistic() {
        assert_eq!(median(&[]), None);
        assert_eq!(Summary::of(&[]), None);
    }

    #[test]
    fn a_nan_poisons_the_statistic() {
        assert!(median(&[1.0, f64::NAN, 3.0]).unwrap().is_nan());
        assert!(median(&[f64::NAN, 1.0]).unwrap().is_nan());
        assert!(median(&[-f64::NAN]).unwrap().is_nan());
        let s = Summary::of(&[2.0, f64::NAN]).unwrap();
        assert!(s.median.is_nan() && s.min.is_nan() && s.max.is_nan());
        assert_eq!(s.n, 2);
    }

    #[test]
    fn infinities_sort_as_numbers() {
        assert_eq!(median(&[f64::INFINITY, 1.0, f64::NEG_INFINITY]), Some(1.0));
        let s = Summary::of(&[f64::INFINITY, 0.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (f64::INFINITY, 0.0, f64::INFINITY));
    }
}
