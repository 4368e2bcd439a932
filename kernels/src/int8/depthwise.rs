//! The int8 depthwise convolution, channels across lanes on NHWC: the native path of the
//! `direct` family at u8. Any kernel size and stride the `direct` family takes; every output
//! pixel sums only its taps inside the image (a padded tap is real 0, so it adds nothing),
//! each as `(x - z_x) * w` in i32. It runs row bands, so it can lead a fused block.

use super::{reference, Int8Isa, QuantLayer, QuantizedLayer, Requant};
use crate::algo::{spec_and_name, ConvAlgorithm, Layer, PreparedConv, RowBand, Run};
use crate::error::Result;
use crate::isa::Isa;
use crate::spec::Dims;

/// Channel padding of the packed weights, bias and multipliers (the widest vector: 16 i32).
const CPAD: usize = 16;

/// An int8 depthwise layer with its weights packed `[kh * kw][cpad]` as i32 (each holding
/// an i16 in its lower half and zero above, for `vpmaddwd`).
// Without a vector kernel (no x86 feature) only the reference reads the layer.
#[cfg_attr(not(all(target_arch = "x86_64", any(feature = "avx2", feature = "avx512"))), allow(dead_code))]
pub(crate) struct DwInt8 {
    pub(crate) q: QuantizedLayer,
    name: &'static str,
    isa: Int8Isa,
    pub(crate) cpad: usize,
    pub(crate) weights: Vec<i32>,
    pub(crate) bias: Vec<i32>,
    /// `bias[c] - z_x * sum_taps w[c]`: the bias of a pixel whose taps all fall inside the
    /// image, which then multiplies the raw `x` (no subtraction per tap).
    pub(crate) interior_bias: Vec<i32>,
    pub(crate) multiplier: Vec<f32>,
    /// The `vpdpbusd` packing of a 3x3 layer at stride 1 or 2 where AVX512_VNNI runs it
    /// ([`Quads`]); `None` elsewhere.
    #[cfg_attr(not(all(target_arch = "x86_64", feature = "avx512")), allow(dead_code))]
    pub(crate) quads: Option<Quads>,
}

/// Channels per block of the quad kernel: one 64-byte load per input row.
pub(crate) const QUAD_BLOCK: usize = 64;

/// A 3x3 layer packed for `vpdpbusd` (u8 x i8, four products summed into each i32 lane): a
/// lane holds one channel's three vertical taps (and a zero fourth), so one instruction does
/// one kernel column of 16 channels.
///
/// The quads come from interleaving three 64-channel input rows bytewise and then wordwise
/// (`vpunpck{l,h}bw`, `vpunpck{l,h}wd`), which works within 128-bit lanes: accumulator `j`
/// (of 4), lane `d` (of 16) holds channel `16 (d / 4) + 4 j + d % 4` of the block. The
/// saturating packs of the store (`vpackssdw`, `vpackuswb`) undo exactly that order, so the
/// weights, bias and multipliers are packed in it and the output comes out in channel order.
///
/// Every pixel multiplies raw `x`, the zero point folded into its bias: a tap outside the
/// image reads the zero point, whose `(x - z_x) * w` is 0, as the reference's skipped tap.
// Only the AVX-512 kernel reads the quads.
#[cfg_attr(not(all(target_arch = "x86_64", feature = "avx512")), allow(dead_code))]
pub(crate) struct Quads {
    /// `[block][kx][j][d][ky]`, `ky = 3` zero: 768 bytes per block.
    pub(crate) weights: Vec<i8>,
    /// `[block][j][d]`: `bias - z_x * sum w`, the bias of raw `x`.
    pub(crate) bias: Vec<i32>,
    /// `[block][j][d]`.
    pub(crate) multiplier: Vec<f32>,
    /// Output pixels per 64-byte block: 1, or `64 / C` for a layer of 8, 16 or 32 channels
    /// at stride 1 (dw1: 32), whose block then holds that many pixels (adjacent ones at 8 and
    /// 16 channels; at 32, a pixel and the one below it), so no lane is padding (one pixel
    /// of 32 channels left half of every vector empty).
    pub(crate) pixels: usize,
    /// `Requant::rounds_in_range` of the 9 taps on `bias` (the store may skip the float
    /// clamp).
    pub(crate) in_range: bool,
}

impl Quads {
    /// The channel of accumulator `j`, lane `d` of a block.
    pub(crate) const fn channel(j: usize, d: usize) -> usize {
        16 * (d / 4) + 4 * j + d % 4
    }

    /// The quad packing of a 3x3 layer of `c` channels (weights `[c][3][3]`) at `stride`.
    fn new(weights: &[i8], c: usize, stride: usize, interior_bias: &[i32], rq: &Requant) -> Quads {
        let multiplier = &rq.multiplier;
        let pixels = if stride == 1 && matches!(c, 8 | 16 | 32) { QUAD_BLOCK / c } else { 1 };
        let blocks = c.div_ceil(QUAD_BLOCK);
        let mut q = Quads {
            weights: vec![0; blocks * 3 * 4 * 16 * 4],
            bias: vec![0; blocks * QUAD_BLOCK],
            multiplier: vec![0.0; blocks * QUAD_BLOCK],
            pixels,
            in_range: rq.rounds_in_range(interior_bias, 9),
        };
        for blk in 0..blocks {
            for (j, d) in (0..4).flat_map(|j| (0..16).map(move |d| (j, d))) {
                // Byte `Self::channel(j, d)` of a block of several pixels is pixel
                // `byte / c`, channel `byte % c`.
                let byte = blk * QUAD_BLOCK + Self::channel(j, d);
                let ch = if pixels > 1 { byte % c } else { byte };
                if ch >= c {
                    continue;
                }
                let lane = blk * QUAD_BLOCK + j * 16 + d;
                q.bias[lane] = interior_bias[ch];
                q.multiplier[lane] = multiplier[ch];
                for (kx, ky) in (0..3).flat_map(|kx| (0..3).map(move |ky| (kx, ky))) {
                    q.weights[(((blk * 3 + kx) * 4 + j) * 16 + d) * 4 + ky] = weights[ch * 9 + ky * 3 + kx];
                }
            }
        }
        q
    }
}

/// The native path of `direct` at u8.
pub(crate) fn native(
    algo: &dyn ConvAlgorithm,
    layer: &Layer<'_>,
    quant: &QuantLayer,
) -> Result<Option<Box<dyn PreparedConv<u8>>>> {
    if !crate::direct::supports_shape(layer.spec) {
        return Ok(None);
    }
    let q = QuantizedLayer::new(layer, quant)?;
    let c = q.spec.out_channels;
    let cpad = c.div_ceil(CPAD) * CPAD;
    let taps = q.spec.kernel_h * q.spec.kernel_w;
    let mut weights = vec![0i32; taps * cpad];
    let (mut bias, mut interior_bias, mut multiplier) =
        (vec![0i32; cpad], vec![0i32; cpad], vec![0f32; cpad]);
    for ch in 0..c {
        let mut sum = 0i32;
        for t in 0..taps {
            let w = q.weights[ch * taps + t];
            weights[t * cpad + ch] = w as i16 as u16 as i32;
            sum += w as i32;
        }
        bias[ch] = q.bias[ch];
        interior_bias[ch] = q.bias[ch].wrapping_sub(q.input_zero_point.wrapping_mul(sum));
        multiplier[ch] = q.requant.multiplier[ch];
    }
    let isa = Int8Isa::of(algo);
    let s = &q.spec;
    let quads = (isa == Int8Isa::Avx512 { vnni: true }
        && (s.kernel_h, s.kernel_w) == (3, 3)
        && s.stride_h == s.stride_w
        && s.stride_w <= 2)
        .then(|| Quads::new(&q.weights, c, s.stride_w, &interior_bias, &q.requant));
    Ok(Some(Box::new(DwInt8 {
        q,
        name: algo.name(),
        isa,
        cpad,
        weights,
        bias,
        interior_bias,
        multiplier,
        quads,
    })))
}

/// What the vector kernels share (`avx2.rs`, `avx512.rs`).
#[cfg(all(target_arch = "x86_64", any(feature = "avx2", feature = "avx512")))]
impl DwInt8 {
    /// The taps `k0..k1` of output position `o` that fall inside an input of `size`.
    #[inline(always)]
    fn tap_range(&self, o: usize, stride: usize, pad: usize, kernel: usize, size: usize) -> (usize, usize) {
        let start = (o * stride) as isize - pad as isize;
        let k0 = (-start).max(0) as usize;
        let k1 = ((size as isize - start).max(0) as usize).min(kernel);
        (k0.min(k1), k1)
    }

    /// The output columns `lo..hi` (of `out_w`) whose taps all fall inside an input of
    /// width `w` (empty when there are none).
    fn interior(&self, out_w: usize, w: usize) -> (usize, usize) {
        let s = &self.q.spec;
        let (pad, k, st) = (s.padding.left, s.kernel_w, s.stride_w);
        let lo = pad.div_ceil(st);
        let hi = if w + pad >= k { ((w + pad - k) / st + 1).min(out_w) } else { 0 };
        (lo.min(hi), hi)
    }

    /// The row walk of the vector kernels: output rows `band.first_row..` into `band.out`,
    /// interior pixels of 3x3 layers (stride 1 or 2) four at a time through `k.tile` on raw
    /// `x` (the zero point folded into their bias), every other pixel over its taps inside
    /// the image ([`pixel`](Self::pixel)).
    ///
    /// # Safety
    /// The CPU has what `k` needs (the caller's target features: this inlines into it);
    /// the band was checked (`RowBand::checked`).
    #[inline(always)]
    pub(crate) unsafe fn walk_rows(&self, k: &impl DwKernel, band: RowBand<'_, u8>) {
        let RowBand { input, in_dims, out_dims: o, first_row, out } = band;
        let spec = &self.q.spec;
        let c = o.c;
        let tiled =
            spec.kernel_h == 3 && spec.kernel_w == 3 && spec.stride_h == spec.stride_w && spec.stride_w <= 2;
        let (ix0, ix1) = if tiled { self.interior(o.w, in_dims.w) } else { (0, 0) };
        for (r, out_row) in out.chunks_exact_mut(o.w * c).enumerate() {
            let (b, oy) = ((first_row + r) / o.h, (first_row + r) % o.h);
            let (ky0, ky1) = self.tap_range(oy, spec.stride_h, spec.padding.top, spec.kernel_h, in_dims.h);
            let (mut ox, full_rows) = (0, ky1 - ky0 == spec.kernel_h);
            while ox < o.w {
                if full_rows && ox >= ix0 && ox + 4 <= ix1 {
                    let iy = oy * spec.stride_h - spec.padding.top;
                    let ix = ox * spec.stride_w - spec.padding.left;
                    // SAFETY: the 4 pixels' 3x3 taps are inside the image (interior columns,
                    // full rows); the output pixels are inside `out_row`.
                    unsafe {
                        let src = input.as_ptr().add(((b * in_dims.h + iy) * in_dims.w + ix) * c);
                        let dst = out_row.as_mut_ptr().add(ox * c);
                        if spec.stride_w == 1 {
                            k.tile::<1>(self, src, in_dims.w * c, dst, c);
                        } else {
                            k.tile::<2>(self, src, in_dims.w * c, dst, c);
                        }
                    }
                    ox += 4;
                    continue;
                }
                let (kx0, kx1) =
                    self.tap_range(ox, spec.stride_w, spec.padding.left, spec.kernel_w, in_dims.w);
                // SAFETY: taps from the ranges lie inside the image; `ox < o.w`.
                unsafe {
                    let dst = out_row.as_mut_ptr().add(ox * c);
                    self.pixel(k, input, in_dims, (b, oy, ox), (ky0, ky1, kx0, kx1), dst)
                };
                ox += 1;
            }
        }
    }

    /// One output pixel `(b, oy, ox)` of any depthwise layer: `(x - z_x) * w` over the taps
    /// `ky0..ky1` x `kx0..kx1`, `K::LANES` channels at a time.
    ///
    /// # Safety
    /// As [`walk_rows`](Self::walk_rows); those taps lie inside the image and `dst` holds
    /// the pixel's channels.
    #[inline(always)]
    unsafe fn pixel<K: DwKernel>(
        &self,
        k: &K,
        input: &[u8],
        in_dims: Dims,
        (b, oy, ox): (usize, usize, usize),
        (ky0, ky1, kx0, kx1): (usize, usize, usize, usize),
        dst: *mut u8,
    ) {
        let spec = &self.q.spec;
        let (c, cpad) = (in_dims.c, self.cpad);
        for ch in (0..c).step_by(K::LANES) {
            let tail = K::tail(c - ch);
            // SAFETY: (the caller) taps inside the image, the tail's channels only; weights,
            // bias and multipliers padded to `cpad`, a multiple of `LANES`.
            unsafe {
                let mut acc = K::load(self.bias.as_ptr().add(ch));
                for ky in ky0..ky1 {
                    let iy = oy * spec.stride_h + ky - spec.padding.top;
                    let base = (b * in_dims.h + iy) * in_dims.w;
                    for kx in kx0..kx1 {
                        let ix = ox * spec.stride_w + kx - spec.padding.left;
                        let x = input.as_ptr().add((base + ix) * c + ch);
                        let w = self.weights.as_ptr().add((ky * spec.kernel_w + kx) * cpad + ch);
                        acc = k.mac_centered(acc, x, tail, w);
                    }
                }
                k.store(acc, self.multiplier.as_ptr().add(ch), dst.add(ch), tail);
            }
        }
    }
}

impl DwInt8 {
    /// Output rows `first_row..` into `out` (whole rows), serially.
    fn rows(&self, input: &[u8], in_dims: Dims, first_row: usize, out: &mut [u8]) -> Result<()> {
        let band = RowBand::checked(&self.q.spec, input, in_dims, first_row, out)?;
        match self.isa {
            #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
            // SAFETY: `Avx512` is chosen only where AVX-512 is available; the buffers are
            // checked above.
            Int8Isa::Avx512 { vnni: false } => unsafe { super::avx512::dw_rows(self, band) },
            #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
            // SAFETY: as above, and `vnni` is set only where AVX512_VNNI is detected.
            Int8Isa::Avx512 { vnni: true } => match &self.quads {
                // SAFETY: as above; `quads` exist only for 3x3 layers at stride 1 or 2.
                Some(quads) => unsafe { super::avx512::dw3x3_rows(self, quads, band) },
                // SAFETY: as above.
                None => unsafe { super::avx512::dw_rows_vnni(self, band) },
            },
            #[cfg(all(feature = "avx2", target_arch = "x86_64"))]
            // SAFETY: as above, for AVX2.
            Int8Isa::Avx2 => unsafe { super::avx2::dw_rows(self, band) },
            _ => reference::conv_rows(&self.q, band.input, in_dims, first_row, band.out)?,
        }
        Ok(())
    }
}

/// One ISA's vector code under [`DwInt8::walk_rows`] (its requantization constants in
/// `self`); every method inlines into the caller's target-feature context.
#[cfg(all(target_arch = "x86_64", any(feature = "avx2", feature = "avx512")))]
pub(crate) trait DwKernel {
    /// Channels per vector (i32 lanes).
    const LANES: usize;
    /// `LANES` i32 accumulators.
    type Acc: Copy;
    /// Which channels of a vector are real: a count or a lane mask.
    type Tail: Copy;
    /// The tail of a vector with `left` channels to go (all lanes when `left >= LANES`).
    fn tail(left: usize) -> Self::Tail;
    /// Loads `LANES` i32 (bias rows are padded to whole vectors).
    ///
    /// # Safety
    /// `p` holds `LANES` i32.
    unsafe fn load(p: *const i32) -> Self::Acc;
    /// `acc + (x - z_x) * w`: the tail's bytes at `x` widened, `LANES` i16-in-i32 weights at
    /// `w`.
    ///
    /// # Safety
    /// `x` holds the tail's bytes, `w` `LANES` i32.
    unsafe fn mac_centered(&self, acc: Self::Acc, x: *const u8, tail: Self::Tail, w: *const i32)
        -> Self::Acc;
    /// The requantizing store of the tail's channels (multipliers at `mult`) to `dst`.
    ///
    /// # Safety
    /// `mult` holds `LANES` f32, `dst` the tail's bytes.
    unsafe fn store(&self, acc: Self::Acc, mult: *const f32, dst: *mut u8, tail: Self::Tail);
    /// Four horizontally adjacent interior output pixels of a 3x3 layer at stride `S`: tap
    /// (0, 0) of the first at `src`, input rows `in_row` bytes apart, `c` channels.
    ///
    /// # Safety
    /// The tile's taps lie inside the input and its 4 pixels inside the output at `dst`.
    unsafe fn tile<const S: usize>(&self, l: &DwInt8, src: *const u8, in_row: usize, dst: *mut u8, c: usize);
}

impl PreparedConv<u8> for DwInt8 {
    spec_and_name!(q.spec);
    fn level(&self) -> Isa {
        self.isa.level()
    }
    fn run_checked(&self, run: Run<'_, u8>) -> Result<()> {
        let Run { input, in_dims, out_dims: o, output, par, .. } = run;
        let (rows, row) = (o.n * o.h, o.w * o.c);
        if rows == 0 || row == 0 {
            return Ok(());
        }
        let errors = std::sync::Mutex::new(None);
        par.for_each_rows_mut(&mut output[..rows * row], row, 2 * par.threads(), |r0, band| {
            if let Err(e) = self.rows(input, in_dims, r0, band) {
                *errors.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
        });
        errors.into_inner().unwrap_or_else(|p| p.into_inner()).map_or(Ok(()), Err)
    }
    fn runs_rows(&self) -> bool {
        true
    }
    fn run_rows(&self, input: &[u8], in_dims: Dims, first_row: usize, out: &mut [u8]) -> Result<()> {
        self.rows(input, in_dims, first_row, out)
    }
}
