//! The Winograd (Toom-Cook) transform matrices of Lavin and Gray (2016) for F(m x m, 3 x 3),
//! and the filter transform, done once at prepare in f64 and rounded to f32.
//!
//! One output tile of `m x m` from an `a x a` input tile `d` (`a = m + 2`) is
//! `Y = A^T [ (G g G^T) (.) (B^T d B) ] A`, the cross-correlation PyTorch calls convolution.
//! The interpolation points, and the largest matrix entries they bring:
//!
//! | tile | a | points | max abs(B^T) | max abs(G) | max abs(A^T) |
//! |---|---|---|---:|---:|---:|
//! | F(2,3) | 4 | 0, +-1, inf | 1 | 1 | 1 |
//! | F(4,3) | 6 | 0, +-1, +-2, inf | 5 | 1 | 8 |
//! | F(6,3) | 8 | 0, +-1, +-2, +-1/2, inf | 5.25 | 1 | 32 |
//!
//! Every entry of `B^T` and `A^T` is exact in f32 (quarters and powers of two), so the only
//! rounding in the transforms is that of the sums; `G` (1/6, 2/9, 1/90, ...) is not, which is
//! why the filter transform runs in f64.

/// One Winograd tile size: its matrices, padded to the largest (8 x 8) so that one generic
/// body serves all three; loops run to [`Transform::A`] and [`Transform::M`], constants after
/// monomorphisation, so LLVM unrolls them and folds the zero and +-1 entries away.
pub trait Transform: Send + Sync + 'static {
    /// Output tile side `m`.
    const M: usize;
    /// Input tile side `a = m + 2`.
    const A: usize;
    /// `B^T`, `a x a`: the input transform.
    const BT: [[f32; 8]; 8];
    /// `A^T`, `m x a`: the output transform.
    const AT: [[f32; 8]; 6];
    /// `G`, `a x 3`: the filter transform (f64, applied once at prepare).
    const G: [[f64; 3]; 8];
}

/// F(2x2, 3x3): 16 multiplies per 4 outputs instead of 36 (2.25x fewer).
pub struct F2;
/// F(4x4, 3x3): 36 multiplies per 16 outputs instead of 144 (4x fewer).
pub struct F4;
/// F(6x6, 3x3): 64 multiplies per 36 outputs instead of 324 (5.06x fewer); an experiment.
pub struct F6;

const Z8: [f32; 8] = [0.0; 8];

/// Pads a short row with zeros (const-friendly).
const fn row<const N: usize>(r: [f32; N]) -> [f32; 8] {
    let mut out = Z8;
    let mut i = 0;
    while i < N {
        out[i] = r[i];
        i += 1;
    }
    out
}

impl Transform for F2 {
    const M: usize = 2;
    const A: usize = 4;
    const BT: [[f32; 8]; 8] = [
        row([1.0, 0.0, -1.0, 0.0]),
        row([0.0, 1.0, 1.0, 0.0]),
        row([0.0, -1.0, 1.0, 0.0]),
        row([0.0, 1.0, 0.0, -1.0]),
        Z8,
        Z8,
        Z8,
        Z8,
    ];
    const AT: [[f32; 8]; 6] = [row([1.0, 1.0, 1.0, 0.0]), row([0.0, 1.0, -1.0, -1.0]), Z8, Z8, Z8, Z8];
    const G: [[f64; 3]; 8] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
        [0.0; 3],
        [0.0; 3],
        [0.0; 3],
        [0.0; 3],
    ];
}

impl Transform for F4 {
    const M: usize = 4;
    const A: usize = 6;
    const BT: [[f32; 8]; 8] = [
        row([4.0, 0.0, -5.0, 0.0, 1.0, 0.0]),
        row([0.0, -4.0, -4.0, 1.0, 1.0, 0.0]),
        row([0.0, 4.0, -4.0, -1.0, 1.0, 0.0]),
        row([0.0, -2.0, -1.0, 2.0, 1.0, 0.0]),
        row([0.0, 2.0, -1.0, -2.0, 1.0, 0.0]),
        row([0.0, 4.0, 0.0, -5.0, 0.0, 1.0]),
        Z8,
        Z8,
    ];
    const AT: [[f32; 8]; 6] = [
        row([1.0, 1.0, 1.0, 1.0, 1.0, 0.0]),
        row([0.0, 1.0, -1.0, 2.0, -2.0, 0.0]),
        row([0.0, 1.0, 1.0, 4.0, 4.0, 0.0]),
        row([0.0, 1.0, -1.0, 8.0, -8.0, 1.0]),
        Z8,
        Z8,
    ];
    const G: [[f64; 3]; 8] = [
        [1.0 / 4.0, 0.0, 0.0],
        [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
        [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
        [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
        [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
        [0.0, 0.0, 1.0],
        [0.0; 3],
        [0.0; 3],
    ];
}

impl Transform for F6 {
    const M: usize = 6;
    const A: usize = 8;
    const BT: [[f32; 8]; 8] = [
        [1.0, 0.0, -5.25, 0.0, 5.25, 0.0, -1.0, 0.0],
        [0.0, 1.0, 1.0, -4.25, -4.25, 1.0, 1.0, 0.0],
        [0.0, -1.0, 1.0, 4.25, -4.25, -1.0, 1.0, 0.0],
        [0.0, 0.5, 0.25, -2.5, -1.25, 2.0, 1.0, 0.0],
        [0.0, -0.5, 0.25, 2.5, -1.25, -2.0, 1.0, 0.0],
        [0.0, 2.0, 4.0, -2.5, -5.0, 0.5, 1.0, 0.0],
        [0.0, -2.0, 4.0, 2.5, -5.0, -0.5, 1.0, 0.0],
        [0.0, -1.0, 0.0, 5.25, 0.0, -5.25, 0.0, 1.0],
    ];
    const AT: [[f32; 8]; 6] = [
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 0.0],
        [0.0, 1.0, 1.0, 4.0, 4.0, 0.25, 0.25, 0.0],
        [0.0, 1.0, -1.0, 8.0, -8.0, 0.125, -0.125, 0.0],
        [0.0, 1.0, 1.0, 16.0, 16.0, 0.0625, 0.0625, 0.0],
        [0.0, 1.0, -1.0, 32.0, -32.0, 0.03125, -0.03125, 1.0],
    ];
    const G: [[f64; 3]; 8] = [
        [1.0, 0.0, 0.0],
        [-2.0 / 9.0, -2.0 / 9.0, -2.0 / 9.0],
        [-2.0 / 9.0, 2.0 / 9.0, -2.0 / 9.0],
        [1.0 / 90.0, 1.0 / 45.0, 2.0 / 45.0],
        [1.0 / 90.0, -1.0 / 45.0, 2.0 / 45.0],
        [32.0 / 45.0, 16.0 / 45.0, 8.0 / 45.0],
        [32.0 / 45.0, -16.0 / 45.0, 8.0 / 45.0],
        [0.0, 0.0, 1.0],
    ];
}

/// `U = G g G^T` for one 3x3 filter `g` (row-major), in f64, rounded once to f32.
/// Writes the `a x a` result row-major into `u[..a * a]`.
pub fn filter_transform<T: Transform>(g: &[f32], u: &mut [f32]) {
    let a = T::A;
    // t = G g  (a x 3)
    let mut t = [[0.0f64; 3]; 8];
    for (i, ti) in t.iter_mut().enumerate().take(a) {
        for (j, tij) in ti.iter_mut().enumerate() {
            *tij = (0..3).map(|k| T::G[i][k] * g[k * 3 + j] as f64).sum();
        }
    }
    // U = t G^T  (a x a)
    for i in 0..a {
        for j in 0..a {
            u[i * a + j] = (0..3).map(|k| t[i][k] * T::G[j][k]).sum::<f64>() as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 1-D identity `A^T [(G g) (.) (B^T d)] = correlate(d, g)`, in f64 on small
    /// integers: proves the matrices (a wrong sign or entry shows up as a large error).
    fn identity_1d<T: Transform>() {
        let (a, m) = (T::A, T::M);
        let d: Vec<f64> = (0..a).map(|i| (i as f64 * 1.7 - 3.1).sin() * 3.0).collect();
        let g = [0.7f64, -1.3, 2.1];
        let gg: Vec<f64> = (0..a).map(|i| (0..3).map(|k| T::G[i][k] * g[k]).sum()).collect();
        let bd: Vec<f64> = (0..a).map(|i| (0..a).map(|j| T::BT[i][j] as f64 * d[j]).sum()).collect();
        for i in 0..m {
            let y: f64 = (0..a).map(|j| T::AT[i][j] as f64 * gg[j] * bd[j]).sum();
            let want: f64 = (0..3).map(|k| d[i + k] * g[k]).sum();
            assert!((y - want).abs() < 1e-9, "F({m},3) output {i}: {y} vs {want}");
        }
    }

    #[test]
    fn matrices_compute_the_correlation() {
        identity_1d::<F2>();
        identity_1d::<F4>();
        identity_1d::<F6>();
    }

    #[test]
    fn unused_entries_are_zero() {
        fn check<T: Transform>() {
            for (i, r) in T::BT.iter().enumerate() {
                for (j, &v) in r.iter().enumerate() {
                    assert!(i < T::A && j < T::A || v == 0.0);
                }
            }
            for (i, r) in T::AT.iter().enumerate() {
                for (j, &v) in r.iter().enumerate() {
                    assert!(i < T::M && j < T::A || v == 0.0);
                }
            }
        }
        check::<F2>();
        check::<F4>();
        check::<F6>();
    }
}
