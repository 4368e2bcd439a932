//! int8 im2col + GEMM: the native path of the `im2col` family at u8, for dense (ungrouped)
//! convolutions such as MobileNetV1's conv0 (3x3 stride 2, 3 -> 32 channels, K = 27).
//!
//! Each output pixel's receptive field is copied as one row of `K = kh * kw * Cin` bytes
//! (in `(ky, kx, c)` order) into scratch, taps outside the image as the input zero point
//! (which is the real value 0, so the GEMM's folded zero-point correction makes them add
//! exactly nothing), and the rows go through the int8 GEMM ([`super::gemm`]) with the
//! weights reordered to match. conv0's column buffer is 12,544 x 27 bytes (339 KiB).
//!
//! On AVX-512 VNNI a layer of at most 32 output channels skips the column buffer and reads
//! each kernel row of its receptive fields in place (`InPlaceInt8`).

use super::gemm::{self, GemmInt8};
use super::QuantLayer;
use crate::algo::{ConvAlgorithm, Layer, PreparedConv, Run};
use crate::error::{KernelError, Result};
use crate::im2col::fields::{fill_run, gather_pixel, weight_columns};
use crate::isa::Isa;
use crate::spec::{ConvSpec, Dims};

/// An int8 dense convolution as a column buffer and the int8 GEMM.
struct Im2colInt8 {
    spec: ConvSpec,
    /// The GEMM over `K = kh * kw * Cin` columns.
    gemm: Box<GemmInt8>,
    zero_point: u8,
}

/// The native path of `im2col` at u8: dense (`groups == 1`) convolutions.
pub(crate) fn native(
    algo: &dyn ConvAlgorithm,
    layer: &Layer<'_>,
    quant: &QuantLayer,
) -> Result<Option<Box<dyn PreparedConv<u8>>>> {
    let spec = *layer.spec;
    if spec.is_pointwise() {
        // A 1x1 convolution's column buffer is its input: the GEMM itself, exact. (On the
        // emulated path a 1x1 layer was only within one LSB: under qemu-aarch64, `im2col-neon`
        // stored 28 where the integer reference gives 29.)
        return gemm::native(algo, layer, quant);
    }
    if spec.groups != 1 {
        return Ok(None);
    }
    #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
    if let Some(in_place) = InPlaceInt8::prepare(algo, layer, quant)? {
        return Ok(Some(Box::new(in_place)));
    }
    let (cin, kh, kw, n) = (spec.in_channels, spec.kernel_h, spec.kernel_w, spec.out_channels);
    // Columns padded to a multiple of 4 (zero weights): whole `vpdpbusd` groups.
    let k = (cin * kh * kw).next_multiple_of(4);
    let w = weight_columns(layer, kw * cin, k);
    let columns = ConvSpec::pointwise(k, n);
    let inner = Layer::new(&columns, &w, layer.bias, layer.activation);
    let gemm = gemm::prepare(algo, &inner, quant)?;
    // `algo::prepare` checked the layer, the GEMM its parameters (the same output channels).
    let zero_point = quant.input.zero_point as u8;
    Ok(Some(Box::new(Im2colInt8 { spec, gemm: Box::new(gemm), zero_point })))
}

impl Im2colInt8 {
    /// Columns: the receptive field's `kh * kw * cin` bytes, padded to a multiple of 4.
    fn k(&self) -> usize {
        (self.spec.in_channels * self.spec.kernel_h * self.spec.kernel_w).next_multiple_of(4)
    }

    /// The column buffer's length in f32 words, and the GEMM's scratch after it.
    fn split(&self, input: Dims) -> Result<(usize, usize, Dims)> {
        let o = self.spec.output_dims(input)?;
        let m = o.n * o.h * o.w;
        let bytes = m.checked_mul(self.k()).ok_or(KernelError::Overflow { what: "int8 column buffer" })?;
        let cols = Dims::new(1, 1, m, self.k());
        Ok((bytes.div_ceil(4), self.gemm.scratch_len(cols)?, cols))
    }
}

/// `spec`, and the algorithm and level of the inner GEMM (both dense int8 layers).
macro_rules! spec_and_gemm {
    () => {
        fn spec(&self) -> &ConvSpec {
            &self.spec
        }
        fn algorithm(&self) -> &'static str {
            self.gemm.algorithm()
        }
        fn level(&self) -> Isa {
            self.gemm.level()
        }
    };
}

impl PreparedConv<u8> for Im2colInt8 {
    spec_and_gemm!();
    fn scratch_len(&self, input: Dims) -> Result<usize> {
        let (cols, gemm, _) = self.split(input)?;
        cols.checked_add(gemm).ok_or(KernelError::Overflow { what: "int8 im2col scratch" })
    }
    fn run_checked(&self, run: Run<'_, u8>) -> Result<()> {
        let Run { input, in_dims, out_dims: o, output, scratch, par, .. } = run;
        let (words, _, cols) = self.split(in_dims)?;
        let (col_words, rest) = scratch.split_at_mut(words);
        // The words hold `4 * words >= m * k` bytes.
        let col = &mut crate::tensor::scratch_as::<u8>(col_words)[..cols.w * cols.c];
        let s = &self.spec;
        let (k, cin) = (self.k(), s.in_channels);
        let run = s.kernel_w * cin;
        // One task per output row (image, oy) over `par`: built serially, the column buffer
        // took all of conv0's 0.31 ms at 2 threads as at 1 (Xeon 6/167), the GEMM after it
        // being small (K = 27). Per row, a loop over pixels: three integer divisions per
        // pixel cost more than its copy.
        let zero_point = self.zero_point;
        par.for_each_chunk_mut(col, o.w * k, |i, pixels| {
            let (b, oy) = (i / o.h, i % o.h);
            for (ox, row) in pixels.chunks_exact_mut(k).enumerate() {
                fill_run(&mut row[s.kernel_h * run..], 0);
                gather_pixel(s, input, in_dims, (b, oy, ox), zero_point, row, run);
            }
        });
        self.gemm.run(col, cols, output, rest, par)
    }
}

/// A dense int8 convolution with at most 32 output channels on AVX-512 VNNI, its
/// receptive fields read in place: each kernel row of an interior pixel is `kw * Cin`
/// consecutive input bytes (conv0: 9), read as `ceil(kw * Cin / 4)` dwords against weights
/// zero-padded to match (conv0: K = 3 x 12 = 36 instead of 28, no column buffer), 8 pixels
/// per tile of 32 channels ([`avx512::dense_pixels`]). Edge pixels (taps in the padding)
/// are assembled in a stack row with the zero point, as the column buffer pads.
///
/// Against the column buffer and the 64-channel GEMM tiles it replaced here (measured on
/// conv0, one thread, AMD EPYC family 26 model 2): 0.24 ms, of which building the column
/// buffer was most, and half of each `vpdpbusd` fell on padding channels.
#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
struct InPlaceInt8 {
    spec: ConvSpec,
    /// The GEMM over `kh * groups * 4` columns (kernel rows padded to whole dwords).
    gemm: Box<GemmInt8>,
    /// Dwords per kernel row.
    groups: usize,
    zero_point: u8,
}

#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
impl InPlaceInt8 {
    /// The layer in place where it fits (ungrouped, undilated, at most 32 output channels,
    /// an edge row within [`EDGE_ROW`](crate::im2col::fields::EDGE_ROW)) and the backend runs `vpdpbusd` panels here.
    fn prepare(algo: &dyn ConvAlgorithm, layer: &Layer<'_>, quant: &QuantLayer) -> Result<Option<Self>> {
        let spec = *layer.spec;
        let (cin, kh, kw, n) = (spec.in_channels, spec.kernel_h, spec.kernel_w, spec.out_channels);
        let groups = (kw * cin).div_ceil(4);
        let k = kh * groups * 4;
        if spec.groups != 1
            || spec.dilation_h != 1
            || spec.dilation_w != 1
            || n > 32
            || k > crate::im2col::fields::EDGE_ROW
        {
            return Ok(None);
        }
        if !matches!(super::Int8Isa::of(algo), super::Int8Isa::Avx512 { vnni: true }) {
            return Ok(None);
        }
        // Each kernel row zero-padded to whole dwords.
        let w = weight_columns(layer, groups * 4, k);
        let columns = ConvSpec::pointwise(k, n);
        let gemm = gemm::prepare(algo, &Layer::new(&columns, &w, layer.bias, layer.activation), quant)?;
        if gemm.vnni_panels().is_none() {
            return Ok(None);
        }
        let zero_point = quant.input.zero_point as u8;
        Ok(Some(InPlaceInt8 { spec, gemm: Box::new(gemm), groups, zero_point }))
    }
}

#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
impl PreparedConv<u8> for InPlaceInt8 {
    spec_and_gemm!();
    fn scratch_len(&self, _: Dims) -> Result<usize> {
        Ok(0)
    }
    fn run_checked(&self, run: Run<'_, u8>) -> Result<()> {
        use super::avx512::{dense_pixels, DenseTaps, DENSE_PIXELS};
        use crate::im2col::fields::in_place_rows;
        let Run { input, in_dims: i, out_dims: o, output, par, .. } = run;
        let s = &self.spec;
        let kh = s.kernel_h;
        let b = self.gemm.vnni_panels().ok_or_else(|| KernelError::Unsupported {
            algorithm: self.gemm.algorithm(),
            spec: "an int8 in-place dense layer without vpdpbusd panels".into(),
        })?;
        let (k_row, groups) = (self.groups * 4, self.groups);
        let tile = |count: usize, a: *const u8, pixel_stride: usize, row_stride: usize, c: *mut u8| {
            let taps = DenseTaps { a, pixel_stride, row_stride, rows: kh, groups };
            // SAFETY: `in_place_rows` names `count` pixels whose kernel rows of `k_row`
            // bytes are readable and `count * n` bytes of output; the panels are the
            // layer's (checked at prepare, where `Int8Isa::of` saw AVX-512 VNNI).
            unsafe {
                if count == DENSE_PIXELS {
                    dense_pixels::<DENSE_PIXELS>(&self.gemm, b.as_ptr(), taps, c)
                } else {
                    dense_pixels::<1>(&self.gemm, b.as_ptr(), taps, c)
                }
            }
        };
        in_place_rows(s, (i, o), input, output, par, (k_row, DENSE_PIXELS), self.zero_point, tile);
        Ok(())
    }
}
