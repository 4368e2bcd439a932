//! The loop nest around the microkernels: argument checks, blocking, threads.

use super::pack::PackedB;
use super::tiles::{choose_tile, KSteps, Tile, TileArgs, MR_MAX};
use crate::cache::KC_LIMIT;
use crate::error::{KernelError, Result};
use crate::simd::{Backend, Clamp};
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
pub fn sgemm(backend: Backend, m: usize, ops: &Operands, c: &mut [f32], threads: usize) -> Result<()> {
    let tiles = super::tiles(backend)?;
    let tile = choose_tile(tiles, m, ops.b.nr).ok_or_else(|| KernelError::ShapeMismatch {
        what: "packed B panel width",
        expected: format!("an NR of backend {backend}"),
        actual: format!("NR = {}", ops.b.nr),
    })?;
    // SAFETY: the tile comes from the table of a backend that can run here (checked by
    // `tiles`).
    unsafe { sgemm_tile(tile, m, ops, c, threads) }
}

/// `C[i][j] = act(bias[j] + sum_p A[i][p] B[p][j])` for `i < m`, `j < b.n()`, `p < b.k()`,
/// with `C[i][j] = c[i * ldc + j]`, using `tile`.
///
/// Checks every length (an error, never a panic or an out-of-bounds access). `m == 0` is a
/// no-op. `threads > 1` runs rayon tasks on the current pool.
///
/// # Safety
/// The CPU must have `tile`'s level: a tile of [`super::tiles`] for a backend that can run
/// here.
pub unsafe fn sgemm_tile(tile: &Tile, m: usize, ops: &Operands, c: &mut [f32], threads: usize) -> Result<()> {
    let Operands { a, lda, b, bias, activation, ldc } = *ops;
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
    for (what, expected, actual) in [("A", a_len, a.len()), ("C", c_len, c.len()), ("bias", n, bias.len())] {
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
    };
    let (mp, np) = (m.div_ceil(tile.mr), n.div_ceil(tile.nr));
    if threads <= 1 {
        // SAFETY: lengths checked above; the caller guarantees the level.
        unsafe { nest.run(0, m, 0, n) };
        return Ok(());
    }
    use rayon::prelude::*;
    let target = threads * 4;
    let tm = mp.min(target);
    let tn = np.min(target.div_ceil(tm));
    (0..tm * tn).into_par_iter().for_each(|t| {
        let (ti, tj) = (t / tn, t % tn);
        let m0 = (mp * ti / tm * tile.mr).min(m);
        let m1 = (mp * (ti + 1) / tm * tile.mr).min(m);
        let n0 = (np * tj / tn * tile.nr).min(n);
        let n1 = (np * (tj + 1) / tn * tile.nr).min(n);
        // SAFETY: rectangles are disjoint and inside C; lengths checked above.
        unsafe { nest.run(m0, m1, n0, n1) };
    });
    Ok(())
}

/// A raw output pointer shared by tasks that write disjoint tiles.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: tasks write disjoint C rectangles (see `sgemm_tile`), so sharing the base pointer
// across threads creates no data race.
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

/// One checked SGEMM call: the operands of the loop nest.
struct Nest<'a> {
    tile: &'a Tile,
    a: *const f32,
    lda: usize,
    b: &'a PackedB,
    bias: *const f32,
    clamp: Clamp,
    c: SharedOut,
    ldc: usize,
}

// SAFETY: `a`, `bias` are only read; `c` writes are disjoint per task (see `SharedOut`).
unsafe impl Sync for Nest<'_> {}

impl Nest<'_> {
    /// The loop nest over rows `m0..m1` and columns `n0..n1` (`n0` a multiple of NR).
    ///
    /// # Safety
    /// Bounds checked by `sgemm_tile`; the CPU has the tile's level.
    unsafe fn run(&self, m0: usize, m1: usize, n0: usize, n1: usize) {
        let (tile, b) = (self.tile, self.b);
        let (mr_t, nr_t) = (tile.mr, tile.nr);
        let (k, n, kc, nc) = (b.k, b.n, b.kc, b.nc);
        let mut edge = [0.0f32; MR_MAX * KC_LIMIT];
        let mut j0 = n0 / nc * nc;
        while j0 < n1 {
            let ncb = nc.min(n - j0);
            let np = ncb.div_ceil(nr_t);
            // Panels of this NC block inside n0..n1.
            let q0 = n0.saturating_sub(j0) / nr_t;
            let q1 = (n1 - j0).min(ncb).div_ceil(nr_t);
            for p0 in (0..k).step_by(kc) {
                let kcb = kc.min(k - p0);
                let block = j0 * k + p0 * np * nr_t;
                let mut i = m0;
                while i < m1 {
                    let mr = mr_t.min(m1 - i);
                    // SAFETY: rows i..i+mr of A exist (checked by sgemm_tile); a partial
                    // micro-panel is copied into the zero-padded `edge` (kcb <= KC_LIMIT).
                    let (a_ptr, lda) = unsafe {
                        let src = self.a.add(i * self.lda + p0);
                        if mr == mr_t {
                            (src, self.lda)
                        } else {
                            edge[..mr_t * kcb].fill(0.0);
                            for r in 0..mr {
                                std::ptr::copy_nonoverlapping(
                                    src.add(r * self.lda),
                                    edge.as_mut_ptr().add(r * kcb),
                                    kcb,
                                );
                            }
                            (edge.as_ptr(), kcb)
                        }
                    };
                    for q in q0..q1 {
                        let j = j0 + q * nr_t;
                        // SAFETY: the panel lies inside packed B, the C tile inside C, the
                        // bias holds `n` f32s; the caller guarantees the level.
                        unsafe {
                            (tile.kernel)(&TileArgs {
                                k: KSteps::contiguous(kcb),
                                a: a_ptr,
                                lda,
                                b: b.data.as_ptr().add(block + q * kcb * nr_t),
                                c: self.c.0.add(i * self.ldc + j),
                                ldc: self.ldc,
                                mr,
                                nr: nr_t.min(n - j),
                                bias: self.bias.add(j),
                                accumulate: p0 != 0,
                                clamp: self.clamp.if_last(p0 + kcb == k),
                            })
                        };
                    }
                    i += mr;
                }
            }
            j0 += nc;
        }
    }
}
