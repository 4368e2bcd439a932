//! Every algorithm in the registry against the naive oracle, on random specs it supports
//! and on MobileNetV1's layer shapes. New algorithms are covered by registering them.

use kernels::testing::{check, Case};
use kernels::{registry, Activation, ConvAlgorithm, ConvSpec, Dims, Padding, Par};
use proptest::prelude::*;

fn runnable() -> Vec<&'static dyn ConvAlgorithm> {
    let algos = registry::algorithms().expect("KERNELS_ISA must be valid for the tests");
    for a in registry::compiled() {
        if !algos.iter().any(|b| b.name() == a.name()) {
            eprintln!("SKIPPED: {} is compiled in but cannot run on this CPU / under KERNELS_ISA", a.name());
        }
    }
    algos
}

fn check_all(case: &Case) {
    for algo in runnable() {
        if !algo.supports(&case.spec) {
            continue;
        }
        for threads in [1, 2] {
            let verdict = check(algo, case, threads).expect("a valid case must run");
            if let Err(msg) = verdict {
                panic!("{msg}");
            }
        }
    }
}

fn arb_case() -> impl Strategy<Value = Case> {
    (
        1usize..=70,
        1usize..=3,
        prop_oneof![Just(1usize), Just(3), 1usize..=5],
        1usize..=3,
        0usize..=2,
        1usize..=40,
        1usize..=40,
        0usize..4,
        prop_oneof![Just(0usize), Just(1), Just(2)],
        any::<u64>(),
    )
        .prop_filter_map("kernel must fit", |(c, mult, k, s, p, h, w, act, kind, seed)| {
            let spec = match kind {
                0 => ConvSpec::depthwise(c, k, s, p),
                1 => ConvSpec::pointwise(c, c * mult),
                _ => ConvSpec::dense(c, mult * 3, k, s, p),
            };
            let activation = [
                Activation::None,
                Activation::Relu,
                Activation::Relu6,
                Activation::Clamp { min: -0.5, max: 0.25 },
            ][act];
            Case::random(spec, Dims::new(1 + (seed % 2) as usize, h, w, c), activation, seed).ok()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn every_algorithm_agrees_with_naive(case in arb_case()) {
        check_all(&case);
    }
}

#[test]
fn mobilenet_layer_shapes_at_width_0_25_and_resolution_64() {
    let mut c = 8;
    let mut hw = 32;
    let mut specs = vec![(ConvSpec::dense(3, 8, 3, 2, 1), Dims::new(1, 64, 64, 3))];
    for (cout, s) in [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1)] {
        specs.push((ConvSpec::depthwise(c, 3, s, 1), Dims::new(1, hw, hw, c)));
        hw = (hw + 2 - 3) / s + 1;
        specs.push((ConvSpec::pointwise(c, cout), Dims::new(1, hw, hw, c)));
        c = cout;
    }
    specs.push((ConvSpec::pointwise(256, 10), Dims::new(3, 1, 1, 256)));
    for (i, (spec, dims)) in specs.into_iter().enumerate() {
        check_all(&Case::random(spec, dims, Activation::Relu6, i as u64).unwrap());
    }
}

#[test]
fn asymmetric_padding_and_tiny_images() {
    let pad = Padding { top: 0, left: 1, bottom: 2, right: 0 };
    for (h, w) in [(1, 1), (1, 7), (2, 2), (3, 1), (5, 4)] {
        for c in [1, 7, 16, 17] {
            // Shapes the asymmetric padding cannot fit are skipped (a typed error, tested elsewhere).
            if let Ok(case) = Case::random(
                ConvSpec::depthwise(c, 3, 1, 0).with_padding(pad),
                Dims::new(1, h, w, c),
                Activation::Relu6,
                1,
            ) {
                check_all(&case);
            }
            check_all(
                &Case::random(ConvSpec::depthwise(c, 3, 2, 1), Dims::new(1, h, w, c), Activation::None, 2)
                    .unwrap(),
            );
        }
    }
}

#[test]
fn bad_buffers_are_errors_for_every_algorithm() {
    let spec = ConvSpec::depthwise(8, 3, 1, 1);
    let dims = Dims::new(1, 5, 5, 8);
    for algo in runnable() {
        if !algo.supports(&spec) {
            continue;
        }
        let w = vec![0.0; spec.weights_len().unwrap()];
        assert!(algo.prepare(&spec, &w[1..], None, Activation::None).is_err(), "{}", algo.name());
        assert!(algo.prepare(&spec, &w, Some(&[0.0; 3]), Activation::None).is_err(), "{}", algo.name());
        assert!(
            algo.prepare(&spec, &w, None, Activation::Clamp { min: 1.0, max: -1.0 }).is_err(),
            "{}",
            algo.name()
        );
        let p = algo.prepare(&spec, &w, None, Activation::None).unwrap();
        let mut scratch = vec![0.0; p.scratch_len(dims).unwrap()];
        let input = vec![0.0; 200];
        let mut out = vec![0.0; 200];
        assert!(p.run(&input[..199], dims, &mut out, &mut scratch, Par::SERIAL).is_err(), "{}", algo.name());
        assert!(p.run(&input, dims, &mut out[..199], &mut scratch, Par::SERIAL).is_err(), "{}", algo.name());
        assert!(
            p.run(&input, Dims { c: 7, ..dims }, &mut out, &mut scratch, Par::SERIAL).is_err(),
            "{}",
            algo.name()
        );
        assert!(
            p.run(&input[..0], Dims { n: 0, ..dims }, &mut out[..0], &mut scratch, Par::SERIAL).is_err(),
            "{}",
            algo.name()
        );
    }
}
