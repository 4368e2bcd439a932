//! AVX-512F (+VL/BW/DQ, x86-64-v4): `__m512`, 16 lanes, 32 zmm registers. Tails use `k`
//! masks (`vmovups{k}{z}`), which suppress faults on masked-off lanes. On Zen 4 a 512-bit
//! FMA is two 256-bit halves (same FLOP peak as AVX2); on Intel's two-port cores it is twice
//! the AVX2 peak.

use std::arch::x86_64::*;

use half::{bf16, f16};

use super::{Simd, SimdOp};
use crate::isa::Isa;

/// The AVX-512 token: exists only once [`Isa::Avx512`] is available.
#[derive(Debug, Clone, Copy)]
pub struct Avx512(());

#[inline(always)]
fn mask(n: usize) -> __mmask16 {
    ((1u32 << n.min(16)) - 1) as __mmask16
}

intrinsic_simd! {
    Avx512, V = __m512, LANES = 16, REGISTERS = 32, LEVEL = Isa::Avx512, NAME = "avx512",
    features = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c";
    // `vmaxps` returns its second operand when either is NaN: NaN -> lo.
    splat = _mm512_set1_ps, add = _mm512_add_ps, sub = _mm512_sub_ps, mul = _mm512_mul_ps,
    fma = _mm512_fmadd_ps, max = _mm512_max_ps, min = _mm512_min_ps, load = _mm512_loadu_ps,
    store = _mm512_storeu_ps;

    #[inline(always)]
    unsafe fn load_partial(self, p: *const f32, n: usize) -> __m512 {
        // SAFETY: the token proves AVX-512F; masked-off lanes are neither read nor faulted on.
        unsafe { _mm512_maskz_loadu_ps(mask(n), p) }
    }
    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, v: __m512, n: usize) {
        // SAFETY: the token proves AVX-512F; masked-off lanes are not written.
        unsafe { _mm512_mask_storeu_ps(p, mask(n), v) }
    }
    #[inline(always)]
    fn any_nan(self, v: __m512) -> bool {
        // SAFETY: the token proves AVX-512F.
        unsafe { _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v) != 0 }
    }
    #[inline(always)]
    unsafe fn load_f16(self, p: *const f16) -> __m512 {
        // SAFETY: the token proves AVX-512F; the caller passes 16 readable f16s.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
    }
    #[inline(always)]
    unsafe fn store_f16(self, p: *mut f16, v: __m512) {
        // SAFETY: the token proves AVX-512F; the caller passes 16 writable f16s. Imm 0 rounds
        // to nearest even.
        unsafe { _mm256_storeu_si256(p.cast(), _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v)) }
    }
    #[inline(always)]
    unsafe fn load_bf16(self, p: *const bf16) -> __m512 {
        // SAFETY: the token proves AVX-512F; the caller passes 16 readable bf16s. A bf16 is
        // the top half of an f32: zero-extend to 32 bits and shift up.
        unsafe { _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast())))) }
    }
    #[inline(always)]
    unsafe fn store_bf16(self, p: *mut bf16, v: __m512) {
        // SAFETY: the token proves AVX-512F; the caller passes 16 writable bf16s. Round to
        // nearest even (add `0x7FFF` plus the lowest kept bit), NaN made quiet (`| 0x0040`),
        // as `half::bf16::from_f32`; `vpmovdw` keeps the low 16 bits of each lane.
        unsafe {
            let bits = _mm512_castps_si512(v);
            let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
            let rounded = _mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
            let quiet = _mm512_or_si512(bits, _mm512_set1_epi32(0x0040_0000));
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
            let r = _mm512_srli_epi32::<16>(_mm512_mask_blend_epi32(nan, rounded, quiet));
            _mm256_storeu_si256(p.cast(), _mm512_cvtepi32_epi16(r));
        }
    }
}
