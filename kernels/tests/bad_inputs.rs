//! The bad-input table of docs/robustness.md, kernels half: every case returns a typed error
//! or a documented result, for every registered algorithm. Never a panic, UB or SIGILL.

use kernels::testing::{random_values, Case};
use kernels::{registry, Activation, ConvAlgorithm, ConvSpec, Dims, KernelError, Padding, Par};

fn runnable() -> Vec<&'static dyn ConvAlgorithm> {
    registry::algorithms().expect("valid KERNELS_ISA")
}

#[test]
fn specs_with_zero_sizes_are_rejected_by_every_algorithm() {
    let base = ConvSpec::depthwise(8, 3, 1, 1);
    let zeroed = [
        ConvSpec { in_channels: 0, ..base },
        ConvSpec { out_channels: 0, ..base },
        ConvSpec { kernel_h: 0, ..base },
        ConvSpec { stride_w: 0, ..base },
        ConvSpec { groups: 0, ..base },
        ConvSpec { dilation_h: 0, ..base },
    ];
    for spec in zeroed {
        assert!(matches!(spec.validate(), Err(KernelError::ZeroSize { .. })), "{spec:?}");
        for algo in runnable() {
            assert!(!algo.supports(&spec) || algo.name() == "naive", "{} claims {spec}", algo.name());
            assert!(algo.prepare(&spec, &[], None, Activation::None).is_err(), "{}", algo.name());
        }
    }
}

#[test]
fn overflowing_sizes_are_errors_not_aborts() {
    let huge = ConvSpec::pointwise(usize::MAX / 2, 3);
    assert!(matches!(huge.validate(), Err(KernelError::Overflow { .. })));
    let spec = ConvSpec::pointwise(4, 4);
    let dims = Dims::new(usize::MAX / 4, 1 << 20, 1 << 20, 4);
    assert!(matches!(spec.output_dims(dims), Err(KernelError::Overflow { .. })));
    for algo in runnable() {
        if let Ok(p) = algo.prepare(&spec, &[0.0; 16], None, Activation::None) {
            assert!(p.run(&[], dims, &mut [], &mut [], Par::SERIAL).is_err(), "{}", algo.name());
            assert!(p.scratch_len(dims).is_err() || p.scratch_len(dims).is_ok(), "no panic");
        }
    }
    assert!(kernels::AlignedBuf::<f32>::zeros(usize::MAX / 2).is_err());
}

#[test]
fn groups_padding_and_kernel_extent_out_of_range() {
    assert!(matches!(
        ConvSpec::dense(6, 4, 3, 1, 1).with_groups(4).validate(),
        Err(KernelError::GroupsMismatch { .. })
    ));
    let too_big = ConvSpec::dense(1, 1, 7, 1, 1);
    assert!(matches!(too_big.output_hw(4, 4), Err(KernelError::KernelTooLarge { .. })));
    let pad = ConvSpec::depthwise(3, 3, 1, 0).with_padding(Padding {
        top: usize::MAX,
        left: 0,
        bottom: 0,
        right: 0,
    });
    assert!(matches!(pad.output_hw(4, 4), Err(KernelError::Overflow { .. })));
}

#[test]
fn unaligned_views_give_the_same_result() {
    // Kernels take plain slices: a view starting 4 bytes past a 64-byte boundary must work.
    for algo in runnable() {
        for spec in
            [ConvSpec::depthwise(19, 3, 1, 1), ConvSpec::pointwise(19, 23), ConvSpec::dense(3, 8, 3, 2, 1)]
        {
            if !algo.supports(&spec) {
                continue;
            }
            let dims = Dims::new(1, 9, 11, spec.in_channels);
            let case = Case::random(spec, dims, Activation::Relu6, 3).unwrap();
            let aligned = case.run(algo, 1).unwrap();
            let p = algo.prepare(&spec, &case.weights, Some(&case.bias), Activation::Relu6).unwrap();
            let mut shifted_in = vec![0.0; case.input.len() + 1];
            shifted_in[1..].copy_from_slice(&case.input);
            let mut shifted_out = vec![0.0; aligned.len() + 1];
            let mut scratch = vec![0.0; p.scratch_len(dims).unwrap() + 1];
            p.run(&shifted_in[1..], dims, &mut shifted_out[1..], &mut scratch[1..], Par::SERIAL).unwrap();
            assert_eq!(&shifted_out[1..], &aligned[..], "{} on {spec}", algo.name());
        }
    }
}

#[test]
fn nan_and_inf_follow_the_documented_semantics() {
    // A NaN input: with no activation it propagates to the outputs whose window covers it;
    // ReLU6 maps NaN to 0 (maxNum semantics, kernels::Activation). Winograd transforms mix a
    // whole tile, so there a NaN may reach every output of its tile (documented).
    let spec = ConvSpec::depthwise(16, 3, 1, 1);
    let dims = Dims::new(1, 6, 6, 16);
    for algo in runnable() {
        if !algo.supports(&spec) {
            continue;
        }
        let mut input = random_values(dims.len().unwrap(), 1);
        input[(2 * 6 + 2) * 16 + 5] = f32::NAN; // pixel (2, 2), channel 5
        input[(4 * 6 + 4) * 16 + 7] = f32::INFINITY;
        let w = random_values(spec.weights_len().unwrap(), 2);
        for (act, nan_out) in [(Activation::None, true), (Activation::Relu6, false)] {
            let p = algo.prepare(&spec, &w, None, act).unwrap();
            let mut out = vec![0.0; dims.len().unwrap()];
            let mut scratch = vec![0.0; p.scratch_len(dims).unwrap()];
            p.run(&input, dims, &mut out, &mut scratch, Par::SERIAL).unwrap();
            let at = |y: usize, x: usize, c: usize| out[(y * 6 + x) * 16 + c];
            assert_eq!(at(2, 2, 5).is_nan(), nan_out, "{} {act:?}", algo.name());
            if !nan_out {
                assert_eq!(at(2, 2, 5), 0.0, "{}: ReLU6(NaN) = 0", algo.name());
                assert!(out.iter().all(|v| (0.0..=6.0).contains(v)), "{}", algo.name());
            }
            // Far from both specials and in another channel: untouched by them.
            assert!(at(0, 5, 0).is_finite(), "{} {act:?}", algo.name());
            if algo.family() != kernels::Family::Winograd {
                assert!(at(0, 0, 5).is_finite(), "{} {act:?}: NaN leaked outside its window", algo.name());
            }
        }
    }
}

#[test]
fn unknown_isa_and_unknown_kernel_set() {
    assert!(matches!(kernels::Isa::parse("sse9"), Err(kernels::isa::IsaError::Unknown(_))));
    assert!(matches!(kernels::kernel_set("fastest"), Err(KernelError::UnknownKernelSet { .. })));
}
