//! Model-level properties: every kernel set agrees with naive on random small networks;
//! batch norm folding equals convolution followed by batch norm; batches are independent.

use kernels::naive::conv2d_nhwc;
use kernels::testing::random_values;
use kernels::{Activation, ConvSpec, Dims};
use model::weights::fold_batchnorm;
use model::{Config, MobileNet, Weights};
use proptest::prelude::*;

fn logits(
    config: Config,
    weights: &Weights,
    set: &kernels::KernelSet,
    batch: usize,
    threads: usize,
    input: &[f32],
) -> Vec<f32> {
    let mut net = MobileNet::new(config, weights, set, batch, threads).unwrap();
    net.forward(input).unwrap().to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn every_kernel_set_agrees_with_naive(
        width in prop_oneof![Just(0.25), Just(0.3), Just(0.5)],
        resolution in prop_oneof![Just(32usize), Just(64), Just(96)],
        batch in 1usize..=2,
        classes in 1usize..=20,
        seed in any::<u64>(),
    ) {
        let config = Config { width, resolution, classes };
        let mut weights = Weights::random(&config, seed).unwrap();
        weights.randomize_batchnorm(seed);
        let input = random_values(batch * 3 * resolution * resolution, seed);
        let sets = kernels::kernel_sets().unwrap();
        let want = logits(config, &weights, &sets[0], batch, 1, &input);
        let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        for set in &sets[1..] {
            let worst = set.tolerance().max(1e-5);
            let tol = if worst <= 1e-5 { 1e-4 } else { 100.0 * worst } as f32;
            let got = logits(config, &weights, set, batch, 1 + (seed % 2) as usize, &input);
            let err = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0.0f32, f32::max);
            prop_assert!(err <= tol * scale, "{}: {} > {}", set.name(), err, tol * scale);
        }
    }
}

#[test]
fn batch_items_are_independent_and_threads_do_not_change_results() {
    let config = Config { width: 0.25, resolution: 32, classes: 7 };
    let weights = Weights::random(&config, 11).unwrap();
    let set = kernels::kernel_set("naive").unwrap();
    let one = 3 * 32 * 32;
    let input = random_values(2 * one, 5);
    let both = logits(config, &weights, &set, 2, 1, &input);
    let first = logits(config, &weights, &set, 1, 1, &input[..one]);
    let second = logits(config, &weights, &set, 1, 2, &input[one..]);
    assert_eq!(&both[..7], &first[..]);
    assert_eq!(&both[7..], &second[..]);
}

#[test]
fn folding_equals_conv_then_batchnorm() {
    let spec = ConvSpec::dense(5, 6, 3, 2, 1);
    let dims = Dims::new(1, 9, 8, 5);
    let x = random_values(dims.len().unwrap(), 1);
    let w = random_values(spec.weights_len().unwrap(), 2);
    let b = random_values(6, 3);
    let gamma: Vec<f32> = random_values(6, 4).iter().map(|v| 1.0 + 0.5 * v).collect();
    let beta = random_values(6, 5);
    let mean = random_values(6, 6);
    let var: Vec<f32> = random_values(6, 7).iter().map(|v| 1.0 + 0.5 * v).collect();
    let od = spec.output_dims(dims).unwrap();
    let mut conv = vec![0.0; od.len().unwrap()];
    conv2d_nhwc(&spec, Activation::None, &x, dims, &w, &b, &mut conv, od);
    let (fw, fb) = fold_batchnorm(&w, &b, &gamma, &beta, &mean, &var);
    let mut folded = vec![0.0; od.len().unwrap()];
    conv2d_nhwc(&spec, Activation::None, &x, dims, &fw, &fb, &mut folded, od);
    for (i, (&c, &f)) in conv.iter().zip(&folded).enumerate() {
        let o = i % 6;
        let bn = (c - mean[o]) / (var[o] + 1e-5).sqrt() * gamma[o] + beta[o];
        assert!((bn - f).abs() <= 1e-5 * (1.0 + bn.abs()), "{bn} vs {f}");
    }
}

#[test]
fn bad_inputs_are_errors() {
    let config = Config { width: 0.25, resolution: 32, classes: 3 };
    let weights = Weights::random(&config, 1).unwrap();
    let set = kernels::kernel_set("naive").unwrap();
    assert!(MobileNet::new(config, &weights, &set, 0, 1).is_err());
    assert!(MobileNet::new(config, &weights, &set, 1, 0).is_err());
    let other = Config { classes: 4, ..config };
    assert!(MobileNet::new(other, &weights, &set, 1, 1).is_err(), "weights for 3 classes, model for 4");
    let mut net = MobileNet::new(config, &weights, &set, 1, 1).unwrap();
    assert!(net.forward(&[0.0; 10]).is_err());
    assert!(MobileNet::new(Config { resolution: 48, ..config }, &weights, &set, 1, 1).is_err());
}

#[test]
fn sessions_share_one_prepared_model_across_threads() {
    let config = Config { width: 0.25, resolution: 64, classes: 5 };
    let weights = Weights::random(&config, 3).unwrap();
    for set in kernels::kernel_sets().unwrap() {
        let mut net = MobileNet::new(config, &weights, &set, 1, 1).unwrap();
        let inputs: Vec<Vec<f32>> = (0..4).map(|i| random_values(3 * 64 * 64, i)).collect();
        let want: Vec<Vec<f32>> = inputs.iter().map(|x| net.forward(x).unwrap().to_vec()).collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = inputs
                .iter()
                .map(|x| {
                    let mut session = net.session().unwrap();
                    s.spawn(move || (0..3).map(|_| session.forward(x).unwrap().to_vec()).collect::<Vec<_>>())
                })
                .collect();
            for (h, w) in handles.into_iter().zip(&want) {
                for got in h.join().unwrap() {
                    assert_eq!(&got, w, "{}: concurrent sessions must be bit-identical", set.name());
                }
            }
        });
    }
}

#[test]
fn repeated_runs_are_bit_identical_per_set_and_thread_count() {
    let config = Config { width: 0.25, resolution: 32, classes: 4 };
    let weights = Weights::random(&config, 8).unwrap();
    let input = random_values(2 * 3 * 32 * 32, 9);
    for set in kernels::kernel_sets().unwrap() {
        for threads in [1, 2] {
            let mut net = MobileNet::new(config, &weights, &set, 2, threads).unwrap();
            let first = net.forward(&input).unwrap().to_vec();
            for _ in 0..3 {
                assert_eq!(net.forward(&input).unwrap(), &first[..], "{} at {threads} threads", set.name());
            }
        }
    }
}

/// The full-size 1.0-224 model with a NaN and an infinity in its input gives naive's
/// logits (within each set's tolerance) with every kernel set: ReLU6 maps them to its
/// bounds in the first layer's outputs whose windows hold them, in every backend.
#[test]
fn full_size_model_with_nan_and_inf_inputs_matches_naive_in_every_set() {
    let config = Config { width: 1.0, resolution: 224, classes: 1000 };
    let mut weights = Weights::random(&config, 3).unwrap();
    weights.randomize_batchnorm(3);
    let mut input = random_values(3 * 224 * 224, 9);
    input[(224 + 100) * 224 + 57] = f32::NAN; // NCHW: channel 1, row 100, column 57
    input[(2 * 224 + 223) * 224 + 223] = f32::INFINITY; // the last pixel's channel 2
    input[5] = f32::NEG_INFINITY;
    let sets = kernels::kernel_sets().unwrap();
    let want = logits(config, &weights, &sets[0], 1, 1, &input);
    assert!(want.iter().all(|v| v.is_finite()));
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for set in &sets[1..] {
        let worst = set.tolerance().max(1e-5);
        let tol = if worst <= 1e-5 { 1e-4 } else { 100.0 * worst } as f32;
        let got = logits(config, &weights, set, 1, 2, &input);
        let err = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0.0f32, f32::max);
        assert!(err <= tol * scale, "{}: max |logit - naive| = {err} > {}", set.name(), tol * scale);
    }
}
