//! One-thread probe of the network's input conversion (`tensor::nchw_to_nhwc_par`, the
//! 224 x 224 x 3 f32 image into NHWC f32), warm and after streaming 64 MiB through the
//! caches, as in the network, where the image and the buffer arrive cold.
//!
//! `cargo run --release -p kernels --example input_probe`

use std::time::Instant;

use kernels::{Dims, Par};

fn main() {
    let dims = Dims::new(1, 224, 224, 3);
    let src = vec![0.5f32; dims.len().expect("a small tensor")];
    let mut dst = vec![0.0f32; src.len()];
    let mut flush = vec![0u8; 64 << 20];
    for cold in [false, true] {
        let (warmup, timed) = (10, 190);
        let mut total = 0.0;
        for it in 0..warmup + timed {
            if cold {
                for (i, x) in flush.iter_mut().enumerate().step_by(64) {
                    *x = x.wrapping_add(i as u8);
                }
            }
            let t = Instant::now();
            kernels::tensor::nchw_to_nhwc_par(&src, &mut dst, dims, Par::global(1), |s, d| {
                d.copy_from_slice(s)
            });
            if it >= warmup {
                total += t.elapsed().as_secs_f64();
            }
        }
        let what = if cold { "after a 64 MiB flush" } else { "warm" };
        println!("{what}: {:.4} ms", total / timed as f64 * 1e3);
    }
}
