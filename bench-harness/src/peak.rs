//! This core's fp32 FMA peak, measured: independent FMA chains with no memory traffic.
//!
//! Zen 4 issues two 256-bit FMAs per cycle with a 4-cycle latency, so 8 chains keep both
//! pipes busy; 12 (AVX2) and 24 (AVX-512) chains leave margin. AVX-512 FMAs are
//! double-pumped on Zen 4, so both variants should measure the same peak
//! (~115-117 GFLOP/s here, 32 FLOP/cycle at ~3.6 GHz).

use std::time::Instant;

/// The best of the variants this CPU runs (AVX-512, AVX2; 0 where neither exists), in
/// GFLOP/s on the calling thread: the median of 7 runs of about 20 ms each.
pub fn fma_peak_gflops() -> f64 {
    [fma_peak_avx512_gflops(), fma_peak_avx2_gflops()].into_iter().flatten().fold(0.0, f64::max)
}

/// The AVX2+FMA peak in GFLOP/s, or `None` if this CPU lacks AVX2/FMA.
pub fn fma_peak_avx2_gflops() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: AVX2 and FMA detected just above.
        return Some(median_gflops(|iters| unsafe { x86::fma_chains_avx2(iters) }, 12 * 8));
    }
    None
}

/// The AVX-512F peak in GFLOP/s, or `None` if this CPU lacks AVX-512F.
pub fn fma_peak_avx512_gflops() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F detected just above.
        return Some(median_gflops(|iters| unsafe { x86::fma_chains_avx512(iters) }, 24 * 16));
    }
    None
}

/// Median GFLOP/s of `run(iters)`, which performs `lanes_per_iter` FMAs per iteration.
fn median_gflops(run: impl Fn(u64) -> f32, lanes_per_iter: u64) -> f64 {
    let iters = 2_000_000u64;
    std::hint::black_box(run(iters / 10)); // warm up clocks
    let mut g: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(run(std::hint::black_box(iters)));
            (2 * lanes_per_iter * iters) as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    g.sort_by(f64::total_cmp);
    g[g.len() / 2]
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// 12 independent chains of `iters` 256-bit FMAs each.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma_chains_avx2(iters: u64) -> f32 {
        let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        let mut acc = [_mm256_set1_ps(1.0); 12];
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        let s = acc.iter().fold(_mm256_setzero_ps(), |s, &v| _mm256_add_ps(s, v));
        _mm256_cvtss_f32(s)
    }

    /// 24 independent chains of `iters` 512-bit FMAs each.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma_chains_avx512(iters: u64) -> f32 {
        let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        let mut acc = [_mm512_set1_ps(1.0); 24];
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        let s = acc.iter().fold(_mm512_setzero_ps(), |s, &v| _mm512_add_ps(s, v));
        _mm512_reduce_add_ps(s)
    }
}
