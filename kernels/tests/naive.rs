//! Properties of the naive oracle itself: if these hold, it is fit to judge everything else.

use kernels::naive::conv2d_nhwc;
use kernels::testing::random_values;
use kernels::{Activation, ConvSpec, Dims, Padding};
use proptest::prelude::*;

/// Runs the oracle without activation.
fn conv(spec: &ConvSpec, input: &[f32], in_dims: Dims, w: &[f32], b: &[f32]) -> (Vec<f32>, Dims) {
    let out_dims = spec.output_dims(in_dims).unwrap();
    let mut out = vec![0.0; out_dims.len().unwrap()];
    conv2d_nhwc(spec, Activation::None, input, in_dims, w, b, &mut out, out_dims);
    (out, out_dims)
}

/// A valid spec with channels 1..=70, kernel 1..=5, stride 1..=3, padding 0..=2, groups
/// dividing both channel counts, and an input of 1..=40 pixels a side that fits the kernel.
fn spec_and_input() -> impl Strategy<Value = (ConvSpec, Dims)> {
    (
        1usize..=70,
        1usize..=8,
        1usize..=5,
        1usize..=5,
        1usize..=3,
        1usize..=3,
        [0usize..=2, 0..=2, 0..=2, 0..=2],
        1usize..=40,
        1usize..=40,
        1usize..=2,
    )
        .prop_filter_map(
            "kernel must fit the padded input",
            |(cin, cout_mul, kh, kw, sh, sw, p, h, w, n)| {
                let groups_choices: Vec<usize> = (1..=cin).filter(|g| cin % g == 0).collect();
                let groups = groups_choices[(kh * 7 + kw * 3 + h) % groups_choices.len()];
                let cout = groups * cout_mul;
                let spec = ConvSpec {
                    in_channels: cin,
                    out_channels: cout,
                    kernel_h: kh,
                    kernel_w: kw,
                    stride_h: sh,
                    stride_w: sw,
                    padding: Padding { top: p[0], left: p[1], bottom: p[2], right: p[3] },
                    groups,
                    dilation_h: 1,
                    dilation_w: 1,
                };
                let dims = Dims::new(n, h, w, cin);
                spec.output_dims(dims).ok().map(|_| (spec, dims))
            },
        )
}

/// PyTorch's formula written independently, in signed arithmetic.
fn pytorch_out(len: usize, before: usize, after: usize, k: usize, d: usize, s: usize) -> Option<usize> {
    let num = len as i64 + before as i64 + after as i64 - d as i64 * (k as i64 - 1) - 1;
    (num >= 0).then(|| (num / s as i64 + 1) as usize)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn output_shape_is_pytorchs((spec, dims) in spec_and_input()) {
        let (oh, ow) = spec.output_hw(dims.h, dims.w).unwrap();
        let p = spec.padding;
        prop_assert_eq!(Some(oh), pytorch_out(dims.h, p.top, p.bottom, spec.kernel_h, 1, spec.stride_h));
        prop_assert_eq!(Some(ow), pytorch_out(dims.w, p.left, p.right, spec.kernel_w, 1, spec.stride_w));
    }

    #[test]
    fn linear_in_the_input((spec, dims) in spec_and_input(), seed in any::<u64>()) {
        let len = dims.len().unwrap();
        let (x1, x2) = (random_values(len, seed), random_values(len, seed ^ 1));
        let w = random_values(spec.weights_len().unwrap(), seed ^ 2);
        let zero = vec![0.0; spec.out_channels];
        let sum: Vec<f32> = x1.iter().zip(&x2).map(|(a, b)| 2.0 * a + b).collect();
        let (y1, _) = conv(&spec, &x1, dims, &w, &zero);
        let (y2, _) = conv(&spec, &x2, dims, &w, &zero);
        let (ys, _) = conv(&spec, &sum, dims, &w, &zero);
        let k = (spec.in_per_group() * spec.kernel_h * spec.kernel_w) as f32;
        for i in 0..ys.len() {
            let want = 2.0 * y1[i] + y2[i];
            prop_assert!((ys[i] - want).abs() <= 1e-5 * 3.0 * k, "{} vs {} at {}", ys[i], want, i);
        }
    }

    #[test]
    fn grouped_is_independent_dense_convs((spec, dims) in spec_and_input(), seed in any::<u64>()) {
        // Depthwise (G = C) is the special case with one channel per group.
        let x = random_values(dims.len().unwrap(), seed);
        let w = random_values(spec.weights_len().unwrap(), seed ^ 3);
        let b = random_values(spec.out_channels, seed ^ 4);
        let (y, od) = conv(&spec, &x, dims, &w, &b);
        let (ipg, opg) = (spec.in_per_group(), spec.out_per_group());
        let dense = ConvSpec { in_channels: ipg, out_channels: opg, groups: 1, ..spec };
        let wlen = dense.weights_len().unwrap();
        for g in 0..spec.groups {
            let xg: Vec<f32> = x.chunks_exact(dims.c).flat_map(|px| px[g * ipg..(g + 1) * ipg].to_vec()).collect();
            let (yg, _) = conv(&dense, &xg, Dims { c: ipg, ..dims }, &w[g * wlen..(g + 1) * wlen], &b[g * opg..(g + 1) * opg]);
            for (p, px) in y.chunks_exact(od.c).enumerate() {
                prop_assert_eq!(&px[g * opg..(g + 1) * opg], &yg[p * opg..(p + 1) * opg]);
            }
        }
    }

    #[test]
    fn identity_kernel_copies_the_input(c in 1usize..=70, half in 0usize..=2, h in 1usize..=20, w in 1usize..=20, seed in any::<u64>()) {
        let k = 2 * half + 1;
        let spec = ConvSpec::dense(c, c, k, 1, half);
        let dims = Dims::new(1, h, w, c);
        let x = random_values(dims.len().unwrap(), seed);
        let mut wts = vec![0.0; spec.weights_len().unwrap()];
        for o in 0..c {
            wts[((o * c + o) * k + half) * k + half] = 1.0;
        }
        let (y, _) = conv(&spec, &x, dims, &wts, &vec![0.0; c]);
        prop_assert_eq!(y, x);
    }

    #[test]
    fn pointwise_is_a_matrix_product(cin in 1usize..=70, cout in 1usize..=70, pixels in 1usize..=40, seed in any::<u64>()) {
        let spec = ConvSpec::pointwise(cin, cout);
        let dims = Dims::new(1, 1, pixels, cin);
        let x = random_values(pixels * cin, seed);
        let w = random_values(cin * cout, seed ^ 5);
        let b = random_values(cout, seed ^ 6);
        let (y, _) = conv(&spec, &x, dims, &w, &b);
        for p in 0..pixels {
            for o in 0..cout {
                let want: f64 = b[o] as f64 + (0..cin).map(|i| x[p * cin + i] as f64 * w[o * cin + i] as f64).sum::<f64>();
                prop_assert_eq!(y[p * cout + o], want as f32);
            }
        }
    }
}

#[test]
fn activation_is_applied_on_the_store() {
    let spec = ConvSpec::pointwise(1, 3);
    let x = [2.0f32];
    let dims = Dims::new(1, 1, 1, 1);
    let mut out = [0.0; 3];
    let od = spec.output_dims(dims).unwrap();
    conv2d_nhwc(&spec, Activation::Relu6, &x, dims, &[5.0, -1.0, 1.0], &[0.0; 3], &mut out, od);
    assert_eq!(out, [6.0, 0.0, 2.0]);
}

#[test]
fn dilation_matches_a_zero_stuffed_kernel() {
    let dil = ConvSpec::dense(2, 3, 3, 1, 2).with_dilation(2);
    let stuffed = ConvSpec::dense(2, 3, 5, 1, 2);
    let dims = Dims::new(1, 6, 7, 2);
    let x = random_values(dims.len().unwrap(), 9);
    let w = random_values(dil.weights_len().unwrap(), 10);
    let mut w5 = vec![0.0; stuffed.weights_len().unwrap()];
    for oi in 0..6 {
        for ky in 0..3 {
            for kx in 0..3 {
                w5[(oi * 5 + 2 * ky) * 5 + 2 * kx] = w[(oi * 3 + ky) * 3 + kx];
            }
        }
    }
    let b = [0.1, 0.2, 0.3];
    assert_eq!(conv(&dil, &x, dims, &w, &b).0, conv(&stuffed, &x, dims, &w5, &b).0);
}
