//! The contracts every algorithm of the registry keeps, whatever its backend:
//!
//! - **NaN and infinities:** a NaN, +Inf or -Inf anywhere in the input (a full interior
//!   tile, an edge pixel, a channel tail) gives exactly what the naive oracle gives: the
//!   same NaN or infinity where an output's window holds one (and, through a clamp, the same
//!   bound), and a value within the algorithm's tolerance where it does not.
//! - **The ceiling:** under `KERNELS_ISA=L`, every prepared layer executes at a level within
//!   `L` (checked on the level each prepared kernel reports, not by hoping for SIGILL), and
//!   an algorithm this CPU or ceiling cannot run refuses to prepare.
//! - **Determinism:** the same layer, input and thread count give the same bits.

use kernels::testing::{random_values, Case};
use kernels::{isa, registry, Activation, ConvAlgorithm, ConvSpec, Dims, Padding};

/// Shapes around the tiles: channel counts with tails for 16, 8 and 4 lanes, widths that
/// are not multiples of any register tile or Winograd tile, every layer kind.
fn specs() -> Vec<(&'static str, ConvSpec, Dims)> {
    let d = |n, h, w, c| Dims { n, h, w, c };
    vec![
        ("dw3x3 s1", ConvSpec::depthwise(37, 3, 1, 1), d(1, 13, 11, 37)),
        ("dw3x3 s2", ConvSpec::depthwise(37, 3, 2, 1), d(1, 13, 12, 37)),
        ("dw5x5 s1", ConvSpec::depthwise(21, 5, 1, 2), d(1, 9, 10, 21)),
        (
            "dw3x3 s1 pad 2",
            ConvSpec::depthwise(19, 3, 1, 1).with_padding(Padding::uniform(2)),
            d(1, 8, 9, 19),
        ),
        ("pointwise", ConvSpec::pointwise(37, 45), d(2, 9, 7, 37)),
        ("dense3x3 s2 (conv0)", ConvSpec::dense(3, 32, 3, 2, 1), d(1, 15, 17, 3)),
        ("dense3x3 s1", ConvSpec::dense(19, 21, 3, 1, 1), d(1, 13, 13, 19)),
        ("fc", ConvSpec::pointwise(64, 10), d(3, 1, 1, 64)),
    ]
}

/// Puts NaN, +Inf and -Inf at an interior pixel, a corner, a channel tail and a second
/// image's pixel.
fn poison(input: &mut [f32], dims: Dims) {
    let Dims { n, h, w, c } = dims;
    let at = |b: usize, y: usize, x: usize, ch: usize| ((b * h + y) * w + x) * c + ch;
    input[at(0, h / 2, w / 2, c / 3)] = f32::NAN;
    input[at(0, 0, 0, 0)] = f32::INFINITY;
    input[at(0, h - 1, w.saturating_sub(2), c - 1)] = f32::NEG_INFINITY;
    input[at(n - 1, h - 1, w - 1, c - 1)] = f32::NAN;
    if h > 4 && w > 4 {
        input[at(0, 1, w - 2, c - 1)] = f32::INFINITY;
    }
}

fn same(a: f32, b: f32) -> bool {
    (a.is_nan() && b.is_nan()) || a == b
}

#[test]
fn nan_and_inf_give_what_naive_gives_in_every_algorithm() {
    let algos = registry::algorithms().expect("KERNELS_ISA must be valid");
    let mut checked = 0;
    for (what, spec, dims) in specs() {
        for act in [Activation::None, Activation::Relu6] {
            let mut case = Case::random(spec, dims, act, 7).unwrap();
            poison(&mut case.input, dims);
            let (want, scale) = case.reference().unwrap();
            assert!(
                want.iter().any(|v| !v.is_finite()) || act != Activation::None,
                "{what}: poison reaches nothing"
            );
            for &algo in algos.iter().filter(|a| a.supports(&spec)) {
                for threads in [1, 2] {
                    let got = case.run(algo, threads).unwrap();
                    let tol = algo.tolerance();
                    for (i, ((&g, &w), &s)) in got.iter().zip(&want).zip(&scale).enumerate() {
                        let ok = if s.is_finite() {
                            g.is_finite() && ((g as f64 - w as f64).abs() <= tol * s as f64 + 1e-30)
                        } else {
                            same(g, w)
                        };
                        assert!(
                            ok,
                            "{} on {what} ({spec}) {act:?} threads {threads}: output {i} = {g}, naive {w} \
                             (window scale {s})",
                            algo.name()
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 0);
}

#[test]
fn every_prepared_layer_runs_within_the_ceiling() {
    let ceiling = isa::ceiling().expect("KERNELS_ISA must be valid");
    let spec_of = |a: &dyn ConvAlgorithm| {
        specs().into_iter().map(|(_, s, _)| s).find(|s| a.supports(s)).unwrap_or(ConvSpec::pointwise(8, 8))
    };
    for &algo in registry::compiled() {
        let spec = spec_of(algo);
        let weights = random_values(spec.weights_len().unwrap(), 3);
        let prepared = algo.prepare(&spec, &weights, None, Activation::Relu6);
        match algo.backend().level() {
            Some(level) => {
                assert!(level.within(ceiling), "{}: backend runs at {level} above {ceiling}", algo.name());
                let p = prepared.unwrap_or_else(|e| panic!("{} must prepare {spec}: {e}", algo.name()));
                assert!(
                    p.level().within(ceiling),
                    "{} prepared a kernel at {} under the ceiling {ceiling}",
                    algo.name(),
                    p.level()
                );
                assert_eq!(Some(p.level()), algo.backend().level(), "{}", algo.name());
            }
            None => {
                eprintln!("SKIPPED (refuses, as it must): {} under the ceiling {ceiling}", algo.name());
                assert!(prepared.is_err(), "{} prepared although its backend cannot run here", algo.name());
                assert!(!algo.supports(&spec));
            }
        }
    }
}

#[test]
fn results_are_bit_identical_per_thread_count() {
    let algos = registry::algorithms().unwrap();
    for (what, spec, dims) in specs() {
        let case = Case::random(spec, dims, Activation::Relu6, 5).unwrap();
        for &algo in algos.iter().filter(|a| a.supports(&spec)) {
            for threads in [1, 2, 3] {
                let a = case.run(algo, threads).unwrap();
                let b = case.run(algo, threads).unwrap();
                assert!(
                    a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{} on {what}: two runs at {threads} threads differ",
                    algo.name()
                );
            }
        }
    }
}
