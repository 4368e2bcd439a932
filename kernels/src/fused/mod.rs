//! Fused depthwise-separable blocks: a depthwise layer and the pointwise layer after it run
//! band by band, so the intermediate activation never makes a round trip through memory.
//!
//! Unfused, MobileNetV1's dw1 writes 112x112x32 f32 (1.6 MB) that pw1 reads back: more
//! than L2 on every machine we run on. Fused, the depthwise kernel writes `band_rows`
//! output rows into a buffer sized for L2 (one per task), and the pointwise GEMM consumes
//! them at once from cache, writing its own rows of the block's output. The price is that
//! the GEMM runs on `band_rows * W` rows at a time, so its packed weights are read once
//! per band instead of once per layer: cheap for the early blocks (pw1's B is 8 KB), not
//! for the late ones (pw13's is 4 MB), where the intermediate fits in L2 anyway. Whether a
//! block wins fused is therefore measured per machine (`mobilenet tune`), not assumed.
//!
//! Bands split the output rows of the whole batch (`n * h`), so a band may span two
//! images: the depthwise band kernel (`PreparedConv::run_rows`) counts rows over the batch
//! and pads at each image's edges, and the pointwise layer treats a band as a list of
//! pixels. Parallel runs hand each task a contiguous range of bands and its own buffer.

use crate::algo::Storage;
use crate::algo::{check_buffers, PreparedConv};
use crate::cache;
use crate::error::{KernelError, Result};
use crate::pool::{Par, SharedOut};
use crate::spec::Dims;

/// A depthwise layer and the pointwise layer that consumes its output, run in row bands.
pub struct FusedBlock<'a, E: Storage> {
    dw: &'a dyn PreparedConv<E>,
    pw: &'a dyn PreparedConv<E>,
    band_rows: usize,
}

/// Tasks per thread: bands cost the same, but the host is noisy, so a little slack lets an
/// awake thread take a descheduled one's share.
const TASKS_PER_THREAD: usize = 2;

impl<'a, E: Storage> FusedBlock<'a, E> {
    /// Pairs `dw` (which must run row bands: [`PreparedConv::runs_rows`]) with `pw` (a 1x1,
    /// stride-1, unpadded, ungrouped convolution over `dw`'s output channels), `band_rows`
    /// output rows at a time.
    pub fn new(dw: &'a dyn PreparedConv<E>, pw: &'a dyn PreparedConv<E>, band_rows: usize) -> Result<Self> {
        if band_rows == 0 {
            return Err(KernelError::ZeroSize { what: "fused band rows" });
        }
        if !dw.runs_rows() {
            return Err(KernelError::Unsupported {
                algorithm: dw.algorithm(),
                spec: format!("{} as the first layer of a fused block (no row-band path)", dw.spec()),
            });
        }
        let p = pw.spec();
        let pointwise = p.kernel_h == 1
            && p.kernel_w == 1
            && p.stride_h == 1
            && p.stride_w == 1
            && p.groups == 1
            && p.is_undilated()
            && p.padding.top + p.padding.bottom + p.padding.left + p.padding.right == 0;
        if !pointwise || p.in_channels != dw.spec().out_channels {
            return Err(KernelError::ShapeMismatch {
                what: "fused block's second layer",
                expected: format!(
                    "a 1x1 stride-1 unpadded convolution from {} channels",
                    dw.spec().out_channels
                ),
                actual: p.to_string(),
            });
        }
        Ok(FusedBlock { dw, pw, band_rows })
    }

    /// Output rows per band.
    pub fn band_rows(&self) -> usize {
        self.band_rows
    }

    /// The default band height for a depthwise output of `out` dims: the rows of the
    /// intermediate (`E`) whose bytes fill a quarter of L2 (the rest holds the pointwise
    /// weights' block and output), at least one row, and at most enough rows for
    /// [`TASKS_PER_THREAD`] bands per thread.
    pub fn default_band_rows(out: Dims, threads: usize) -> usize {
        let row_bytes = (out.w * out.c * std::mem::size_of::<E>()).max(1);
        let fit = (cache::caches().l2 / 4 / row_bytes).max(1);
        let spread = (out.n * out.h).div_ceil(TASKS_PER_THREAD * threads.max(1)).max(1);
        fit.min(spread)
    }

    fn layout(&self, in_dims: Dims, threads: usize) -> Result<Layout> {
        let mid = self.dw.spec().output_dims(in_dims)?;
        let out = self.pw.spec().output_dims(mid)?;
        let total_rows = mid.n * mid.h;
        let band_rows = self.band_rows.min(total_rows.max(1));
        let bands = total_rows.div_ceil(band_rows);
        let tasks = (threads.max(1) * TASKS_PER_THREAD).min(bands).max(1);
        let band = Dims::new(1, band_rows, mid.w, mid.c);
        // The band buffer lives in the f32 scratch: round its E values up to whole,
        // 64-byte-aligned groups of f32s so each task's slice stays aligned.
        let band_f32s = (band.len()? * std::mem::size_of::<E>()).div_ceil(64) * 16;
        let pw_scratch = self.pw.scratch_len(band)?.div_ceil(16) * 16;
        let per_task =
            band_f32s.checked_add(pw_scratch).ok_or(KernelError::Overflow { what: "fused scratch" })?;
        Ok(Layout { mid, out, total_rows, band_rows, bands, tasks, band_f32s, per_task })
    }

    /// Scratch f32s [`run`](Self::run) needs for `in_dims` on up to `threads` threads.
    pub fn scratch_len(&self, in_dims: Dims, threads: usize) -> Result<usize> {
        let l = self.layout(in_dims, threads)?;
        l.per_task.checked_mul(l.tasks).ok_or(KernelError::Overflow { what: "fused scratch" })
    }

    /// Runs both layers: NHWC `input` of `in_dims` in, the pointwise layer's NHWC output
    /// out. `scratch` holds at least [`scratch_len`](Self::scratch_len)`(in_dims,
    /// par.threads())` f32s.
    pub fn run(
        &self,
        input: &[E],
        in_dims: Dims,
        output: &mut [E],
        scratch: &mut [f32],
        par: Par<'_>,
    ) -> Result<()> {
        let l = self.layout(in_dims, par.threads())?;
        check_buffers(input, in_dims, output, l.out, scratch, l.per_task * l.tasks)?;
        if l.total_rows == 0 {
            return Ok(());
        }
        let (mid_row, out_row) = (l.mid.w * l.mid.c, l.out.w * l.out.c);
        let (out_base, scr_base) = (SharedOut(output.as_mut_ptr()), SharedOut(scratch.as_mut_ptr()));
        let errors = std::sync::Mutex::new(None);
        par.limit(l.tasks).for_each(l.tasks, |t| {
            let (b0, b1) = (t * l.bands / l.tasks, (t + 1) * l.bands / l.tasks);
            // SAFETY: task `t` owns scratch `[t * per_task, (t + 1) * per_task)`, inside
            // the `per_task * tasks` f32s checked above; f32 is at least as aligned as any `Element`
            // (f32, f16, bf16), and the band part holds `band_f32s * 4` bytes, enough for
            // `band_rows * mid_row` values of `E`.
            let (band, pw_scratch) = unsafe {
                let base = scr_base.get().add(t * l.per_task);
                (
                    std::slice::from_raw_parts_mut(base.cast::<E>(), l.band_rows * mid_row),
                    std::slice::from_raw_parts_mut(base.add(l.band_f32s), l.per_task - l.band_f32s),
                )
            };
            for b in b0..b1 {
                let r0 = b * l.band_rows;
                let rows = l.band_rows.min(l.total_rows - r0);
                // SAFETY: band `b` owns output rows `[r0, r0 + rows)` (bands are disjoint
                // and each runs in one task), inside `output`, whose length is checked.
                let out = unsafe {
                    std::slice::from_raw_parts_mut(out_base.get().add(r0 * out_row), rows * out_row)
                };
                let band = &mut band[..rows * mid_row];
                let done = self.dw.run_rows(input, in_dims, r0, band).and_then(|()| {
                    self.pw.run(band, Dims::new(1, rows, l.mid.w, l.mid.c), out, pw_scratch, Par::SERIAL)
                });
                if let Err(e) = done {
                    *errors.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    return;
                }
            }
        });
        match errors.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The sizes of one fused run.
struct Layout {
    mid: Dims,
    out: Dims,
    total_rows: usize,
    band_rows: usize,
    bands: usize,
    tasks: usize,
    band_f32s: usize,
    per_task: usize,
}
