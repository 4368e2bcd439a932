//! This core's peaks, measured: independent chains of one instruction with no memory
//! traffic. fp32 FMA (AVX2, AVX-512, NEON) in GFLOP/s, and the int8 dot product
//! (`vpdpbusd`, AVX512_VNNI: 64 u8 x s8 multiply-adds per `zmm`) in GOP/s, what the int8
//! pointwise layers are measured against.
//!
//! Two FMA pipes with a 4-cycle latency need 8 independent chains; 12 (AVX2) and 24
//! (AVX-512) leave margin. On Zen 4 (AVX-512 double-pumped) both variants give the same
//! peak (~116 GFLOP/s); on the Intel Xeon (model 207, Emerald Rapids) these benches also
//! ran on, the two 512-bit FMA ports make the AVX-512 peak twice the AVX2 one.
//!
//! The figure is the **best** of 7 runs, not the median: on a shared machine noise only
//! ever lowers a compute-bound loop's throughput, and a peak that is too low would inflate
//! every "% of peak" quoted against it.

/// The best of the variants this CPU runs (AVX-512, AVX2, NEON; 0 where none exists), in
/// GFLOP/s on the calling thread: the best of 7 runs of about 10-20 ms each.
pub fn fma_peak_gflops() -> f64 {
    [fma_peak_avx512_gflops(), fma_peak_avx2_gflops(), fma_peak_neon_gflops()]
        .into_iter()
        .flatten()
        .fold(0.0, f64::max)
}

/// The FMA peak of the f32 kernels that run under `ceiling` ([`crate::Isa::f32_level`]),
/// `None` for scalar (no vector FMA) or a level this CPU lacks.
pub fn fma_peak_gflops_at(ceiling: crate::Isa) -> Option<f64> {
    match ceiling.f32_level() {
        crate::Isa::Avx512 => fma_peak_avx512_gflops(),
        crate::Isa::Avx2 => fma_peak_avx2_gflops(),
        crate::Isa::Neon => fma_peak_neon_gflops(),
        _ => None,
    }
}

/// The NEON `fmla` peak in GFLOP/s, or `None` off aarch64 (under qemu the figure means
/// nothing).
pub fn fma_peak_neon_gflops() -> Option<f64> {
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("neon") {
        // SAFETY: NEON detected just above.
        return Some(best_gflops(|iters| unsafe { arm::fma_chains_neon(iters) }, 24 * 4));
    }
    None
}

/// The AVX512_VNNI `vpdpbusd zmm` peak in GOP/s (a multiply-add counts 2 ops, as FLOPs do),
/// or `None` if this CPU lacks AVX-512 VNNI.
pub fn dot_i8_peak_gops() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni") {
        // SAFETY: AVX-512F and AVX512_VNNI detected just above.
        return Some(best_gflops(|iters| unsafe { x86::dpbusd_chains_avx512(iters) }, 24 * 64));
    }
    None
}

/// The AVX2+FMA peak in GFLOP/s, or `None` if this CPU lacks AVX2/FMA.
pub fn fma_peak_avx2_gflops() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: AVX2 and FMA detected just above.
        return Some(best_gflops(|iters| unsafe { x86::fma_chains_avx2(iters) }, 12 * 8));
    }
    None
}

/// The AVX-512F peak in GFLOP/s, or `None` if this CPU lacks AVX-512F.
pub fn fma_peak_avx512_gflops() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F detected just above.
        return Some(best_gflops(|iters| unsafe { x86::fma_chains_avx512(iters) }, 24 * 16));
    }
    None
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
/// Best GFLOP/s of `run(iters)`, which performs `lanes_per_iter` multiply-adds per iteration.
fn best_gflops(run: impl Fn(u64) -> f32, lanes_per_iter: u64) -> f64 {
    let iters = 2_000_000u64;
    std::hint::black_box(run(iters / 10)); // warm up clocks
    let mut g: Vec<f64> = (0..7)
        .map(|_| {
            let t = std::time::Instant::now();
            std::hint::black_box(run(std::hint::black_box(iters)));
            (2 * lanes_per_iter * iters) as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    g.sort_by(f64::total_cmp);
    g[g.len() - 1]
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

    /// 24 independent chains of `iters` `vpdpbusd zmm` each.
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub unsafe fn dpbusd_chains_avx512(iters: u64) -> f32 {
        let (a, b) = (_mm512_set1_epi8(3), _mm512_set1_epi8(-2));
        let mut acc = [_mm512_set1_epi32(1); 24];
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm512_dpbusd_epi32(*v, a, b);
            }
        }
        let s = acc.iter().fold(_mm512_setzero_si512(), |s, &v| _mm512_add_epi32(s, v));
        _mm512_reduce_add_epi32(s) as f32
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use std::arch::aarch64::*;

    /// 24 independent chains of `iters` 128-bit `fmla` each.
    #[target_feature(enable = "neon")]
    pub unsafe fn fma_chains_neon(iters: u64) -> f32 {
        let (a, b) = (vdupq_n_f32(0.999_999), vdupq_n_f32(1e-7));
        let mut acc = [vdupq_n_f32(1.0); 24];
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = vfmaq_f32(b, *v, a);
            }
        }
        let s = acc.iter().fold(vdupq_n_f32(0.0), |s, &v| vaddq_f32(s, v));
        vaddvq_f32(s)
    }
}

/// Best-of-`reps` single-thread read bandwidth in GB/s: summing a 1 GiB buffer (4x the
/// 260 MiB L3 of the Xeon these results came from, 32x Zen 4's 32 MiB) with 16 independent
/// accumulators, so it streams from DRAM.
pub fn read_bandwidth_gbs(reps: usize) -> f64 {
    let buf = vec![1.0f32; 256 << 20];
    let mut best = 0.0f64;
    for _ in 0..reps.max(1) {
        let start = std::time::Instant::now();
        let mut acc = [0.0f32; 16];
        for chunk in std::hint::black_box(&buf).chunks_exact(16) {
            for (a, &v) in acc.iter_mut().zip(chunk) {
                *a += v;
            }
        }
        std::hint::black_box(acc);
        let secs = start.elapsed().as_secs_f64();
        best = best.max((buf.len() * 4) as f64 / secs / 1e9);
    }
    best
}
