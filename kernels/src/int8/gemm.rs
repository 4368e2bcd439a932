//! The int8 pointwise / fully connected GEMM: `[M, K] u8 x [K, N] i8 -> [M, N] u8`, the
//! native path of the `gemm` family at u8.
//!
//! - A (the NHWC activations) is read in place: `K` consecutive bytes per row, so four of them
//!   are one 32-bit broadcast for `vpdpbusd`.
//! - B is packed at prepare for the backend's kernel ([`Packed`]): groups of 4 K for
//!   `vpdpbusd` (AVX-512 VNNI), pairs of i16 for `vpmaddwd` (AVX2), plain OIHW for scalar.
//! - The zero-point correction `-z_x * sum_k w[c][k]` is folded into the i32 bias.
//! - The store requantizes ([`super::Requant`]), so no i32 tile ever reaches memory.

use super::{reference, Int8Isa, QuantLayer, QuantizedLayer};
use crate::algo::{spec_and_name, ConvAlgorithm, Layer, PreparedConv, Run};
use crate::error::Result;
use crate::isa::Isa;
use crate::spec::Dims;
#[cfg(all(target_arch = "x86_64", any(feature = "avx2", feature = "avx512")))]
use crate::{
    gemm::{split_tasks, Order},
    pool::{Par, SharedOut},
    tensor::{AlignedBuf, Plain},
};

/// B packed for one kernel, 64-byte aligned: a tile row or a vector load never splits a cache
/// line. (Unaligned, from `Vec`, the AMX tile loads of pw7, pw8, pw10 and pw11 each split
/// lines where the luckier allocation of pw9 did not: 0.068 against 0.053 ms, Xeon 6/167.)
pub(crate) enum Packed {
    /// The reference's OIHW weights (in [`QuantizedLayer`]).
    Scalar,
    /// `[N / 64][ceil(K / 4)][64 channels][4 k]` bytes, zero-padded: one 64-byte `zmm` holds
    /// 16 channels times 4 consecutive k.
    #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
    Vnni(AlignedBuf<i8>),
    /// `[N / 16][ceil(K / 2)][16 channels][2 k]` i16, zero-padded: one 32-byte `ymm` holds 8
    /// channels times a pair of k.
    #[cfg(all(feature = "avx2", target_arch = "x86_64"))]
    Pairs(AlignedBuf<i16>),
}

/// An int8 pointwise layer with its weights packed.
// Without a vector kernel (no x86 feature) only the reference reads the layer.
#[cfg_attr(not(all(target_arch = "x86_64", any(feature = "avx2", feature = "avx512"))), allow(dead_code))]
pub(crate) struct GemmInt8 {
    pub(crate) q: QuantizedLayer,
    name: &'static str,
    isa: Int8Isa,
    pub(crate) packed: Packed,
    /// `bias_q[c] - z_x * sum_k w[c][k]`, zero-padded to the packed width.
    pub(crate) bias: Vec<i32>,
    /// The requantization multipliers zero-padded to the packed width.
    pub(crate) multiplier: Vec<f32>,
    /// Whether the layer runs on AMX-INT8 tiles (`amx.rs`).
    pub(crate) amx: bool,
    /// `Requant::rounds_in_range` of the folded bias: the store may skip the float clamp.
    // Only the AVX-512 stores (`avx512::Pack64`) read it.
    #[cfg_attr(not(all(feature = "avx512", target_arch = "x86_64")), allow(dead_code))]
    pub(crate) in_range: bool,
}

impl GemmInt8 {
    /// The `vpdpbusd` panels, where the layer runs on them (AVX-512 VNNI, not AMX).
    #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
    pub(crate) fn vnni_panels(&self) -> Option<&[i8]> {
        match &self.packed {
            Packed::Vnni(b) if !self.amx && self.isa == (Int8Isa::Avx512 { vnni: true }) => Some(b),
            _ => None,
        }
    }
}

/// The native path of `gemm` at u8 (every backend: the scalar reference where there is no
/// kernel).
pub(crate) fn native(
    algo: &dyn ConvAlgorithm,
    layer: &Layer<'_>,
    quant: &QuantLayer,
) -> Result<Option<Box<dyn PreparedConv<u8>>>> {
    if !layer.spec.is_pointwise() {
        return Ok(None);
    }
    Ok(Some(Box::new(prepare(algo, layer, quant)?)))
}

/// The int8 GEMM of a pointwise `layer` on `algo`'s backend.
pub(crate) fn prepare(algo: &dyn ConvAlgorithm, layer: &Layer<'_>, quant: &QuantLayer) -> Result<GemmInt8> {
    let q = QuantizedLayer::new(layer, quant)?;
    let (k, n) = (q.spec.in_channels, q.spec.out_channels);
    let mut isa = Int8Isa::of(algo);
    if isa == (Int8Isa::Avx512 { vnni: false }) {
        // AVX-512 without VNNI: the AVX2 kernel (exact either way).
        isa =
            if cfg!(all(feature = "avx2", target_arch = "x86_64")) { Int8Isa::Avx2 } else { Int8Isa::Scalar };
    }
    #[cfg_attr(
        not(all(target_arch = "x86_64", any(feature = "avx2", feature = "avx512"))),
        allow(unused_variables)
    )]
    let w = |c: usize, kk: usize| if c < n && kk < k { q.weights[c * k + kk] } else { 0 };
    let (packed, width) = match isa {
        #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
        Int8Isa::Avx512 { .. } => {
            let (b, width) = panels(n, k, 64, 4, w)?;
            (Packed::Vnni(b), width)
        }
        #[cfg(all(feature = "avx2", target_arch = "x86_64"))]
        Int8Isa::Avx2 => {
            let (b, width) = panels(n, k, 16, 2, |c, kk| w(c, kk) as i16)?;
            (Packed::Pairs(b), width)
        }
        _ => {
            isa = Int8Isa::Scalar;
            (Packed::Scalar, n)
        }
    };
    let zx = q.input_zero_point;
    let mut bias = vec![0i32; width];
    let mut multiplier = vec![0f32; width];
    for c in 0..n {
        let sum: i32 = q.weights[c * k..(c + 1) * k].iter().map(|&x| x as i32).sum();
        bias[c] = q.bias[c].wrapping_sub(zx.wrapping_mul(sum));
        multiplier[c] = q.requant.multiplier[c];
    }
    #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
    let amx =
        matches!(isa, Int8Isa::Avx512 { vnni: true }) && crate::isa::amx_int8() && super::amx::fits(k, n);
    #[cfg(not(all(feature = "avx512", target_arch = "x86_64")))]
    let amx = false;
    let in_range = q.requant.rounds_in_range(&bias, k);
    Ok(GemmInt8 { q, name: algo.name(), isa, packed, bias, multiplier, amx, in_range })
}

/// The task split of the vector GEMMs: blocks of `mr` rows times panels of `nr` channels
/// over `par`; `tile(row, p, cols, c_row)` computes rows `row..(row + mr).min(m)` of panel
/// `p` (its first `cols` channels real) into `c_row`, row `row` of `c` (`m` rows of `n`).
/// Tasks own disjoint row blocks and panels, so each output tile is written by one task.
// Inlined into each ISA's caller, as the loop it replaced was (it made no measured
// difference on conv0, K = 27, Xeon 6/167: 0.305 ms either way).
#[cfg(all(target_arch = "x86_64", any(feature = "avx2", feature = "avx512")))]
#[inline(always)]
pub(crate) fn for_each_tile(
    (m, n): (usize, usize),
    (mr, nr): (usize, usize),
    c: &mut [u8],
    par: Par<'_>,
    tile: impl Fn(usize, usize, usize, *mut u8) + Sync,
) {
    let out = SharedOut(c.as_mut_ptr());
    split_tasks(m.div_ceil(mr), n.div_ceil(nr), par, Order::Rows, |(r0, r1), (p0, p1)| {
        for p in p0..p1 {
            let cols = nr.min(n - p * nr);
            for rb in r0..r1 {
                // SAFETY: row `rb * mr < m`: inside `c`.
                let c_row = unsafe { out.get().add(rb * mr * n) };
                tile(rb * mr, p, cols, c_row);
            }
        }
    });
}

/// B in the panels of a vector kernel: `[N / nr][ceil(K / kg)][nr channels][kg k]` of
/// `w(channel, k)`, zero-padded (a vector holds `kg` consecutive k of each channel); and the
/// padded width `nr * ceil(N / nr)`.
#[cfg(all(target_arch = "x86_64", any(feature = "avx2", feature = "avx512")))]
fn panels<T: Plain>(
    n: usize,
    k: usize,
    nr: usize,
    kg: usize,
    w: impl Fn(usize, usize) -> T,
) -> Result<(AlignedBuf<T>, usize)> {
    let (np, groups) = (n.div_ceil(nr), k.div_ceil(kg));
    let mut b = AlignedBuf::zeros(crate::error::checked_product("int8 packed B", &[np, groups, nr, kg])?)?;
    for p in 0..np {
        for g in 0..groups {
            for j in 0..nr {
                for kk in 0..kg {
                    b[((p * groups + g) * nr + j) * kg + kk] = w(p * nr + j, g * kg + kk);
                }
            }
        }
    }
    Ok((b, np * nr))
}

impl PreparedConv<u8> for GemmInt8 {
    spec_and_name!(q.spec);
    fn level(&self) -> Isa {
        if self.amx {
            Isa::Amx
        } else {
            self.isa.level()
        }
    }
    fn scratch_len(&self, input: Dims) -> Result<usize> {
        let (m, k) = (input.n * input.h * input.w, self.q.spec.in_channels);
        let overflow = crate::error::KernelError::Overflow { what: "int8 GEMM scratch" };
        match self.isa {
            // AVX2 widens A to i16 pairs: `m * ceil(k / 2)` i32 words.
            Int8Isa::Avx2 => m.checked_mul(k.div_ceil(2)).ok_or(overflow),
            // AMX copies the last `m % 32` rows of A into a whole block (bytes, in f32s).
            #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
            Int8Isa::Avx512 { .. } if self.amx => Ok(crate::gemm::amx_bf16::tail_len(m, k)?.div_ceil(4)),
            _ => Ok(0),
        }
    }
    fn run_checked(&self, run: Run<'_, u8>) -> Result<()> {
        let m = run.pixels();
        let Run { input, in_dims, output, par, .. } = run;
        match &self.packed {
            #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
            // SAFETY: `Vnni` is packed only where `Int8Isa::of` saw AVX-512 (under the
            // ceiling) and AVX512_VNNI; the buffers were checked, the scratch holds
            // `scratch_len`.
            Packed::Vnni(b) => unsafe {
                super::avx512::gemm(self, b, m, input, output, crate::tensor::scratch_as(run.scratch), par)
            },
            #[cfg(all(feature = "avx2", target_arch = "x86_64"))]
            // SAFETY: `Pairs` is packed only where AVX2 is available; the buffers were
            // checked, the scratch holds `m * ceil(k / 2)` words.
            Packed::Pairs(b) => unsafe { super::avx2::gemm(self, b, m, input, output, run.scratch, par) },
            Packed::Scalar => {
                // The reference runs serially over all `m` rows.
                let _ = (m, par);
                reference::conv(&self.q, input, in_dims, output)?
            }
        }
        Ok(())
    }
}
