//! `B` packed once, at prepare, into the layout the loop nest and the microkernels read.

use crate::cache;
use crate::error::{checked_product, KernelError, Result};
use crate::tensor::AlignedBuf;

use super::tiles::NR_MAX;

/// `B` (`k x n`) packed for tiles of width `nr`: NC column blocks, each split into KC row
/// blocks, each a sequence of `kc x nr` micro-panels (row-major, zero-padded past `n`).
///
/// KC and NC come from this machine's caches ([`cache::blocking`]): the A micro-panel
/// (MR x KC) stays in L1d while B panels stream past it, and the B block (KC x NC) fills at
/// most half of L2, since it is swept once per A micro-panel (see the `gemm` module docs).
#[derive(Debug, Clone)]
pub struct PackedB {
    pub(super) data: AlignedBuf,
    pub(super) k: usize,
    pub(super) n: usize,
    pub(super) kc: usize,
    pub(super) nc: usize,
    pub(super) nr: usize,
}

impl PackedB {
    /// Packs the `k x n` matrix whose element `(p, j)` is `b(p, j)`, for tiles of width `nr`,
    /// blocked for this machine's caches.
    pub fn new(k: usize, n: usize, nr: usize, b: impl Fn(usize, usize) -> f32) -> Result<Self> {
        let blocking = cache::blocking();
        Self::with_blocking(k, n, nr, blocking.kc, blocking.b_block_bytes, b)
    }

    /// As [`PackedB::new`] with an explicit K block limit `kc_max` (at most
    /// [`cache::KC_LIMIT`]) and B block budget in bytes.
    pub fn with_blocking(
        k: usize,
        n: usize,
        nr: usize,
        kc_max: usize,
        b_block_bytes: usize,
        b: impl Fn(usize, usize) -> f32,
    ) -> Result<Self> {
        if k == 0 || n == 0 || nr == 0 || nr > NR_MAX || kc_max == 0 || kc_max > cache::KC_LIMIT {
            return Err(KernelError::ZeroSize {
                what: "GEMM k, n, nr or kc (or nr, kc beyond their limits)",
            });
        }
        // Equal K blocks (K = 1024 at kc_max 256 -> 4 x 256): each extra block costs one
        // read-modify-write of C.
        let kc = k.div_ceil(k.div_ceil(kc_max));
        let nc_max = (b_block_bytes / (kc * 4)).max(nr) / nr * nr;
        let nc = n.div_ceil(n.div_ceil(nc_max)).div_ceil(nr) * nr;
        let panels = n.div_ceil(nr);
        let mut data = AlignedBuf::zeros(checked_product("packed B", &[panels, nr, k])?)?;
        for j0 in (0..n).step_by(nc) {
            let ncb = nc.min(n - j0);
            let np = ncb.div_ceil(nr);
            for p0 in (0..k).step_by(kc) {
                let kcb = kc.min(k - p0);
                let block = j0 * k + p0 * np * nr;
                for q in 0..np {
                    let panel = block + q * kcb * nr;
                    for p in 0..kcb {
                        for jj in 0..nr {
                            let j = j0 + q * nr + jj;
                            if j < n {
                                data[panel + p * nr + jj] = b(p0 + p, j);
                            }
                        }
                    }
                }
            }
        }
        Ok(PackedB { data, k, n, kc, nc, nr })
    }

    pub fn k(&self) -> usize {
        self.k
    }
    pub fn n(&self) -> usize {
        self.n
    }
    pub fn nr(&self) -> usize {
        self.nr
    }
    /// The K block (`<= ` the machine's KC).
    pub fn kc(&self) -> usize {
        self.kc
    }
    /// Whether K fits one KC block (then panel `q` is the `k x nr` block at `q * k * nr`).
    pub fn single_k_block(&self) -> bool {
        self.kc == self.k
    }
    /// The `k x nr` micro-panel of columns `q * nr..`, `q < n.div_ceil(nr)`, when K is one
    /// KC block (NC blocks are then consecutive runs of whole panels).
    pub(crate) fn panel(&self, q: usize) -> Option<&[f32]> {
        if !self.single_k_block() || q >= self.n.div_ceil(self.nr) {
            return None;
        }
        self.data.get(q * self.k * self.nr..(q + 1) * self.k * self.nr)
    }
}
