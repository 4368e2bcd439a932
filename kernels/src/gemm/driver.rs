//! The loop nest around the microkernels: argument checks, blocking, threads.

use super::pack::PackedB;
use super::tiles::{choose_tile, KSteps, Prefetch, Tile, TileArgs, LINE, MR_MAX, NR_MAX};
use crate::cache::{self, KC_LIMIT};
use crate::error::{KernelError, Result};
use crate::pool::Par;
use crate::simd::{Backend, Clamp, Convert, Element};
use crate::spec::Activation;

/// The inputs of one SGEMM: `A[i][p] = a[i * lda + p]`, the packed `B`, the bias (one per
/// column of C), the activation, and the row stride of C.
#[derive(Clone, Copy)]
pub struct Operands<'a> {
    pub a: &'a [f32],
    pub lda: usize,
    pub b: &'a PackedB,
    pub bias: &'a [f32],
    pub activation: Activation,
    pub ldc: usize,
}

/// `C = act(A B + bias)` for `m` rows with `backend`'s best tile for `m` (see
/// [`sgemm_tile`]).
///
/// Errors if the backend cannot run here or `B` was packed for a width it has no tile of.
pub fn sgemm(backend: Backend, m: usize, ops: &Operands, c: &mut [f32], par: Par<'_>) -> Result<()> {
    let tiles = super::tiles(backend)?;
    let tile = choose_tile(tiles, m, ops.b.nr).ok_or_else(|| KernelError::ShapeMismatch {
        what: "packed B panel width",
        expected: format!("an NR of backend {backend}"),
        actual: format!("NR = {}", ops.b.nr),
    })?;
    // SAFETY: the tile comes from the table of a backend that can run here (checked by
    // `tiles`).
    unsafe { sgemm_tile(tile, m, ops, c, par) }
}

/// `C[i][j] = act(bias[j] + sum_p A[i][p] B[p][j])` for `i < m`, `j < b.n()`, `p < b.k()`,
/// with `C[i][j] = c[i * ldc + j]`, using `tile`.
///
/// Checks every length (an error, never a panic or an out-of-bounds access). `m == 0` is a
/// no-op. `threads > 1` runs tasks on the hot pool (`crate::pool`).
///
/// # Safety
/// The CPU must have `tile`'s level: a tile of [`super::tiles`] for a backend that can run
/// here.
pub unsafe fn sgemm_tile(tile: &Tile, m: usize, ops: &Operands, c: &mut [f32], par: Par<'_>) -> Result<()> {
    let Operands { a, lda, b, bias, activation, ldc } = *ops;
    // SAFETY: forwarded contract; f32 C needs no accumulation buffer.
    let convert = Convert { widen: |_, _, _, _, _, _| {}, narrow: |_, _, _, _, _, _| {} };
    let io = GemmIo { a, lda, c, ldc, acc: &mut [], convert };
    // SAFETY: forwarded contract; f32 A and C are never converted.
    unsafe { gemm_io(tile, m, io, b, bias, activation, par) }
}

/// The activations of a GEMM whose A and C are stored as `E` (f32, f16 or bf16), and the f32
/// accumulation buffer a narrower C needs when K takes more than one block.
pub(crate) struct GemmIo<'a, E> {
    pub a: &'a [E],
    pub lda: usize,
    pub c: &'a mut [E],
    pub ldc: usize,
    /// At least [`acc_len`] f32s.
    pub acc: &'a mut [f32],
    /// The converters of the tile's implementation (unused for f32).
    pub convert: Convert<E>,
}

/// The f32s of accumulation buffer a GEMM of `m` rows with A and C stored as `E` needs: none
/// for f32 or a single K block (the tile is narrowed from a stack buffer), else `m x n`
/// (partial sums of the K blocks stay in f32 and are narrowed once, after the last).
pub(crate) fn acc_len<E: Element>(m: usize, b: &PackedB) -> Result<usize> {
    if E::IS_F32 || b.kc >= b.k {
        Ok(0)
    } else {
        m.checked_mul(b.n).ok_or(KernelError::Overflow { what: "GEMM accumulation buffer" })
    }
}

/// [`sgemm_tile`] on A and C stored as `E`: every A micro-panel is widened into a stack
/// buffer (once per NC block: A is read about `n / NC` times, 1-2 for MobileNetV1), the
/// f32 microkernel runs unchanged, and each finished C tile is narrowed once.
///
/// # Safety
/// As [`sgemm_tile`].
pub(crate) unsafe fn gemm_io<E: Element>(
    tile: &Tile,
    m: usize,
    io: GemmIo<'_, E>,
    b: &PackedB,
    bias: &[f32],
    activation: Activation,
    par: Par<'_>,
) -> Result<()> {
    let GemmIo { a, lda, c, ldc, acc, convert } = io;
    let (k, n) = (b.k, b.n);
    if tile.nr != b.nr {
        return Err(KernelError::ShapeMismatch {
            what: "packed B panel width",
            expected: format!("NR = {}", tile.nr),
            actual: format!("NR = {}", b.nr),
        });
    }
    if m == 0 {
        return Ok(());
    }
    let need = |rows: usize, ld: usize, cols: usize, what| -> Result<usize> {
        if ld < cols {
            return Err(KernelError::ShapeMismatch {
                what,
                expected: format!("row stride >= {cols}"),
                actual: format!("{ld}"),
            });
        }
        (rows - 1).checked_mul(ld).and_then(|x| x.checked_add(cols)).ok_or(KernelError::Overflow { what })
    };
    let a_len = need(m, lda, k, "A")?;
    let c_len = need(m, ldc, n, "C")?;
    let acc_len = acc_len::<E>(m, b)?;
    for (what, expected, actual) in [
        ("A", a_len, a.len()),
        ("C", c_len, c.len()),
        ("bias", n, bias.len()),
        ("GEMM accumulation buffer", acc_len, acc.len()),
    ] {
        if actual < expected {
            return Err(KernelError::BufferLength { what, expected, actual });
        }
    }
    activation.validate()?;
    let nest = Nest {
        tile,
        a: a.as_ptr(),
        lda,
        b,
        bias: bias.as_ptr(),
        clamp: Clamp::of(activation),
        c: SharedOut(c.as_mut_ptr()),
        ldc,
        acc: SharedOut(acc.as_mut_ptr()),
        convert,
        prefetch: cache::blocking().prefetch_b,
    };
    let (mp, np) = (m.div_ceil(tile.mr), n.div_ceil(tile.nr));
    if par.threads() <= 1 {
        // SAFETY: lengths checked above; the caller guarantees the level.
        unsafe { nest.run(0, m, 0, n) };
        return Ok(());
    }
    let order = order_for(b.data.len() * 4, m, mp, par);
    split_tasks(mp, np, par, order, |(p0, p1), (q0, q1)| {
        let (m0, m1) = ((p0 * tile.mr).min(m), (p1 * tile.mr).min(m));
        let (n0, n1) = ((q0 * tile.nr).min(n), (q1 * tile.nr).min(n));
        // SAFETY: rectangles are disjoint and inside C; lengths checked above.
        unsafe { nest.run(m0, m1, n0, n1) };
    });
    Ok(())
}

/// The order of the tasks of a GEMM of `m` rows in `row_blocks` register tiles whose packed
/// B holds `b_bytes`.
///
/// A rows-first task streams its columns' B once for its rows: 2 * rows FLOPs per element.
/// Where B does not fit in half of L2, that stream comes from L3, so cut the columns first
/// unless the tasks span enough rows to hide it: pw12 / pw13 (7 rows a task at 2 threads,
/// 3.5 FLOPs per byte of f32 B) stay `ColumnsFirst`; pw7..pw11 (24 rows a task, B = 1 MiB
/// on a 1 MiB L2) measured 0.87-1.03x rows-first against columns-first per round on the
/// Zen 4 (EPYC 25/17, 2 threads, two runs of 6 interleaved rounds), and dw8..dw12 after them
/// 0.63-0.65x (0.138-0.150 against 0.220-0.231 ms, medians), since each thread then reads
/// the rows its own core wrote. The 16 between the two is not tuned.
pub(crate) fn order_for(b_bytes: usize, m: usize, row_blocks: usize, par: Par<'_>) -> Order {
    let task_rows = m / row_blocks.min(par.threads() * TASKS_PER_THREAD).max(1);
    let b_streams = b_bytes > cache::caches().l2 / 2;
    if b_streams && task_rows < 16 {
        Order::ColumnsFirst
    } else {
        Order::Columns
    }
}

/// The order of [`split_tasks`]'s rectangles, so the order of each thread's share of them
/// (`Par::for_each` hands each thread a contiguous share first). Both are the same when the
/// columns are not split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// A thread's share is a range of rows, across the columns: it writes whole rows, which
    /// the next layer (split by rows too) then reads from the same core. The int8 and bf16
    /// GEMMs, whose weights are small, where there are more row blocks than threads (see
    /// `amx_bf16::for_each_block`): at 2 threads on the Xeon family 6 model 167, `Columns`
    /// was 6-15% slower on pw6..pw11.
    // Only the x86 vector GEMMs (AMX, int8) take it.
    #[cfg_attr(
        not(all(target_arch = "x86_64", any(feature = "avx2", feature = "avx512"))),
        allow(dead_code)
    )]
    Rows,
    /// A thread's share is a range of columns, so each thread streams only its part of B.
    /// The f32 GEMM: with `Rows` and the columns split (pw12 / pw13: 7 row blocks, 2 column
    /// halves at 2 threads), every thread streamed all of B (4 MiB at pw13); `Columns` took
    /// pw13 0.51 -> 0.455 ms, pw12 0.23 -> 0.204, end to end 0.96x (Xeon family 6 model 167).
    Columns,
    /// As `Columns`, with the columns cut first: where there are enough column blocks, each
    /// task spans all the rows, so each task streams its part of B once. For a B larger
    /// than half of L2 (pw12, pw13 at f32: 2 and 4 MiB), which a row-and-column task
    /// would stream again from L3 for each of its row blocks, when those tasks would be
    /// short (fewer than 16 rows: pw12 / pw13's 7), too short to hide that stream.
    ColumnsFirst,
}

/// Rectangles per thread of [`split_tasks`] (see there).
const TASKS_PER_THREAD: usize = 4;

/// Splits `row_blocks x col_blocks` (whole register tiles, or whatever unit the caller
/// counts) into about [`TASKS_PER_THREAD`]` * threads` rectangles, rows first and columns
/// too when there are few row blocks (columns first for [`Order::ColumnsFirst`]), and runs
/// `task(rows, cols)` on each as tasks of `par`. Four per thread: rectangles cost the same,
/// but the host is noisy, and the task counter lets an awake thread take a descheduled
/// one's share.
/// The one split of every GEMM driver (f32 panels, `vdpbf16ps` pairs, AMX tiles).
pub(crate) fn split_tasks(
    row_blocks: usize,
    col_blocks: usize,
    par: Par<'_>,
    order: Order,
    task: impl Fn((usize, usize), (usize, usize)) + Sync,
) {
    let target = par.threads() * TASKS_PER_THREAD;
    let (tm, tn) = if order == Order::ColumnsFirst {
        let tn = col_blocks.min(target).max(1);
        (row_blocks.min(target.div_ceil(tn)).max(1), tn)
    } else {
        let tm = row_blocks.min(target).max(1);
        (tm, col_blocks.min(target.div_ceil(tm)).max(1))
    };
    par.for_each(tm * tn, |t| {
        let (ti, tj) = match order {
            Order::Rows => (t / tn, t % tn),
            Order::Columns | Order::ColumnsFirst => (t % tm, t / tm),
        };
        let rows = (row_blocks * ti / tm, row_blocks * (ti + 1) / tm);
        let cols = (col_blocks * tj / tn, col_blocks * (tj + 1) / tn);
        task(rows, cols);
    });
}

pub(crate) use crate::pool::SharedOut;

/// One checked GEMM call: the operands of the loop nest.
struct Nest<'a, E> {
    tile: &'a Tile,
    a: *const E,
    lda: usize,
    b: &'a PackedB,
    bias: *const f32,
    clamp: Clamp,
    c: SharedOut<E>,
    ldc: usize,
    /// The f32 accumulation buffer (`m x n`, row stride `n`) when E is narrower than f32
    /// and K has more than one block; unused otherwise.
    acc: SharedOut<f32>,
    convert: Convert<E>,
    /// Software-prefetch B ([`cache::Blocking::prefetch_b`]).
    prefetch: bool,
}

// SAFETY: `a`, `bias` are only read; `c` and `acc` writes are disjoint per task (see
// `SharedOut`).
unsafe impl<E> Sync for Nest<'_, E> {}

impl<E: Element> Nest<'_, E> {
    /// The loop nest over rows `m0..m1` and columns `n0..n1` (`n0` a multiple of NR).
    ///
    /// # Safety
    /// Bounds checked by `sgemm_tile`; the CPU has the tile's level.
    unsafe fn run(&self, m0: usize, m1: usize, n0: usize, n1: usize) {
        let (tile, b) = (self.tile, self.b);
        let (mr_t, nr_t) = (tile.mr, tile.nr);
        let (k, n, kc, nc) = (b.k, b.n, b.kc, b.nc);
        let mut edge = [0.0f32; MR_MAX * KC_LIMIT];
        let mut c_tile = [0.0f32; MR_MAX * NR_MAX];
        // f32 C is written in place; a narrower one through an f32 stage (see `gemm_io`).
        let wide = E::IS_F32;
        let k_blocks = k.div_ceil(kc);
        let mut j0 = n0 / nc * nc;
        while j0 < n1 {
            let ncb = nc.min(n - j0);
            let np = ncb.div_ceil(nr_t);
            // Panels of this NC block inside n0..n1.
            let q0 = n0.saturating_sub(j0) / nr_t;
            let q1 = (n1 - j0).min(ncb).div_ceil(nr_t);
            for p0 in (0..k).step_by(kc) {
                let kcb = kc.min(k - p0);
                let last = p0 + kcb == k;
                let block = j0 * k + p0 * np * nr_t;
                // This task's panels of the next packed-B block in loop order (the next K
                // block, else the next NC block's first), which start where this block ends:
                // each microkernel call prefetches an equal share of them into L2.
                let (mut next, next_end) = if !self.prefetch {
                    (0, 0)
                } else if !last {
                    let kcn = kc.min(k - p0 - kcb);
                    let start = block + kcb * np * nr_t;
                    (start + q0 * kcn * nr_t, start + q1 * kcn * nr_t)
                } else if j0 + nc < n1 {
                    let j1 = j0 + nc;
                    let ncb1 = nc.min(n - j1);
                    let (qn0, qn1) = (n0.saturating_sub(j1) / nr_t, (n1 - j1).min(ncb1).div_ceil(nr_t));
                    let kcn = kc.min(k);
                    (j1 * k + qn0 * kcn * nr_t, j1 * k + qn1 * kcn * nr_t)
                } else {
                    (0, 0)
                };
                let calls = ((m1 - m0).div_ceil(mr_t) * (q1 - q0)).max(1);
                let share = (next_end - next).div_ceil(LINE).div_ceil(calls).next_multiple_of(2);
                let mut i = m0;
                while i < m1 {
                    let mr = mr_t.min(m1 - i);
                    // SAFETY: rows i..i+mr of A exist (checked by gemm_io); a partial or
                    // narrower micro-panel is copied (widened) into `edge`, its rows past
                    // `mr` zeros (kcb <= KC_LIMIT).
                    let (a_ptr, lda) = unsafe {
                        let src = self.a.add(i * self.lda + p0);
                        if mr == mr_t && wide {
                            (src.cast::<f32>(), self.lda)
                        } else {
                            edge[mr * kcb..mr_t * kcb].fill(0.0);
                            let to = edge.as_mut_ptr();
                            if wide {
                                for r in 0..mr {
                                    let row = src.add(r * self.lda).cast::<f32>();
                                    std::ptr::copy_nonoverlapping(row, to.add(r * kcb), kcb);
                                }
                            } else {
                                (self.convert.widen)(src, self.lda, to, kcb, mr, kcb);
                            }
                            (edge.as_ptr(), kcb)
                        }
                    };
                    for q in q0..q1 {
                        let j = j0 + q * nr_t;
                        let nr = nr_t.min(n - j);
                        // Where the microkernel writes: C itself (f32), the stack tile (one
                        // K block), or the accumulation buffer (several).
                        // SAFETY: the panel lies inside packed B, the C tile
                        // inside C (and the accumulation buffer, `m x n`, when used), the
                        // bias holds `n` f32s; the caller guarantees the level.
                        let (c_ptr, ldc) = unsafe {
                            if wide {
                                (self.c.get().add(i * self.ldc + j).cast::<f32>(), self.ldc)
                            } else if k_blocks == 1 {
                                (c_tile.as_mut_ptr(), nr_t)
                            } else {
                                (self.acc.get().add(i * n + j), n)
                            }
                        };
                        // SAFETY: as above; a narrowed tile has `mr` rows of `nr` f32s at
                        // `c_ptr` and of `nr` elements in C.
                        unsafe {
                            (tile.kernel)(&TileArgs {
                                k: KSteps::contiguous(kcb),
                                a: a_ptr,
                                lda,
                                b: b.data.as_ptr().add(block + q * kcb * nr_t),
                                c: c_ptr,
                                ldc,
                                mr,
                                nr,
                                bias: self.bias.add(j),
                                accumulate: p0 != 0,
                                clamp: self.clamp.if_last(last),
                                prefetch: Prefetch {
                                    near: self.prefetch,
                                    next: b.data.as_ptr().wrapping_add(next),
                                    next_lines: share.min((next_end - next).div_ceil(LINE)),
                                },
                            });
                            next = (next + share * LINE).min(next_end);
                            if !wide && last {
                                let to = self.c.get().add(i * self.ldc + j);
                                (self.convert.narrow)(c_ptr, ldc, to, self.ldc, mr, nr);
                            }
                        }
                    }
                    i += mr;
                }
            }
            j0 += nc;
        }
    }
}
