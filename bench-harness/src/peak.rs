//! Microbenchmarks of this machine's roofs: the FMA peak of one core and the memory read
//! bandwidth of one thread. Every GFLOP/s figure in `results/` is quoted against these.

use std::hint::black_box;
use std::time::Instant;

/// Best-of-`reps` GFLOP/s of a loop of independent FMAs on one core, at the vector width
/// of `isa` (AVX2+FMA: 256-bit, AVX-512F: 512-bit); `None` where this CPU lacks it or the
/// ISA has no FMA loop here (the aarch64 verify mode publishes no timings).
///
/// Measured here: on Zen 4 (two 256-bit FMA pipes, AVX-512 double-pumped) both widths give
/// the same peak; on Intel Xeon with two 512-bit FMA ports AVX-512 doubles it.
pub fn fma_peak_gflops(isa: kernels::Isa, reps: usize) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        if !isa.detected() {
            return None;
        }
        let iters = 20_000_000u64;
        let (kernel, lanes): (unsafe fn(u64) -> f32, usize) = match isa {
            kernels::Isa::Avx512 => (x86::fma_loop_avx512, 16),
            kernels::Isa::Avx2 => (x86::fma_loop_avx2, 8),
            _ => return None,
        };
        let flops_per_iter = (x86::ACC * lanes * 2) as f64;
        let mut best = 0.0f64;
        for _ in 0..reps.max(1) {
            let start = Instant::now();
            // SAFETY: `isa.detected()` confirmed this CPU executes the chosen kernel's ISA.
            black_box(unsafe { kernel(black_box(iters)) });
            let secs = start.elapsed().as_secs_f64();
            best = best.max(iters as f64 * flops_per_iter / secs / 1e9);
        }
        Some(best)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, reps);
        None
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Independent accumulators: FMA latency 4 cycles x 2 pipes needs >= 8 in flight on Zen 4.
    pub const ACC: usize = 12;

    /// `iters` rounds of 12 independent 256-bit FMAs.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma_loop_avx2(iters: u64) -> f32 {
        let mut acc = [_mm256_set1_ps(0.0); ACC];
        let a = _mm256_set1_ps(0.999_999);
        let b = _mm256_set1_ps(1e-7);
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm256_fmadd_ps(*x, a, b);
            }
        }
        let mut s = _mm256_setzero_ps();
        for x in acc {
            s = _mm256_add_ps(s, x);
        }
        _mm256_cvtss_f32(s)
    }

    /// `iters` rounds of 12 independent 512-bit FMAs.
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma_loop_avx512(iters: u64) -> f32 {
        let mut acc = [_mm512_set1_ps(0.0); ACC];
        let a = _mm512_set1_ps(0.999_999);
        let b = _mm512_set1_ps(1e-7);
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm512_fmadd_ps(*x, a, b);
            }
        }
        let mut s = _mm512_setzero_ps();
        for x in acc {
            s = _mm512_add_ps(s, x);
        }
        _mm512_reduce_add_ps(s)
    }
}

/// Best-of-`reps` single-thread read bandwidth in GB/s: summing a 256 MiB buffer (8 times
/// the 32 MiB L3, so it streams from DRAM) with 16 independent accumulators.
pub fn read_bandwidth_gbs(reps: usize) -> f64 {
    let buf = vec![1.0f32; 64 << 20];
    let mut best = 0.0f64;
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        let mut acc = [0.0f32; 16];
        for chunk in black_box(&buf).chunks_exact(16) {
            for (a, &v) in acc.iter_mut().zip(chunk) {
                *a += v;
            }
        }
        black_box(acc);
        let secs = start.elapsed().as_secs_f64();
        best = best.max((buf.len() * 4) as f64 / secs / 1e9);
    }
    best
}
