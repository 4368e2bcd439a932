//! 64-byte-aligned storage and the NHWC tensor the model passes between layers.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use crate::cache::prefetch_lines;
use crate::error::{KernelError, Result};
use crate::pool::Par;
use crate::spec::Dims;

/// A plain number type that 64-byte-aligned zeroed storage can hold and be viewed as.
///
/// # Safety
/// For implementors: every bit pattern is a valid value, and the type is at most 4 bytes
/// with alignment at most 4 (so a fused block may keep a band of it in f32 scratch).
pub unsafe trait Plain: Copy + Default + Send + Sync + 'static {}

// SAFETY: all are primitive (or `repr(transparent)` over u16) types of 1, 2 or 4 bytes whose
// every bit pattern is valid.
unsafe impl Plain for f32 {}
// SAFETY: as above.
unsafe impl Plain for half::f16 {}
// SAFETY: as above.
unsafe impl Plain for half::bf16 {}
// SAFETY: as above.
unsafe impl Plain for u8 {}
// SAFETY: as above.
unsafe impl Plain for i8 {}
// SAFETY: as above.
unsafe impl Plain for i16 {}
// SAFETY: as above.
unsafe impl Plain for i32 {}

/// A caller's f32 scratch viewed as `T` (all of it: `4 / size_of::<T>()` values per f32),
/// for the kernels whose scratch holds bytes, i16, i32 or bf16 values.
pub(crate) fn scratch_as<T: Plain>(scratch: &mut [f32]) -> &mut [T] {
    const { assert!(4 % size_of::<T>() == 0 && align_of::<T>() <= 4) };
    // SAFETY: every bit pattern is a `T` (`Plain`), and `T`'s size divides 4 and its
    // alignment is at most f32's, so the f32s' bytes are whole, aligned `T`s.
    unsafe {
        std::slice::from_raw_parts_mut(scratch.as_mut_ptr().cast::<T>(), scratch.len() * 4 / size_of::<T>())
    }
}

/// One cache line of f32s; a `Vec` of these is 64-byte aligned by construction.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// A zero-initialised buffer of `E` (f32 unless named: f16 and bf16 activations use the
/// same type) whose first element is 64-byte aligned, so that vector loads of a row start
/// never split a cache line. Derefs to `[E]`.
#[derive(Clone)]
pub struct AlignedBuf<E: Plain = f32> {
    lines: Vec<Line>,
    len: usize,
    _element: PhantomData<E>,
}

impl<E: Plain> AlignedBuf<E> {
    /// `len` zeros. Errors (instead of aborting) if the allocation size overflows or the
    /// allocator refuses it: `vec![..; n]` would abort the process (SIGABRT) on a failed
    /// allocation, so the lines are reserved with `try_reserve_exact` first.
    pub fn zeros(len: usize) -> Result<Self> {
        let overflow = KernelError::Overflow { what: "aligned buffer size" };
        let bytes = len.checked_mul(size_of::<E>()).ok_or(overflow.clone())?;
        let n = bytes.div_ceil(64);
        n.checked_mul(64).filter(|&b| b <= isize::MAX as usize).ok_or(overflow)?;
        let mut lines = Vec::new();
        lines.try_reserve_exact(n).map_err(|_| KernelError::Overflow {
            what: "aligned buffer allocation (the allocator refused it: out of memory)",
        })?;
        lines.resize(n, Line([0.0; 16]));
        Ok(AlignedBuf { lines, len, _element: PhantomData })
    }

    /// Copies `data` into a new aligned buffer.
    pub fn from_slice(data: &[E]) -> Result<Self> {
        let mut buf = Self::zeros(data.len())?;
        buf.copy_from_slice(data);
        Ok(buf)
    }
}

impl<E: Plain> Deref for AlignedBuf<E> {
    type Target = [E];
    fn deref(&self) -> &[E] {
        // SAFETY: `Line` is `repr(C)` around `[f32; 16]` with no padding (64 bytes, align
        // 64), so `lines` is `64 * lines.len() >= len * size_of::<E>()` contiguous
        // initialised bytes, aligned for any `E`; every bit pattern is an `E` (`Plain`'s
        // contract).
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<E>(), self.len) }
    }
}

impl<E: Plain> DerefMut for AlignedBuf<E> {
    fn deref_mut(&mut self) -> &mut [E] {
        // SAFETY: as in `deref`; `&mut self` gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<E>(), self.len) }
    }
}

impl<E: Plain> std::fmt::Debug for AlignedBuf<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf(len = {})", self.len)
    }
}

/// An NHWC f32 tensor in 64-byte-aligned storage.
#[derive(Clone, Debug)]
pub struct Tensor {
    dims: Dims,
    data: AlignedBuf,
}

impl Tensor {
    /// A zero tensor of `dims`.
    pub fn zeros(dims: Dims) -> Result<Self> {
        Ok(Tensor { dims, data: AlignedBuf::zeros(dims.len()?)? })
    }

    /// Wraps NHWC data, checking its length.
    pub fn from_nhwc(dims: Dims, data: &[f32]) -> Result<Self> {
        let expected = dims.len()?;
        if data.len() != expected {
            return Err(KernelError::BufferLength { what: "NHWC data", expected, actual: data.len() });
        }
        Ok(Tensor { dims, data: AlignedBuf::from_slice(data)? })
    }

    /// Converts NCHW data (PyTorch's layout) of shape `[n, c, h, w]` to NHWC.
    pub fn from_nchw(n: usize, c: usize, h: usize, w: usize, data: &[f32]) -> Result<Self> {
        let dims = Dims::new(n, h, w, c);
        let expected = dims.len()?;
        if data.len() != expected {
            return Err(KernelError::BufferLength { what: "NCHW data", expected, actual: data.len() });
        }
        let mut t = Tensor::zeros(dims)?;
        nchw_to_nhwc(data, &mut t.data, dims);
        Ok(t)
    }

    /// The data in NCHW order (`[n, c, h, w]`).
    pub fn to_nchw(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.data.len()];
        nhwc_to_nchw(&self.data, &mut out, self.dims);
        out
    }

    pub fn dims(&self) -> Dims {
        self.dims
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data
    }
}

/// `dst[n][y][x][c] = src[n][c][y][x]`; both buffers hold `dims.len()` elements.
pub fn nchw_to_nhwc(src: &[f32], dst: &mut [f32], dims: Dims) {
    nchw_to_nhwc_par(src, dst, dims, Par::SERIAL, |s, d| d.copy_from_slice(s));
}

/// [`nchw_to_nhwc`] split by image rows over `par`. Pixel-major: each output pixel reads
/// its `c` channel planes and writes `c` contiguous values (for the model's 3-channel input
/// that is 3 read streams and one write stream, where channel-major order made 3 strided
/// passes over the whole output).
///
/// `convert(from, to)` turns a run of f32s into the storage type (`to[i]` from `from[i]`, the
/// two of equal length): a rounding for the floats, the quantization of the model's input for
/// int8 (so the input is quantized in the same pass); `Storage::from_real_slice` is one.
pub fn nchw_to_nhwc_par<E: Plain>(
    src: &[f32],
    dst: &mut [E],
    dims: Dims,
    par: Par<'_>,
    convert: impl Fn(&[f32], &mut [E]) + Sync,
) {
    let Dims { n, h, w, c } = dims;
    let (hw, row) = (h * w, w * c);
    let len = n * hw * c;
    if len == 0 || src.len() < len || dst.len() < len {
        return;
    }
    par.for_each_rows_mut(&mut dst[..len], row, 2 * par.threads(), |first, out| {
        // Compiled for baseline x86-64 (SSE2) the conversion ran 4 lanes wide, and the int8
        // quantization's division was 0.1 ms of the model's 224 x 224 x 3 input (Xeon 6/167,
        // one thread).
        crate::isa::in_widest_vectors(Rows { src, dims, first, out, convert: &convert });
    });
}

/// Rows ahead that [`nchw_to_nhwc_par`] prefetches (see there).
const CONVERT_AHEAD_ROWS: usize = 2;

/// Image rows `first..` of [`nchw_to_nhwc_par`]'s source, converted into whole NHWC rows.
struct Rows<'a, E, F> {
    src: &'a [f32],
    dims: Dims,
    first: usize,
    out: &'a mut [E],
    convert: &'a F,
}

impl<E: Plain, F: Fn(&[f32], &mut [E])> crate::isa::VectorLoop for Rows<'_, E, F> {
    type Out = ();

    /// Inlined into `in_widest_vectors`'s copies (`convert`, plain Rust, inlines into them
    /// too).
    #[inline(always)]
    fn run(self) {
        let Rows { src, dims, first, out, convert } = self;
        let Dims { h, w, c, .. } = dims;
        let (hw, row) = (h * w, w * c);
        // A strip of pixels at a time: each plane's run converted into `strip` (contiguous,
        // so the conversion vectorizes), then interleaved. Converting while interleaving
        // (one value per plane per pixel) took 0.3 ms for the model's 224 x 224 x 3 input at
        // every precision, 15% of int8's forward (Xeon family 6 model 167, one thread).
        const STRIP: usize = 256;
        let mut strip = [E::default(); STRIP];
        let px = (STRIP / c).max(1);
        let rows = out.len() / row.max(1);
        for r in 0..rows {
            let global = first + r;
            let (b, y) = (global / h, global % h);
            let base = b * c * hw + y * w;
            // In the network the input image and this buffer arrive cold (17 MB of f32
            // weights passed since the last forward), and the interleaving stores (12 bytes
            // a pixel) fill the store buffer while their lines come from memory. Prefetching
            // row r + 2 (Zen 5, EPYC 26/2, one thread): the 224 x 224 x 3 f32 conversion
            // after a 64 MiB flush 0.129 -> 0.048-0.073 ms (`examples/input_probe.rs`; warm
            // 0.022-0.031 either way; 1, 4 or 8 rows ahead 0.052-0.057); in the network
            // (timed around the call, 3 alternating runs of 200) 0.092-0.128 -> 0.084-0.104.
            if r + CONVERT_AHEAD_ROWS < rows {
                let ahead = global + CONVERT_AHEAD_ROWS;
                let ahead_base = ahead / h * c * hw + ahead % h * w;
                for ch in 0..c {
                    prefetch_lines(&src[ahead_base + ch * hw..][..w]);
                }
                prefetch_lines(&out[(r + CONVERT_AHEAD_ROWS) * row..][..row]);
            }
            let out_row = &mut out[r * row..][..row];
            if c > STRIP {
                for (x, px) in out_row.chunks_exact_mut(c).enumerate() {
                    for (ch, d) in px.iter_mut().enumerate() {
                        convert(&src[base + ch * hw + x..][..1], std::slice::from_mut(d));
                    }
                }
                continue;
            }
            for x0 in (0..w).step_by(px) {
                let n = px.min(w - x0);
                for ch in 0..c {
                    convert(&src[base + ch * hw + x0..][..n], &mut strip[ch * px..][..n]);
                }
                let out = &mut out_row[x0 * c..(x0 + n) * c];
                if c == 3 {
                    // The model's RGB input, with the channel count known to the compiler.
                    let (r, g, b) = (&strip[..n], &strip[px..px + n], &strip[2 * px..2 * px + n]);
                    for (((d, &r), &g), &b) in out.chunks_exact_mut(3).zip(r).zip(g).zip(b) {
                        d.copy_from_slice(&[r, g, b]);
                    }
                    continue;
                }
                for (x, d) in out.chunks_exact_mut(c).enumerate() {
                    for (ch, d) in d.iter_mut().enumerate() {
                        *d = strip[ch * px + x];
                    }
                }
            }
        }
    }
}

/// Mean over every pixel of each image, per channel: `[N,H,W,C] -> [N,1,1,C]`, summed in
/// f32 (into `sum`, `C` f32s of the caller's scratch) and stored once as `E`: the input read
/// with the tensor parameters `from`, the mean stored with `to` (at int8: dequantized, averaged
/// in f32, quantized once; the QDQ graph's `DequantizeLinear -> GlobalAveragePool ->
/// QuantizeLinear`). Each channel's sum adds the pixels in order, at every ISA.
pub fn global_average_pool<E: crate::algo::Storage>(
    input: &[E],
    dims: Dims,
    out: &mut [E],
    sum: &mut [f32],
    tensors: (E::Tensor, E::Tensor),
) {
    // Compiled for baseline x86-64 the dequantizing sum ran 4 lanes wide.
    crate::isa::in_widest_vectors(Pool { input, dims, out, sum, tensors });
}

/// The operands of [`global_average_pool`].
struct Pool<'a, E: crate::algo::Storage> {
    input: &'a [E],
    dims: Dims,
    out: &'a mut [E],
    sum: &'a mut [f32],
    tensors: (E::Tensor, E::Tensor),
}

impl<E: crate::algo::Storage> crate::isa::VectorLoop for Pool<'_, E> {
    type Out = ();

    /// Inlined into `in_widest_vectors`'s copies.
    #[inline(always)]
    fn run(self) {
        let Pool { input, dims, out, sum, tensors } = self;
        let Dims { n, h, w, c } = dims;
        let (from, to) = tensors;
        let hw = h * w;
        let sum = &mut sum[..c];
        for b in 0..n {
            sum.fill(0.0);
            for px in input[b * hw * c..(b + 1) * hw * c].chunks_exact(c) {
                E::add_real_slice(sum, px, from);
            }
            let inv = 1.0 / hw as f32;
            for (d, &s) in out[b * c..(b + 1) * c].iter_mut().zip(sum.iter()) {
                *d = E::from_real(s * inv, to);
            }
        }
    }
}

/// `dst[n][c][y][x] = src[n][y][x][c]`; both buffers hold `dims.len()` elements.
pub fn nhwc_to_nchw(src: &[f32], dst: &mut [f32], dims: Dims) {
    let Dims { n, h, w, c } = dims;
    let hw = h * w;
    for b in 0..n {
        let s = &src[b * c * hw..(b + 1) * c * hw];
        let d = &mut dst[b * c * hw..(b + 1) * c * hw];
        for p in 0..hw {
            for ch in 0..c {
                d[ch * hw + p] = s[p * c + ch];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nchw_to_nhwc_matches_the_definition_at_every_thread_count() {
        let pool = crate::pool::ThreadPool::new(3).unwrap();
        for (n, h, w, c) in
            [(1, 1, 1, 1), (1, 5, 7, 3), (2, 4, 3, 5), (3, 9, 2, 1), (1, 2, 300, 3), (1, 3, 2, 300)]
        {
            let dims = Dims::new(n, h, w, c);
            let src: Vec<f32> = (0..dims.len().unwrap()).map(|i| i as f32).collect();
            for threads in 1..=3 {
                let mut dst = vec![f32::NAN; src.len()];
                nchw_to_nhwc_par(&src, &mut dst, dims, Par::on(&pool, threads), |s, d| d.copy_from_slice(s));
                for b in 0..n {
                    for y in 0..h {
                        for x in 0..w {
                            for ch in 0..c {
                                let want = src[((b * c + ch) * h + y) * w + x];
                                assert_eq!(dst[((b * h + y) * w + x) * c + ch], want, "{dims:?} t{threads}");
                            }
                        }
                    }
                }
            }
        }
    }

    /// The dispatched pool (AVX-512 / AVX2 / baseline, as this CPU allows) equals the
    /// definition bit for bit: each channel's pixels summed in order in f32, times 1 / HW.
    #[test]
    fn global_average_pool_is_the_definition() {
        let dims = Dims::new(2, 3, 5, 37);
        let hw = 15;
        let x: Vec<f32> = (0..dims.len().unwrap()).map(|i| ((i * 7919) % 1000) as f32 / 37.0 - 9.0).collect();
        let (mut out, mut sum) = (vec![0.0f32; 2 * 37], vec![0.0f32; 37]);
        global_average_pool(&x, dims, &mut out, &mut sum, ((), ()));
        let q = crate::int8::QuantParams::new(0.05, 7).unwrap();
        let xq: Vec<u8> = x.iter().map(|&v| q.quantize(v)).collect();
        let mut outq = vec![0u8; 2 * 37];
        global_average_pool(&xq, dims, &mut outq, &mut sum, (q, q));
        for b in 0..2 {
            for c in 0..37 {
                let px = |p: usize| (b * hw + p) * 37 + c;
                let s = (0..hw).fold(0.0f32, |s, p| s + x[px(p)]);
                assert_eq!(out[b * 37 + c].to_bits(), (s * (1.0 / hw as f32)).to_bits(), "f32 b{b} c{c}");
                let s = (0..hw).fold(0.0f32, |s, p| s + q.dequantize(xq[px(p)]));
                assert_eq!(outq[b * 37 + c], q.quantize(s * (1.0 / hw as f32)), "u8 b{b} c{c}");
            }
        }
    }

    /// f16's bulk conversions (the input conversion and the pool's sum) give the bits of
    /// half's per-value ones, across the 256-value chunk of the pool and the strip of the
    /// conversion (c = 300 > 256 takes the per-value branch), with overflow and subnormals.
    #[test]
    fn f16_bulk_conversions_equal_per_value_ones() {
        use crate::algo::Storage;
        use half::f16;
        let value = |i: usize| match i % 11 {
            0 => 70_000.0,
            1 => -3.0e-6,
            2 => 6.1e-5,
            _ => ((i * 7919) % 1000) as f32 / 37.0 - 9.0,
        };
        for dims in [Dims::new(1, 5, 7, 3), Dims::new(2, 2, 3, 300)] {
            let len = dims.len().unwrap();
            let x: Vec<f32> = (0..len).map(value).collect();
            let mut nhwc = vec![f16::ZERO; len];
            nchw_to_nhwc_par(&x, &mut nhwc, dims, Par::SERIAL, |s, d| f16::from_real_slice(s, d, ()));
            let mut want = vec![0.0f32; len];
            nchw_to_nhwc(&x, &mut want, dims);
            for (i, (&got, &w)) in nhwc.iter().zip(&want).enumerate() {
                assert_eq!(got.to_bits(), f16::from_f32(w).to_bits(), "conversion {dims:?} at {i}");
            }
            let Dims { n, h, w, c } = dims;
            let (mut out, mut sum) = (vec![f16::ZERO; n * c], vec![0.0f32; c]);
            global_average_pool(&nhwc, dims, &mut out, &mut sum, ((), ()));
            for b in 0..n {
                for ch in 0..c {
                    let s = (0..h * w).fold(0.0f32, |s, p| s + nhwc[(b * h * w + p) * c + ch].to_f32());
                    let want = f16::from_f32(s * (1.0 / (h * w) as f32));
                    assert_eq!(out[b * c + ch].to_bits(), want.to_bits(), "pool {dims:?} b{b} c{ch}");
                }
            }
        }
    }

    #[test]
    fn aligned_and_zeroed() {
        for len in [0, 1, 15, 16, 17, 1000] {
            let b = AlignedBuf::<f32>::zeros(len).unwrap();
            assert_eq!(b.len(), len);
            assert_eq!(b.as_ptr() as usize % 64, 0);
            assert!(b.iter().all(|&x| x == 0.0));
            let h = AlignedBuf::<half::f16>::zeros(len).unwrap();
            assert_eq!(h.len(), len);
            assert_eq!(h.as_ptr() as usize % 64, 0);
            assert!(h.iter().all(|&x| x == half::f16::ZERO));
        }
        assert!(AlignedBuf::<f32>::zeros(usize::MAX).is_err());
        assert!(AlignedBuf::<half::bf16>::zeros(usize::MAX / 2 + 1).is_err());
    }

    /// Issue 17, item 9: a size that passes the overflow checks but that no allocator can
    /// give (2^62 bytes) is an `Err`; it used to abort the process.
    #[test]
    fn refused_allocation_is_an_error_not_an_abort() {
        let e = AlignedBuf::<u8>::zeros(1 << 62).unwrap_err();
        assert!(e.to_string().contains("out of memory"), "{e}");
    }

    #[test]
    fn layout_round_trip() {
        let (n, c, h, w) = (2, 3, 4, 5);
        let nchw: Vec<f32> = (0..n * c * h * w).map(|i| i as f32).collect();
        let t = Tensor::from_nchw(n, c, h, w, &nchw).unwrap();
        // element (b=1, c=2, y=3, x=4)
        let (b, ch, y, x) = (1, 2, 3, 4);
        let nhwc_idx = ((b * h + y) * w + x) * c + ch;
        assert_eq!(t.as_slice()[nhwc_idx], nchw[((b * c + ch) * h + y) * w + x]);
        assert_eq!(t.to_nchw(), nchw);
        assert!(Tensor::from_nchw(n, c, h, w, &nchw[1..]).is_err());
    }
}
