//! Every `direct-*` depthwise flavour against the naive oracle, around its tiles: channel
//! counts below, at, between and above the vector widths (4, 8, 16), spatial sizes from
//! 1x1 to 33x33 (odd sizes at stride 2, fewer pixels than the register tile), paddings
//! 0..=2 per side, 3x3 and other kernels, every activation, 1 and 2 threads.
//!
//! The flavours come from the registry (`family() == "direct"`); one the CPU (or
//! `KERNELS_ISA`) cannot run is skipped loudly.

use kernels::testing::{check, Case};
use kernels::{registry, Activation, ConvAlgorithm, ConvSpec, Dims, Padding, Par};
use proptest::prelude::*;

/// The channel counts ncnn and XNNPACK sweep: every remainder of 4, 8 and 16 lanes.
const NAMED_CHANNELS: [usize; 13] = [1, 2, 3, 4, 7, 8, 12, 15, 16, 17, 31, 32, 33];

const ACTIVATIONS: [Activation; 4] =
    [Activation::None, Activation::Relu, Activation::Relu6, Activation::Clamp { min: -0.5, max: 0.25 }];

fn direct_flavours() -> Vec<&'static dyn ConvAlgorithm> {
    let runnable = registry::algorithms().expect("KERNELS_ISA must be valid for the tests");
    let mut out = Vec::new();
    for a in registry::compiled().iter().filter(|a| a.family() == kernels::Family::Direct) {
        if runnable.iter().any(|b| b.name() == a.name()) {
            out.push(*a);
        } else {
            eprintln!("SKIPPED: {} is compiled in but cannot run on this CPU / under KERNELS_ISA", a.name());
        }
    }
    assert!(!out.is_empty(), "no direct flavour is compiled in: check the cargo features");
    out
}

fn check_every_flavour(case: &Case) {
    for algo in direct_flavours() {
        assert!(algo.supports(&case.spec), "{} must support {}", algo.name(), case.spec);
        for threads in [1, 2] {
            if let Err(msg) = check(algo, case, threads).expect("a valid case must run") {
                panic!("{msg}");
            }
        }
    }
}

fn arb_depthwise_3x3() -> impl Strategy<Value = Case> {
    (
        prop_oneof![proptest::sample::select(NAMED_CHANNELS.to_vec()), 1usize..=70],
        1usize..=2,
        (0usize..=2, 0usize..=2, 0usize..=2, 0usize..=2),
        1usize..=33,
        1usize..=33,
        0usize..4,
        1usize..=2,
        any::<u64>(),
    )
        .prop_filter_map(
            "kernel must fit the padded input",
            |(c, s, (t, l, b, r), h, w, act, n, seed)| {
                let spec = ConvSpec::depthwise(c, 3, s, 0).with_padding(Padding {
                    top: t,
                    left: l,
                    bottom: b,
                    right: r,
                });
                Case::random(spec, Dims::new(n, h, w, c), ACTIVATIONS[act], seed).ok()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn depthwise_3x3_agrees_with_naive(case in arb_depthwise_3x3()) {
        check_every_flavour(&case);
    }

    #[test]
    fn other_kernels_agree_with_naive(
        c in 1usize..=40,
        k in 1usize..=7,
        s in 1usize..=3,
        p in 0usize..=6,
        h in 1usize..=20,
        w in 1usize..=20,
        seed in any::<u64>(),
    ) {
        let spec = ConvSpec::depthwise(c, k, s, p.min(k - 1));
        if let Ok(case) = Case::random(spec, Dims::new(1, h, w, c), Activation::Relu6, seed) {
            check_every_flavour(&case);
        }
    }
}

/// Every named channel count, both strides, every padding 0..=2, on square sizes that put
/// 0, 1, 2 and many pixels in the register-tiled interior (1x1 up to 33x33, odd at stride 2).
#[test]
fn named_channels_every_stride_and_padding() {
    let mut seed = 0;
    for &c in &NAMED_CHANNELS {
        for s in 1..=2 {
            for p in 0..=2 {
                for hw in [1, 2, 3, 5, 9, 12, 17, 33] {
                    seed += 1;
                    let spec = ConvSpec::depthwise(c, 3, s, p);
                    if let Ok(case) = Case::random(spec, Dims::new(1, hw, hw, c), Activation::Relu6, seed) {
                        check_every_flavour(&case);
                    }
                }
            }
        }
    }
}

/// Rectangular images and asymmetric padding: the left and right border paths differ.
#[test]
fn rectangular_images_and_asymmetric_padding() {
    let pads = [
        Padding { top: 0, left: 2, bottom: 1, right: 0 },
        Padding { top: 2, left: 0, bottom: 0, right: 2 },
        Padding { top: 1, left: 1, bottom: 2, right: 1 },
    ];
    let mut seed = 100;
    for pad in pads {
        for (h, w) in [(1, 33), (33, 1), (4, 19), (7, 2), (13, 11)] {
            for c in [5, 16, 33] {
                for s in 1..=2 {
                    seed += 1;
                    let spec = ConvSpec::depthwise(c, 3, s, 0).with_padding(pad);
                    if let Ok(case) = Case::random(spec, Dims::new(1, h, w, c), Activation::None, seed) {
                        check_every_flavour(&case);
                    }
                }
            }
        }
    }
}

/// MobileNetV1's depthwise layers at full width, on 16x16 crops (the shapes' channel counts
/// and strides, with images small enough for the f64 oracle to stay quick).
#[test]
fn mobilenet_channel_counts() {
    for (i, (c, s)) in
        [(32, 1), (64, 2), (128, 1), (128, 2), (256, 1), (256, 2), (512, 1), (512, 2), (1024, 1)]
            .into_iter()
            .enumerate()
    {
        let case = Case::random(
            ConvSpec::depthwise(c, 3, s, 1),
            Dims::new(1, 16, 16, c),
            Activation::Relu6,
            i as u64,
        )
        .unwrap();
        check_every_flavour(&case);
    }
}

/// The AVX-512 interior tile of 4 pixels x 2 channel blocks (from 64 channels on): channel
/// counts just below and at the threshold, with an odd block after the pairs (80), with a
/// tail after the pairs (65, 97) and after an odd block (81), on widths that leave 0..3
/// interior pixels after the 4-pixel tiles, at both strides.
#[test]
fn two_block_tiles_around_their_edges() {
    let mut seed = 500;
    for c in [63, 64, 65, 80, 81, 96, 97] {
        for s in 1..=2 {
            for w in [5, 6, 7, 8, 9, 10, 11, 14] {
                seed += 1;
                let w = (w - 1) * s + 1;
                let case = Case::random(
                    ConvSpec::depthwise(c, 3, s, 1),
                    Dims::new(1, 3, w, c),
                    Activation::Relu6,
                    seed,
                )
                .unwrap();
                check_every_flavour(&case);
            }
        }
    }
}

/// Support boundaries: dilation and non-depthwise groups fall back to naive.
#[test]
fn unsupported_shapes_are_refused() {
    for algo in direct_flavours() {
        assert!(!algo.supports(&ConvSpec::depthwise(8, 3, 1, 1).with_dilation(2)), "{}", algo.name());
        assert!(!algo.supports(&ConvSpec::dense(8, 8, 3, 1, 1)), "{}", algo.name());
        assert!(!algo.supports(&ConvSpec::dense(8, 16, 3, 1, 1).with_groups(8)), "{}", algo.name());
        assert!(!algo.supports(&ConvSpec::depthwise(8, 9, 1, 1)), "{}", algo.name());
        assert!(!algo.supports(&ConvSpec::depthwise(8, 3, 1, 3)), "{}", algo.name());
        let spec = ConvSpec::depthwise(8, 3, 1, 3);
        let w = vec![0.0; spec.weights_len().unwrap()];
        assert!(algo.prepare(&spec, &w, None, Activation::None).is_err(), "{}", algo.name());
    }
}

/// A NaN input becomes `lo` under a clamp (ReLU6: 0) and passes through without one, as in
/// [`Activation::apply`]; checked on the tiled interior and on the border pixels.
#[test]
fn nan_follows_the_activation_semantics() {
    let c = 19;
    let spec = ConvSpec::depthwise(c, 3, 1, 1);
    let dims = Dims::new(1, 6, 10, c);
    let mut input = vec![1.0; dims.len().unwrap()];
    input.iter_mut().step_by(7).for_each(|x| *x = f32::NAN);
    let w = vec![0.5; spec.weights_len().unwrap()];
    for algo in direct_flavours() {
        for (act, nan_to) in [(Activation::Relu6, Some(0.0)), (Activation::None, None)] {
            let p = algo.prepare(&spec, &w, None, act).unwrap();
            let mut out = vec![0.0; dims.len().unwrap()];
            p.run(&input, dims, &mut out, &mut [], Par::SERIAL).unwrap();
            let mut want = vec![0.0; out.len()];
            kernels::naive::conv2d_nhwc(&spec, act, &input, dims, &w, &vec![0.0; c], &mut want, dims);
            for (i, (&g, &e)) in out.iter().zip(&want).enumerate() {
                match nan_to {
                    _ if e.is_nan() => assert!(g.is_nan(), "{} {act:?} output {i}: {g}", algo.name()),
                    Some(v) if g.is_nan() => panic!("{} {act:?} output {i}: NaN, want {v}", algo.name()),
                    _ => assert!(
                        (g - e).abs() <= 1e-5 * e.abs().max(1.0),
                        "{} output {i}: {g} vs {e}",
                        algo.name()
                    ),
                }
            }
        }
    }
}
