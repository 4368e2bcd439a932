//! `im2col-<backend>`: any dense or grouped convolution as im2col + the packed SGEMM of
//! [`crate::gemm`], one GEMM per group.
//!
//! For group `g` the column matrix has one row per output pixel and `K = kh * kw * Cin/G`
//! columns ordered `(ky, kx, i)`, so each tap copies a contiguous run of NHWC channels;
//! taps in the padding are zeros. The weights are packed once per group in the same K
//! order. A 1x1 stride-1 unpadded (grouped) convolution skips the copy: the NHWC input,
//! offset to the group's channels, already is the column matrix (row stride `Cin`).
//!
//! # Fused path (no column matrix): dense convolutions with small K
//!
//! With `groups == 1`, no horizontal dilation and `K <= KC` (e.g. MobileNetV1's conv0:
//! 3x3, Cin = 3, K = 27), the row of the column matrix for output pixel `x` is `kh` runs of
//! `kw * Cin` consecutive input floats (one per kernel row), and pixel `x + 1`'s runs start
//! `stride * Cin` floats later. The microkernel reads that straight from the NHWC input
//! ([`KSteps`] with one segment per kernel row inside the image, row stride
//! `stride * Cin`), so nothing is copied for tiles whose pixels are all inside the image
//! horizontally; kernel rows above or below the image are skipped (their B rows too).
//! Only the tiles at the left and right edges (and a short last tile) gather their A
//! micro-panel into a zero-padded stack buffer. Materialising the column matrix instead
//! costs a write and a re-read of `M * K` floats (1.35 MB for conv0) in copies of 3 floats.
//! Measured on conv0 (one thread, Xeon model 207): see `Fused::rows`.

pub(crate) mod fields;
#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
mod in_place_bf16;

use crate::algo::{
    bias_or_zeros, per_backend, rounded, spec_and_name, ConvAlgorithm, Conversion, Layer, PreparedConv, Run,
    Storage,
};
use crate::cache::KC_LIMIT;
use crate::error::{checked_product, KernelError, Result};
use crate::gemm::{
    choose_tile, nr_for, sgemm_tile, tiles, KSteps, Operands, PackedB, Prefetch, Tile, TileArgs, MR_MAX,
};
use crate::isa::Isa;
use crate::pool::{Par, SharedOut};
use crate::simd::{Backend, Clamp, Convert, ConvertOp, Element};
use crate::spec::{Activation, ConvSpec, Dims, Padding};

/// The im2col + GEMM algorithm on one backend.
pub struct Im2col {
    /// `im2col-<backend>`.
    pub name: &'static str,
    pub backend: Backend,
}

struct Im2colPrepared {
    spec: ConvSpec,
    name: &'static str,
    /// The backend's tiles at the level it ran at when prepared (a token existed then).
    tiles: &'static [Tile],
    level: Isa,
    activation: Activation,
    /// One packed `K x Cout/G` matrix per group.
    b: Vec<PackedB>,
    bias: Vec<f32>,
}

impl ConvAlgorithm for Im2col {
    per_backend!(Im2col);
    fn supports(&self, spec: &ConvSpec) -> bool {
        self.backend.available() && spec.validate().is_ok()
    }
    fn prepare_checked(&self, layer: &Layer<'_>) -> Result<Box<dyn PreparedConv>> {
        Ok(Box::new(self.pack(layer)?))
    }
}

impl Im2col {
    /// Packs the layer (checked by `prepare` or `algo::prepare`) for the f32 microkernels.
    fn pack(&self, layer: &Layer<'_>) -> Result<Im2colPrepared> {
        let Layer { spec, weights_oihw, bias, activation } = *layer;
        let (ipg, opg, kh, kw) = (spec.in_per_group(), spec.out_per_group(), spec.kernel_h, spec.kernel_w);
        let k = checked_product("im2col K", &[kh, kw, ipg])?;
        let (tiles, level) = (tiles(self.backend)?, self.backend.shape()?.level);
        let nr = nr_for(tiles, k, opg);
        let b = (0..spec.groups)
            .map(|g| {
                PackedB::new(k, opg, nr, |p, j| {
                    let (ky, kx, i) = (p / (kw * ipg), p / ipg % kw, p % ipg);
                    weights_oihw[(((g * opg + j) * ipg + i) * kh + ky) * kw + kx]
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Im2colPrepared {
            spec: *spec,
            name: self.name,
            tiles,
            level,
            activation,
            b,
            bias: bias_or_zeros(spec, bias),
        })
    }
}

/// The native path of `im2col` at a narrower float type `E` (f16, bf16): at bf16 on
/// `vdpbf16ps` in place where it fits ([`in_place_bf16`]); else, where the layer takes the
/// fused path (conv0), the f32 microkernels on the input widened once, each output row
/// narrowed to `E` straight after it is computed, from a staging row that stays in L1d.
/// The widened path instead wrote the whole f32 output (conv0: 1.6 MB, more than a 1 MiB
/// L2) and read it back to narrow it. Measured on conv0 at bf16, one thread, AMD EPYC
/// family 26 model 2: see [`Im2colNarrow`]. `None` (the widened path) for the other shapes.
pub(crate) fn native_float<E: Element + Storage>(
    algo: &dyn ConvAlgorithm,
    layer: &Layer<'_>,
    _: &(),
) -> Result<Option<Box<dyn PreparedConv<E>>>> {
    #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
    if let Some(in_place) = in_place_bf16::prepare::<E>(algo, layer)? {
        return Ok(Some(in_place));
    }
    let p = E::PRECISION;
    let (w, b) = (rounded(p, layer.weights_oihw), layer.bias.map(|b| rounded(p, b)));
    let rounded = Layer::new(layer.spec, &w, b.as_deref(), layer.activation);
    let inner = Im2col { name: algo.name(), backend: algo.backend() }.pack(&rounded)?;
    if !inner.fused() {
        return Ok(None);
    }
    let convert = algo.backend().dispatch(ConvertOp::<E>::new())?;
    Ok(Some(Box::new(Im2colNarrow { inner, convert })))
}

/// Tasks of [`Im2colNarrow`]'s output rows, each with its own f32 staging row in scratch:
/// enough for any thread count this crate runs at (more threads than tasks idle).
const NARROW_TASKS: usize = 32;

/// A fused im2col layer (see the module docs) stored as `E`: [`native_float`].
struct Im2colNarrow<E: Element> {
    inner: Im2colPrepared,
    convert: Convert<E>,
}

impl<E: Element + Storage> PreparedConv<E> for Im2colNarrow<E> {
    fn spec(&self) -> &ConvSpec {
        &self.inner.spec
    }
    fn algorithm(&self) -> &'static str {
        self.inner.name
    }
    fn level(&self) -> Isa {
        self.inner.level
    }
    fn scratch_len(&self, input: Dims) -> Result<usize> {
        // The widened input, then one staging output row per task.
        let out = self.inner.spec.output_dims(input)?;
        let stages =
            checked_product("im2col staging rows", &[NARROW_TASKS, out.w, self.inner.spec.out_channels])?;
        input.len()?.checked_add(stages).ok_or(KernelError::Overflow { what: "im2col scratch" })
    }
    fn run_checked(&self, run: Run<'_, E>) -> Result<()> {
        let Run { input, in_dims, out_dims: out, output, scratch, par, .. } = run;
        let (wide, stages) = scratch.split_at_mut(input.len());
        crate::algo::split_rows(par, input, wide, |s, d| self.convert.widen(s, d));
        let fused = self.inner.fused_run(wide, in_dims, out)?;
        let row_len = out.w * self.inner.spec.out_channels;
        let rows = out.n * out.h;
        let chunk_rows = rows.div_ceil(NARROW_TASKS.min(4 * par.threads())).max(1);
        let stages = SharedOut(stages.as_mut_ptr());
        par.for_each_chunk_mut(&mut output[..rows * row_len], chunk_rows * row_len, |i, chunk| {
            // SAFETY: task `i < NARROW_TASKS` (at most that many chunks) owns staging row `i`
            // of the scratch (`scratch_len`).
            let stage = unsafe { std::slice::from_raw_parts_mut(stages.get().add(i * row_len), row_len) };
            let mut edge = [0.0f32; MR_MAX * KC_LIMIT];
            for (r, orow) in chunk.chunks_exact_mut(row_len).enumerate() {
                // SAFETY: the tiles came from a token of this backend at prepare; `check_run`
                // checked the lengths; `stage` is one whole output row.
                unsafe { fused.rows_with(i * chunk_rows + r, stage, &mut edge) };
                self.convert.narrow(stage, orow);
            }
        });
        Ok(())
    }
}

impl Im2colPrepared {
    /// Whether the input already is the column matrix (1x1, stride 1, no padding).
    fn direct(&self) -> bool {
        let s = &self.spec;
        s.kernel_h == 1
            && s.kernel_w == 1
            && s.stride_h == 1
            && s.stride_w == 1
            && s.padding == Padding::default()
    }

    fn k(&self) -> usize {
        self.spec.kernel_h * self.spec.kernel_w * self.spec.in_per_group()
    }

    /// Whether the microkernel can read the column matrix straight from the input (see the
    /// module docs): one group, no horizontal dilation, K in one KC block.
    fn fused(&self) -> bool {
        let s = &self.spec;
        !self.direct()
            && s.groups == 1
            && s.dilation_w == 1
            && self.k() <= KC_LIMIT
            && self.b.len() == 1
            && self.b[0].single_k_block()
    }
}

impl Im2colPrepared {
    /// The backend's tile for `m` rows of the packed width.
    fn tile_for(&self, m: usize) -> Result<&'static Tile> {
        choose_tile(self.tiles, m, self.b[0].nr()).ok_or(KernelError::ShapeMismatch {
            what: "packed B panel width",
            expected: format!("an NR of {}", self.name),
            actual: format!("NR = {}", self.b[0].nr()),
        })
    }

    /// The fused path's run over `input` (checked dims), where [`fused`](Self::fused).
    fn fused_run<'a>(&'a self, input: &'a [f32], ind: Dims, out: Dims) -> Result<Fused<'a>> {
        self.activation.validate()?;
        Ok(Fused {
            spec: &self.spec,
            tile: self.tile_for(out.w)?,
            tiles: self.tiles,
            b: &self.b[0],
            bias: &self.bias,
            clamp: Clamp::of(self.activation),
            input,
            ind,
            out,
        })
    }
}

impl PreparedConv for Im2colPrepared {
    spec_and_name!(spec);
    fn level(&self) -> Isa {
        self.level
    }
    fn scratch_len(&self, input: Dims) -> Result<usize> {
        if self.direct() || self.fused() {
            return Ok(0);
        }
        let out = self.spec.output_dims(input)?;
        checked_product("im2col column buffer", &[out.n, out.h, out.w, self.k()])
    }
    fn run_checked(&self, run: Run<'_, f32>) -> Result<()> {
        let Run { input, in_dims, out_dims: out, output, scratch, par, .. } = run;
        let need = self.scratch_len(in_dims)?;
        let s = &self.spec;
        let (ipg, opg, k) = (s.in_per_group(), s.out_per_group(), self.k());
        let m = out.n * out.h * out.w;
        if self.fused() {
            let fused = self.fused_run(input, in_dims, out)?;
            let row_len = out.w * s.out_channels;
            let rows = out.n * out.h;
            if par.threads() <= 1 || rows < 2 {
                // SAFETY: the tiles came from a token of this backend at prepare;
                // `check_run` checked the input and output lengths against the dims.
                unsafe { fused.rows(0, output) };
            } else {
                par.for_each_rows_mut(
                    &mut output[..rows * row_len],
                    row_len,
                    2 * par.threads(),
                    |first, run| {
                        // SAFETY: as above; runs are disjoint whole output rows.
                        unsafe { fused.rows(first, run) };
                    },
                );
            }
            return Ok(());
        }
        let tile = self.tile_for(m)?;
        for (g, b) in self.b.iter().enumerate() {
            let (a, lda): (&[f32], usize) = if self.direct() {
                (&input[g * ipg..], s.in_channels)
            } else {
                let cols = &mut scratch[..need];
                fill_columns(s, input, in_dims, out, g, cols, par);
                (cols, k)
            };
            let ops = Operands {
                a,
                lda,
                b,
                bias: &self.bias[g * opg..],
                activation: self.activation,
                ldc: s.out_channels,
            };
            // SAFETY: the tiles came from a token of this backend at prepare.
            unsafe { sgemm_tile(tile, m, &ops, &mut output[g * opg..], par) }?;
        }
        Ok(())
    }
}

/// One run of the fused path (see the module docs), borrowed from the prepared layer.
struct Fused<'a> {
    spec: &'a ConvSpec,
    /// The interior tile (for the output width) and every tile of the backend.
    tile: &'static Tile,
    tiles: &'static [Tile],
    b: &'a PackedB,
    bias: &'a [f32],
    clamp: Clamp,
    input: &'a [f32],
    ind: Dims,
    out: Dims,
}

impl Fused<'_> {
    /// Output rows `first..first + out.len() / (ow * Cout)` (counted over the batch) into
    /// `out`, `MR` pixels of one row per microkernel call, every panel of B per call.
    ///
    /// Measured on conv0 (224x224, one thread, Xeon model 207): materialised im2col 0.66 ms
    /// (33 GFLOP/s); fused with the left-edge tile gathered 0.245 ms (89 GFLOP/s); fused
    /// with shifted interior tiles and a 1-row tile for the edge pixel 0.145 ms (149
    /// GFLOP/s, bench `edge`; 0.18-0.19 ms inside the model). Interior tile measured:
    /// 14x32 0.145, 7x32 0.146, 12x32 0.154, 4x32 0.167 ms. Seeding the accumulators with
    /// the bias instead of adding it in the epilogue: no measurable change.
    ///
    /// # Safety
    /// The CPU has the tile's level; `input` and `out` hold the lengths of their dims
    /// (`out` a whole number of existing output rows starting at row `first`).
    unsafe fn rows(&self, first: usize, out: &mut [f32]) {
        let mut edge = [0.0f32; MR_MAX * KC_LIMIT];
        // SAFETY: forwarded contract.
        unsafe { self.rows_with(first, out, &mut edge) }
    }

    /// [`rows`](Self::rows) with the caller's edge buffer: a caller that computes one row
    /// at a time (the narrowing path) zeroes the 32 KiB buffer once, not once per row (a
    /// `memset` per row: bf16 conv0 0.283-0.294 -> 0.240-0.261 ms without it, one thread,
    /// AMD EPYC family 26 model 2).
    ///
    /// # Safety
    /// As [`rows`](Self::rows).
    unsafe fn rows_with(&self, first: usize, out: &mut [f32], edge: &mut [f32; MR_MAX * KC_LIMIT]) {
        let s = self.spec;
        let (ind, od) = (self.ind, self.out);
        let (cin, cout) = (ind.c, s.out_channels);
        let (kh, kw) = (s.kernel_h, s.kernel_w);
        let mr_t = self.tile.mr;
        // Interior columns: every tap of the kernel row inside 0..iw.
        let x0 = s.padding.left.div_ceil(s.stride_w).min(od.w);
        let x1 = if ind.w + s.padding.left >= kw {
            ((ind.w + s.padding.left - kw) / s.stride_w + 1).min(od.w).max(x0)
        } else {
            x0
        };
        for (r, orow) in out.chunks_exact_mut(od.w * cout).enumerate() {
            let g = first + r;
            let (b, oy) = (g / od.h, g % od.h);
            let iy0 = (oy * s.stride_h) as isize - s.padding.top as isize;
            let dh = s.dilation_h as isize;
            // Kernel rows inside the image: ky0..ky1 (iy = iy0 + ky * dh).
            let ky0 = if iy0 >= 0 { 0 } else { ((-iy0) as usize).div_ceil(s.dilation_h) }.min(kh);
            let ky1 = if (ind.h as isize) > iy0 {
                (((ind.h as isize - iy0 - 1) / dh) as usize + 1).clamp(ky0, kh)
            } else {
                ky0
            };
            let nr = self.b.nr();
            if ky1 > ky0 && x1 - x0 >= mr_t {
                // Interior tiles read the input in place; the last one is shifted left to
                // end at x1 (recomputing a few pixels) rather than gathered.
                let iy = (iy0 + ky0 as isize * dh) as usize;
                let steps = KSteps { len: kw * cin, segs: ky1 - ky0, seg_stride: s.dilation_h * ind.w * cin };
                let mut ox = x0;
                loop {
                    let o = ox.min(x1 - mr_t);
                    let ix = o * s.stride_w - s.padding.left;
                    let a = &self.input[((b * ind.h + iy) * ind.w + ix) * cin..];
                    // SAFETY: pixels o..o+MR are interior, so the taps of kernel rows
                    // ky0..ky1 of all MR rows lie inside the input; B rows from ky0 * kw * cin.
                    unsafe {
                        self.call(
                            self.tile,
                            a.as_ptr(),
                            s.stride_w * cin,
                            steps,
                            ky0 * kw * cin,
                            orow,
                            o,
                            mr_t,
                        )
                    };
                    if o + mr_t >= x1 {
                        break;
                    }
                    ox += mr_t;
                }
                // SAFETY: forwarded contract.
                unsafe {
                    self.gathered(g, 0, x0, nr, edge, orow);
                    self.gathered(g, x1, od.w, nr, edge, orow);
                }
            } else {
                // SAFETY: forwarded contract.
                unsafe { self.gathered(g, 0, od.w, nr, edge, orow) };
            }
        }
    }

    /// Output pixels `x0..x1` of output row `g` through the stack buffer: each tile's A
    /// micro-panel gathered (zero taps in the padding, zero rows past `x1`), with the tile
    /// of fewest rows that covers the span (1 pixel at MobileNetV1's left edge).
    ///
    /// # Safety
    /// As [`Fused::rows`]; `orow` is output row `g`.
    unsafe fn gathered(&self, g: usize, x0: usize, x1: usize, nr: usize, edge: &mut [f32], orow: &mut [f32]) {
        if x0 >= x1 {
            return;
        }
        let k = self.b.k();
        let Some(tile) = choose_tile(self.tiles, x1 - x0, nr) else { return };
        let mut ox = x0;
        while ox < x1 {
            let mr = tile.mr.min(x1 - ox);
            for i in 0..tile.mr {
                let dst = &mut edge[i * k..(i + 1) * k];
                if i < mr {
                    column_row(self.spec, self.input, self.ind, self.out, 0, g * self.out.w + ox + i, dst);
                } else {
                    dst.fill(0.0);
                }
            }
            // SAFETY: the buffer holds tile.mr rows of K (<= MR_MAX x KC_LIMIT).
            unsafe { self.call(tile, edge.as_ptr(), k, KSteps::contiguous(k), 0, orow, ox, mr) };
            ox += mr;
        }
    }

    /// Pixels `ox..ox + mr` of one output row, every panel of B.
    ///
    /// # Safety
    /// `a` holds `tile.mr` readable rows (stride `lda`) at the offsets `steps` names; B rows
    /// from `b_off` plus `steps.total()` exist; the CPU has the tile's level.
    // Kernel entries: every argument is a pointer, a stride or a count the loop needs in a
    // register; a struct of them would be unpacked on entry anyway.
    #[allow(clippy::too_many_arguments)]
    unsafe fn call(
        &self,
        tile: &Tile,
        a: *const f32,
        lda: usize,
        steps: KSteps,
        b_off: usize,
        orow: &mut [f32],
        ox: usize,
        mr: usize,
    ) {
        let cout = self.spec.out_channels;
        let nr_t = tile.nr;
        for q in 0..cout.div_ceil(nr_t) {
            let j = q * nr_t;
            let nr = nr_t.min(cout - j);
            let Some(panel) = self.b.panel(q) else { return };
            // SAFETY: A and B as the caller guarantees; C: `mr` pixels of this output row,
            // `nr` channels from `j`; bias: `nr` values from `j`.
            unsafe {
                (tile.kernel)(&TileArgs {
                    k: steps,
                    a,
                    lda,
                    b: panel[b_off * nr_t..].as_ptr(),
                    c: orow[ox * cout + j..].as_mut_ptr(),
                    ldc: cout,
                    mr,
                    nr,
                    bias: self.bias[j..].as_ptr(),
                    accumulate: false,
                    clamp: self.clamp,
                    prefetch: Prefetch::NONE,
                })
            };
        }
    }
}

/// Writes group `g`'s column-matrix row `r` (pixel `(b, oy, ox)`): columns `(ky, kx, i)`.
fn column_row(spec: &ConvSpec, input: &[f32], ind: Dims, out: Dims, g: usize, r: usize, dst: &mut [f32]) {
    let (ipg, kh, kw) = (spec.in_per_group(), spec.kernel_h, spec.kernel_w);
    let (b, oy, ox) = (r / (out.h * out.w), r / out.w % out.h, r % out.w);
    for ky in 0..kh {
        let iy =
            (oy * spec.stride_h + ky * spec.dilation_h).checked_sub(spec.padding.top).filter(|&y| y < ind.h);
        for kx in 0..kw {
            let ix = (ox * spec.stride_w + kx * spec.dilation_w)
                .checked_sub(spec.padding.left)
                .filter(|&x| x < ind.w);
            let d = &mut dst[(ky * kw + kx) * ipg..][..ipg];
            match (iy, ix) {
                (Some(iy), Some(ix)) => {
                    let src = ((b * ind.h + iy) * ind.w + ix) * ind.c + g * ipg;
                    d.copy_from_slice(&input[src..src + ipg]);
                }
                _ => d.fill(0.0),
            }
        }
    }
}

/// Writes group `g`'s column matrix: row `(b, oy, ox)`, columns `(ky, kx, i)`.
fn fill_columns(
    spec: &ConvSpec,
    input: &[f32],
    ind: Dims,
    out: Dims,
    g: usize,
    cols: &mut [f32],
    par: Par<'_>,
) {
    let k = spec.kernel_h * spec.kernel_w * spec.in_per_group();
    let row = |r: usize, dst: &mut [f32]| column_row(spec, input, ind, out, g, r, dst);
    if par.threads() <= 1 {
        for (r, dst) in cols.chunks_exact_mut(k).enumerate() {
            row(r, dst);
        }
    } else {
        let rows_per_task = (cols.len() / k).div_ceil(par.threads() * 4).max(1);
        par.for_each_chunk_mut(cols, k * rows_per_task, |t, chunk| {
            for (r, dst) in chunk.chunks_exact_mut(k).enumerate() {
                row(t * rows_per_task + r, dst);
            }
        });
    }
}
