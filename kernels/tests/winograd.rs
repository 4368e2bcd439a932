//! Winograd F(2), F(4), F(6) against the naive oracle: every registered flavour (each ISA a
//! separate algorithm, skipped loudly where the CPU lacks it), threads 1 and 2, around the
//! tile sizes (spatial sizes below, equal to, multiples of and off the output tile, 1x1 and
//! 2x2 images), channels 1..=70 (every SIMD remainder), every padding 0..=2.

use kernels::testing::{check, Case};
use kernels::{registry, Activation, ConvAlgorithm, ConvSpec, Dims, Padding};
use proptest::prelude::*;

/// The tolerances measured by the harness's `winograd_accuracy` (docs/winograd.md), with margin. The
/// worst case is a corner output of a padding-2 depthwise layer (one input pixel in its
/// receptive field, a full tile around it): F(2) 2.7e-6, F(4) 6.7e-5, F(6) 4.4e-4; in the
/// interior F(2) stays at f32 summation error and F(4)/F(6) near 3e-5.
const TOLERANCES: [(usize, f64); 3] = [(2, 2e-5), (4, 5e-4), (6, 3e-3)];

fn winograd_algos() -> Vec<&'static dyn ConvAlgorithm> {
    let runnable = registry::algorithms().expect("KERNELS_ISA must be valid");
    for a in registry::compiled().iter().filter(|a| a.family() == kernels::Family::Winograd) {
        if !runnable.iter().any(|b| b.name() == a.name()) {
            eprintln!("SKIPPED: {} is compiled in but cannot run on this CPU / under KERNELS_ISA", a.name());
        }
    }
    let algos: Vec<_> = runnable.into_iter().filter(|a| a.family() == kernels::Family::Winograd).collect();
    assert!(algos.len() >= 3, "the scalar F2/F4/F6 always run");
    algos
}

fn check_all(case: &Case) {
    for algo in winograd_algos() {
        assert!(algo.supports(&case.spec), "{} must support {}", algo.name(), case.spec);
        for threads in [1, 2] {
            if let Err(msg) = check(algo, case, threads).expect("a valid case must run") {
                panic!("{msg}");
            }
        }
    }
}

const ACTS: [Activation; 4] =
    [Activation::None, Activation::Relu, Activation::Relu6, Activation::Clamp { min: -0.5, max: 0.25 }];

/// Spatial sizes in output-tile units: 1..=3 tiles of 6 plus an offset, so 1, 2, and sizes
/// below, at, and above multiples of 2, 4 and 6 all occur.
fn arb_side() -> impl Strategy<Value = usize> {
    prop_oneof![Just(1usize), Just(2), 1usize..=20, (0usize..=3, 0usize..6).prop_map(|(t, r)| t * 6 + r + 1)]
}

fn arb_case() -> impl Strategy<Value = Case> {
    (
        1usize..=70,
        1usize..=70,
        arb_side(),
        arb_side(),
        [0usize..=2, 0..=2, 0..=2, 0..=2],
        0usize..4,
        any::<bool>(),
    )
        .prop_flat_map(|t| (Just(t), any::<u64>()))
        .prop_filter_map("kernel must fit", |((cin, cout, h, w, p, act, dw), seed)| {
            let pad = Padding { top: p[0], left: p[1], bottom: p[2], right: p[3] };
            let spec =
                if dw { ConvSpec::depthwise(cin, 3, 1, 0) } else { ConvSpec::dense(cin, cout, 3, 1, 0) }
                    .with_padding(pad);
            let n = 1 + (seed % 2) as usize;
            Case::random(spec, Dims::new(n, h, w, cin), ACTS[act], seed).ok()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn every_winograd_flavour_agrees_with_naive(case in arb_case()) {
        check_all(&case);
    }
}

#[test]
fn tile_edges_one_and_two_pixel_images_and_channel_remainders() {
    for (h, w) in [(1, 1), (2, 2), (1, 9), (4, 4), (5, 7), (6, 6), (7, 13), (12, 12), (13, 8)] {
        for c in [1, 3, 8, 15, 16, 17, 33] {
            for p in 0..=2 {
                let spec = ConvSpec::depthwise(c, 3, 1, p);
                if let Ok(case) =
                    Case::random(spec, Dims::new(1, h, w, c), Activation::Relu6, (h * w + c) as u64)
                {
                    check_all(&case);
                }
                let spec = ConvSpec::dense(c, 70 - c, 3, 1, p);
                if let Ok(case) =
                    Case::random(spec, Dims::new(2, h, w, c), Activation::None, (h + w * c) as u64)
                {
                    check_all(&case);
                }
            }
        }
    }
}

#[test]
fn mobilenet_like_shapes_many_bands() {
    // More tile rows than one band holds, so band splitting and the thread groups are hit.
    check_all(
        &Case::random(ConvSpec::depthwise(32, 3, 1, 1), Dims::new(1, 40, 40, 32), Activation::Relu6, 5)
            .unwrap(),
    );
    check_all(
        &Case::random(ConvSpec::dense(64, 64, 3, 1, 1), Dims::new(1, 30, 29, 64), Activation::Relu6, 6)
            .unwrap(),
    );
    check_all(
        &Case::random(ConvSpec::dense(160, 24, 3, 1, 1), Dims::new(3, 9, 11, 160), Activation::Relu, 7)
            .unwrap(),
    );
}

#[test]
fn stride_two_dilation_and_grouped_are_not_winograd() {
    for algo in winograd_algos() {
        assert!(!algo.supports(&ConvSpec::depthwise(8, 3, 2, 1)), "{}", algo.name());
        assert!(!algo.supports(&ConvSpec::dense(8, 8, 3, 2, 1)), "{}", algo.name());
        assert!(!algo.supports(&ConvSpec::dense(8, 8, 3, 1, 3)), "{}", algo.name());
        assert!(!algo.supports(&ConvSpec::dense(8, 8, 5, 1, 1)), "{}", algo.name());
        assert!(!algo.supports(&ConvSpec::dense(8, 8, 3, 1, 1).with_dilation(2)), "{}", algo.name());
        assert!(!algo.supports(&ConvSpec::dense(8, 8, 3, 1, 1).with_groups(2)), "{}", algo.name());
        let spec = ConvSpec::dense(8, 8, 3, 2, 1);
        assert!(algo.prepare(&spec, &vec![0.0; 576], None, Activation::None).is_err());
    }
}

#[test]
fn tolerances_are_the_measured_ones() {
    for algo in winograd_algos() {
        let tile = algo.winograd_tile().expect("a Winograd algorithm has a tile");
        let want = TOLERANCES.iter().find(|t| t.0 == tile).expect("tile 2, 4 or 6").1;
        assert_eq!(algo.tolerance(), want, "{}", algo.name());
    }
}

#[test]
fn nan_becomes_lo_under_relu6_and_passes_through_none() {
    for algo in winograd_algos() {
        let spec = ConvSpec::depthwise(9, 3, 1, 1);
        let mut case = Case::random(spec, Dims::new(1, 5, 5, 9), Activation::Relu6, 3).unwrap();
        case.input[0] = f32::NAN;
        let got = case.run(algo, 1).unwrap();
        assert_eq!(got[0], 0.0, "{}", algo.name());
        case.activation = Activation::None;
        let got = case.run(algo, 1).unwrap();
        assert!(got[0].is_nan(), "{}", algo.name());
    }
}

/// Found by the proptest (F(6) 4.8e-4, F(2) 5.9e-6 over the first tolerances): padding 2
/// on the top and left leaves the corner output with one input pixel in its receptive field
/// and a full tile of inputs around it.
#[test]
fn regression_padding_two_corner_outputs() {
    let pad = Padding { top: 2, left: 2, bottom: 0, right: 2 };
    for seed in 0..8 {
        let spec = ConvSpec::depthwise(44, 3, 1, 0).with_padding(pad);
        check_all(&Case::random(spec, Dims::new(2, 7, 18, 44), Activation::None, seed).unwrap());
    }
}
