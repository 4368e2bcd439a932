//! One-thread SGEMM probe: GFLOP/s of every AVX-512 tile on MobileNetV1's pointwise
//! shapes, with the blocking and the A row stride as arguments, for blocking experiments.
//!
//! `cargo run --release -p kernels --example gemm_probe -- [kc] [b_block_kib] [lda_pad]`
//!
//! `PROBE_FLUSH=MIB` streams that many MiB through the caches before every timed call, so B
//! comes from memory as in the network, where 17 MB of f32 weights pass between two reads
//! of one layer's.

use std::time::Instant;

use kernels::gemm::{self, Operands, PackedB};
use kernels::testing::random_values;
use kernels::{Activation, Backend, Par};

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("a number")).collect();
    let kc = args.first().copied().unwrap_or(kernels::cache::blocking().kc);
    let bkib = args.get(1).copied().unwrap_or(kernels::cache::blocking().b_block_bytes / 1024);
    let pad = args.get(2).copied().unwrap_or(0);
    let filter = std::env::var("PROBE_TILES").ok();
    let shapes = std::env::var("PROBE_SHAPES").unwrap_or_else(|_| "pw3,pw5,pw7,pw12,pw13,fc".into());
    let peak = kernels::peak::fma_peak_gflops();
    println!("kc {kc}, B block {bkib} KiB, lda pad {pad}, peak {peak:.1} GFLOP/s");
    let all = [
        ("pw2", 3136, 64, 128),
        ("pw3", 3136, 128, 128),
        ("pw4", 784, 128, 256),
        ("pw5", 784, 256, 256),
        ("pw6", 196, 256, 512),
        ("pw7", 196, 512, 512),
        ("pw12", 49, 512, 1024),
        ("pw13", 49, 1024, 1024),
        ("fc", 1, 1024, 1000),
    ];
    let mut all = all.to_vec();
    if let Ok(c) = std::env::var("PROBE_CUSTOM") {
        let v: Vec<usize> = c.split(',').map(|x| x.parse().unwrap()).collect();
        all.push(("custom", v[0], v[1], v[2]));
    }
    let wide = std::env::var("PROBE_WIDE").is_ok();
    let flush_mib = std::env::var("PROBE_FLUSH").ok().map_or(0, |v| v.parse::<usize>().expect("MiB"));
    let mut flush = vec![0u8; flush_mib << 20];
    // PROBE_WARM_AC: touch A and C after the flush, so that only B arrives cold.
    let warm_ac = std::env::var("PROBE_WARM_AC").is_ok();
    let tiles = gemm::tiles(Backend::Avx512).expect("avx512 runs here");
    for &(name, m, k, n) in all.iter().filter(|s| shapes.split(',').any(|x| x == s.0)) {
        let lda = k + pad;
        let ldc = n + pad;
        let a = random_values(m * lda, 1);
        let bsrc = random_values(k * n, 2);
        let bias = random_values(n, 3);
        let mut c = vec![0.0f32; m * ldc];
        let mut line = format!("{name:5} M={m:4} K={k:4} N={n:4}:");
        for t in tiles {
            if let Some(f) = &filter {
                if !f.split(',').any(|x| x == format!("{}x{}", t.mr, t.nr)) {
                    continue;
                }
            }
            if t.nr > 32 && k > 128 && !wide {
                continue;
            }
            let packed = PackedB::with_blocking(k, n, t.nr, kc, bkib * 1024, |p, j| bsrc[p * n + j]).unwrap();
            let ops = Operands { a: &a, lda, b: &packed, bias: &bias, activation: Activation::Relu6, ldc };
            let flops = 2.0 * (m * n * k) as f64;
            let reps = ((2e8 / flops) as usize).max(3);
            let mut best = Vec::new();
            for _ in 0..7 {
                let mut spent = 0.0;
                for _ in 0..reps {
                    for line in flush.chunks_mut(64) {
                        line[0] = line[0].wrapping_add(1);
                    }
                    if warm_ac {
                        let s: f32 = a.iter().step_by(16).sum();
                        std::hint::black_box(s);
                        for x in c.iter_mut().step_by(16) {
                            *x += 1.0;
                        }
                    }
                    let t0 = Instant::now();
                    // SAFETY: the tile is from the AVX-512 table, which runs here.
                    unsafe { gemm::sgemm_tile(t, m, &ops, &mut c, Par::SERIAL) }.unwrap();
                    spent += t0.elapsed().as_secs_f64();
                }
                best.push(spent / reps as f64);
            }
            best.sort_by(f64::total_cmp);
            let med = best[best.len() / 2];
            if m == 1 {
                line += &format!(" {}x{} {:.3}ms", t.mr, t.nr, med * 1e3);
            } else {
                line += &format!(
                    " {}x{} {:.0}({:.0}%)",
                    t.mr,
                    t.nr,
                    flops / med / 1e9,
                    flops / med / 1e9 / peak * 100.0
                );
            }
        }
        println!("{line}");
    }
}
