//! The shared differential check: run an algorithm and the naive oracle on the same random
//! case and measure the error relative to the magnitude of each output.
//!
//! Used by every test suite, the model tests and the aarch64 verify report, so that there is
//! one definition of "agrees with naive". The error of output `i` is
//! `|fast_i - naive_i| / (scale_i + 1e-30)`, with `scale_i = |bias| + sum |w| |x|` (the naive
//! convolution of the absolute values): this is the quantity that floating-point summation
//! error is proportional to, so one tolerance per algorithm holds for every shape, including
//! outputs that cancel to near zero.

use crate::algo::{self, ConvAlgorithm, Layer, Storage};
use crate::error::Result;
use crate::naive;
use crate::pool::Par;
use crate::precision::Precision;
use crate::simd::Element;
use crate::spec::{Activation, ConvSpec, Dims};

/// The oracle's answer to a [`Case`]: the outputs and the per-output error scale.
pub type Reference = (Vec<f32>, Vec<f32>);

/// A convolution with random data.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub spec: ConvSpec,
    pub activation: Activation,
    pub in_dims: Dims,
    pub input: Vec<f32>,
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

/// Deterministic uniform values in `[-1, 1)` (xorshift), so cases reproduce from the seed.
pub fn random_values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

impl Case {
    /// A random case for `spec` on an NHWC input of `in_dims`, values in `[-1, 1)`.
    pub fn random(spec: ConvSpec, in_dims: Dims, activation: Activation, seed: u64) -> Result<Case> {
        spec.output_dims(in_dims)?;
        Ok(Case {
            spec,
            activation,
            in_dims,
            input: random_values(in_dims.len()?, seed),
            weights: random_values(spec.weights_len()?, seed ^ 0xABCD),
            bias: random_values(spec.out_channels, seed ^ 0x1234),
        })
    }

    /// The naive result and the per-output error scale.
    ///
    /// The suites check one case against every algorithm at 1 and 2 threads, so the last
    /// case's answer is kept (per test thread) and reused while the case is equal: the
    /// oracle's two naive convolutions were most of the suites' run time (the Winograd suite
    /// under qemu-aarch64 spent 143 s in them). A case with a NaN never equals itself, so it
    /// is recomputed: never a stale answer.
    pub fn reference(&self) -> Result<Reference> {
        thread_local! {
            static LAST: std::cell::RefCell<Option<(Case, Reference)>> = const { std::cell::RefCell::new(None) };
        }
        if let Some(hit) =
            LAST.with_borrow(|last| last.as_ref().filter(|(c, _)| c == self).map(|(_, r)| r.clone()))
        {
            return Ok(hit);
        }
        let computed = self.compute_reference()?;
        LAST.set(Some((self.clone(), computed.clone())));
        Ok(computed)
    }

    fn compute_reference(&self) -> Result<Reference> {
        let out_dims = self.spec.output_dims(self.in_dims)?;
        let mut want = vec![0.0; out_dims.len()?];
        naive::conv2d_nhwc(
            &self.spec,
            self.activation,
            &self.input,
            self.in_dims,
            &self.weights,
            &self.bias,
            &mut want,
            out_dims,
        );
        let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
        let mut scale = vec![0.0; want.len()];
        naive::conv2d_nhwc(
            &self.spec,
            Activation::None,
            &abs(&self.input),
            self.in_dims,
            &abs(&self.weights),
            &abs(&self.bias),
            &mut scale,
            out_dims,
        );
        Ok((want, scale))
    }

    /// Runs `algo` on this case with `threads`.
    pub fn run(&self, algo: &dyn ConvAlgorithm, threads: usize) -> Result<Vec<f32>> {
        let prepared = algo.prepare(&self.spec, &self.weights, Some(&self.bias), self.activation)?;
        let out_dims = self.spec.output_dims(self.in_dims)?;
        let mut got = vec![f32::NAN; out_dims.len()?];
        let mut scratch = vec![0.0; prepared.scratch_len(self.in_dims)?];
        prepared.run(&self.input, self.in_dims, &mut got, &mut scratch, Par::global(threads))?;
        Ok(got)
    }
}

impl Case {
    /// The same case with input, weights and bias rounded to `precision`: the values a
    /// reduced-precision layer actually computes with, and so the oracle's inputs for it.
    pub fn rounded(&self, precision: Precision) -> Case {
        let r = |v: &[f32]| crate::algo::rounded(precision, v);
        Case { input: r(&self.input), weights: r(&self.weights), bias: r(&self.bias), ..self.clone() }
    }

    /// Runs `algo` prepared for storage type `E` (input rounded to `E` on the way in), and
    /// returns the output widened to f32.
    pub fn run_as<E: Element + Storage<Quant = ()>>(
        &self,
        algo: &dyn ConvAlgorithm,
        threads: usize,
    ) -> Result<Vec<f32>> {
        let layer = Layer::new(&self.spec, &self.weights, Some(&self.bias), self.activation);
        let prepared = algo::prepare::<E>(algo, &layer, &())?;
        let out_dims = self.spec.output_dims(self.in_dims)?;
        let input: Vec<E> = self.input.iter().map(|&x| E::from_f32(x)).collect();
        let mut got = vec![E::from_f32(f32::NAN); out_dims.len()?];
        let mut scratch = vec![0.0; prepared.scratch_len(self.in_dims)?];
        prepared.run(&input, self.in_dims, &mut got, &mut scratch, Par::global(threads))?;
        Ok(got.iter().map(|x| x.to_f32()).collect())
    }
}

/// The tolerance of `algo` at storage type `precision`, relative to each output's scale:
/// the algorithm's own f32 tolerance plus one rounding of the output to `precision`
/// (`|round(y) - y| <= u |y| <= u scale`). The oracle is naive in f64 on the *rounded*
/// inputs and weights ([`Case::rounded`]), so input rounding is not counted as error.
pub fn precision_tolerance(algo: &dyn ConvAlgorithm, precision: Precision) -> f64 {
    algo.tolerance() + precision.unit_roundoff()
}

/// [`check`] at float storage type `E`: `algo` prepared with [`algo::prepare`]`::<E>`
/// against the f64 oracle on the rounded case, within [`precision_tolerance`].
pub fn check_as<E: Element + Storage<Quant = ()>>(
    algo: &dyn ConvAlgorithm,
    case: &Case,
    threads: usize,
) -> Result<std::result::Result<Agreement, String>> {
    let case = case.rounded(E::PRECISION);
    let got = case.run_as::<E>(algo, threads)?;
    let what = format!("{} at {}", algo.name(), E::PRECISION);
    judge(&what, &case, threads, &got, precision_tolerance(algo, E::PRECISION))
}

/// `got` against the oracle on `case`: `Ok(Ok(_))` within `tol`, else `Ok(Err(msg))` naming
/// `what` ran, the case and the worst output.
fn judge(
    what: &str,
    case: &Case,
    threads: usize,
    got: &[f32],
    tol: f64,
) -> Result<std::result::Result<Agreement, String>> {
    let (want, scale) = case.reference()?;
    let a = agreement(got, &want, &scale);
    if a.max_rel <= tol {
        return Ok(Ok(a));
    }
    let i = a.worst;
    Ok(Err(format!(
        "{what} disagrees with naive on {} input {} act {:?} threads {threads}: \
         max rel err {:.3e} > tol {:.1e} at output {i}: got {} want {} (scale {})",
        case.spec, case.in_dims, case.activation, a.max_rel, tol, got[i], want[i], scale[i]
    )))
}

/// How far a result is from the oracle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    /// Largest `|got - want| / scale` over all outputs (NaN if any output is NaN).
    pub max_rel: f64,
    /// Mean of the same quantity.
    pub mean_rel: f64,
    /// Index of the worst output.
    pub worst: usize,
}

/// Compares `got` with `want` relative to `scale` (see the module docs).
pub fn agreement(got: &[f32], want: &[f32], scale: &[f32]) -> Agreement {
    let mut a = Agreement { max_rel: 0.0, mean_rel: 0.0, worst: 0 };
    for (i, ((&g, &w), &s)) in got.iter().zip(want).zip(scale).enumerate() {
        let e = if g.is_nan() { f64::NAN } else { (g as f64 - w as f64).abs() / (s as f64 + 1e-30) };
        if e.is_nan() || e > a.max_rel {
            a.max_rel = e;
            a.worst = i;
            if e.is_nan() {
                break;
            }
        }
        a.mean_rel += e / got.len().max(1) as f64;
    }
    a
}

/// Runs `algo` and naive on `case`; `Ok(Err(msg))` describes a disagreement beyond the
/// algorithm's own [`ConvAlgorithm::tolerance`], with the spec and an excerpt.
pub fn check(
    algo: &dyn ConvAlgorithm,
    case: &Case,
    threads: usize,
) -> Result<std::result::Result<Agreement, String>> {
    let got = case.run(algo, threads)?;
    judge(algo.name(), case, threads, &got, algo.tolerance())
}
