//! AVX2 + FMA (x86-64-v3): `__m256`, 8 lanes, 16 ymm registers. Tails use `vmaskmovps`,
//! which suppresses faults on masked-off lanes.

use std::arch::x86_64::*;

use half::{bf16, f16};

use super::{Simd, SimdOp};
use crate::isa::Isa;

/// The AVX2 + FMA token: exists only once [`Isa::Avx2`] is available.
#[derive(Debug, Clone, Copy)]
pub struct Avx2(());

/// The lane mask of the first `n` lanes.
#[inline(always)]
fn mask(n: usize) -> __m256i {
    const IDX: [i32; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
    // SAFETY: AVX is implied by the token whose methods call this; the load reads IDX.
    unsafe { _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), _mm256_loadu_si256(IDX.as_ptr().cast())) }
}

intrinsic_simd! {
    Avx2, V = __m256, LANES = 8, REGISTERS = 16, LEVEL = Isa::Avx2, NAME = "avx2",
    features = "avx2,fma,f16c";
    // `vmaxps` returns its second operand when either is NaN: NaN -> lo.
    splat = _mm256_set1_ps, add = _mm256_add_ps, sub = _mm256_sub_ps, mul = _mm256_mul_ps,
    fma = _mm256_fmadd_ps, max = _mm256_max_ps, min = _mm256_min_ps, load = _mm256_loadu_ps,
    store = _mm256_storeu_ps;

    #[inline(always)]
    unsafe fn load_partial(self, p: *const f32, n: usize) -> __m256 {
        // SAFETY: the token proves AVX2; masked-off lanes are neither read nor faulted on.
        unsafe { _mm256_maskload_ps(p, mask(n)) }
    }
    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, v: __m256, n: usize) {
        // SAFETY: the token proves AVX2; masked-off lanes are not written.
        unsafe { _mm256_maskstore_ps(p, mask(n), v) }
    }
    #[inline(always)]
    fn any_nan(self, v: __m256) -> bool {
        // SAFETY: the token proves AVX2.
        unsafe { _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(v, v)) != 0 }
    }
    #[inline(always)]
    unsafe fn load_f16(self, p: *const f16) -> __m256 {
        // SAFETY: the token proves F16C; the caller passes 8 readable f16s.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
    }
    #[inline(always)]
    unsafe fn store_f16(self, p: *mut f16, v: __m256) {
        // SAFETY: the token proves F16C; the caller passes 8 writable f16s. Imm 0 rounds to
        // nearest even.
        unsafe { _mm_storeu_si128(p.cast(), _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v)) }
    }
    #[inline(always)]
    unsafe fn load_bf16(self, p: *const bf16) -> __m256 {
        // SAFETY: the token proves AVX2; the caller passes 8 readable bf16s. A bf16 is the
        // top half of an f32: zero-extend to 32 bits and shift up.
        unsafe { _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast())))) }
    }
    #[inline(always)]
    unsafe fn store_bf16(self, p: *mut bf16, v: __m256) {
        // SAFETY: the token proves AVX2; the caller passes 8 writable bf16s.
        unsafe {
            let r = bf16_bits(v);
            // The 16-bit results sit in the low halves of the 32-bit lanes: pack them (per
            // 128-bit lane) and gather the two useful quadwords.
            let packed = _mm256_permute4x64_epi64::<0b1000>(_mm256_packus_epi32(r, r));
            _mm_storeu_si128(p.cast(), _mm256_castsi256_si128(packed));
        }
    }
}

/// The bf16 bits of each lane in the low 16 bits of its 32-bit lane: round to nearest even
/// (add `0x7FFF` plus the lowest kept bit, then shift), NaN made quiet (`| 0x0040`), as
/// `half::bf16::from_f32`.
#[inline(always)]
fn bf16_bits(v: __m256) -> __m256i {
    // SAFETY: AVX2 is implied by the token whose methods call this.
    unsafe {
        let bits = _mm256_castps_si256(v);
        let lsb = _mm256_and_si256(_mm256_srli_epi32::<16>(bits), _mm256_set1_epi32(1));
        let rounded = _mm256_add_epi32(bits, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF)));
        let quiet = _mm256_or_si256(bits, _mm256_set1_epi32(0x0040_0000));
        let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
        _mm256_srli_epi32::<16>(_mm256_blendv_epi8(rounded, quiet, nan))
    }
}
