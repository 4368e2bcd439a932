//! Winograd F(m x m, 3 x 3) convolution, m = 2, 4, 6: dense and depthwise, stride 1.
//!
//! `winograd-f{m}-{isa}`: one registered algorithm per tile size and ISA. The filter
//! transform runs once at prepare (f64, rounded to f32, see [`transforms`]); `run` works in
//! bands of output tile rows (see [`body`]), each band in its own region of the caller's
//! scratch, so that `threads > 1` runs bands in parallel without allocating buffers.
//!
//! Supported: 3x3 kernels, stride 1, no dilation, any padding 0..=2 per side, `groups == 1`
//! (dense) or depthwise. Stride 2 is not Winograd's (`supports()` says no and the kernel
//! set falls back). The price is accuracy: see [`accuracy`] and `docs/winograd.md`.

pub mod accuracy;
mod body;
pub mod transforms;

mod portable;

#[cfg(all(feature = "avx2", target_arch = "x86_64"))]
mod avx2;
#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
mod avx512;
#[cfg(all(feature = "neon", target_arch = "aarch64"))]
mod neon;

pub use accuracy::{accuracy, accuracy_table, AccuracyRow};

use body::{DensePlan, DwPlan, Epilogue, Geometry};
use transforms::{filter_transform, Tile, F2, F4, F6};

use crate::algo::{bias_or_zeros, check_prepare, check_run, ConvAlgorithm, PreparedConv};
use crate::error::{KernelError, Result};
use crate::isa::{self, Isa};
use crate::spec::{Activation, ConvSpec, Dims};
use crate::tensor::AlignedBuf;

/// Relative error bounds (see [`crate::testing`]) per tile size, set from [`accuracy`]'s
/// worst measurement on the MobileNet-range and uniform data (docs/winograd.md), which is a
/// corner output of a padding-2 depthwise layer (it sees one input pixel, its tile up to
/// `a x a`): F(2) 2.7e-6, F(4) 6.7e-5, F(6) 4.4e-4, with a 7x margin. Data with a
/// dynamic range inside one tile is not bounded by these (see [`accuracy::bounded`]).
pub const TOLERANCE_F2: f64 = 2e-5;
pub const TOLERANCE_F4: f64 = 5e-4;
pub const TOLERANCE_F6: f64 = 3e-3;

/// A Winograd algorithm: output tile `m` on one ISA.
pub struct Winograd {
    name: &'static str,
    m: usize,
    isa: Isa,
}

macro_rules! winograd_algos {
    ($($id:ident = $name:literal, $m:literal, $isa:expr;)*) => {
        $(
            #[doc = concat!("`", $name, "`")]
            pub static $id: Winograd = Winograd { name: $name, m: $m, isa: $isa };
        )*
    };
}

winograd_algos! {
    WINOGRAD_F2_SCALAR = "winograd-f2-scalar", 2, Isa::Scalar;
    WINOGRAD_F4_SCALAR = "winograd-f4-scalar", 4, Isa::Scalar;
    WINOGRAD_F6_SCALAR = "winograd-f6-scalar", 6, Isa::Scalar;
}
#[cfg(all(feature = "avx2", target_arch = "x86_64"))]
winograd_algos! {
    WINOGRAD_F2_AVX2 = "winograd-f2-avx2", 2, Isa::Avx2;
    WINOGRAD_F4_AVX2 = "winograd-f4-avx2", 4, Isa::Avx2;
    WINOGRAD_F6_AVX2 = "winograd-f6-avx2", 6, Isa::Avx2;
}
#[cfg(all(feature = "avx512", target_arch = "x86_64"))]
winograd_algos! {
    WINOGRAD_F2_AVX512 = "winograd-f2-avx512", 2, Isa::Avx512;
    WINOGRAD_F4_AVX512 = "winograd-f4-avx512", 4, Isa::Avx512;
    WINOGRAD_F6_AVX512 = "winograd-f6-avx512", 6, Isa::Avx512;
}
#[cfg(all(feature = "neon", target_arch = "aarch64"))]
winograd_algos! {
    WINOGRAD_F2_NEON = "winograd-f2-neon", 2, Isa::Neon;
    WINOGRAD_F4_NEON = "winograd-f4-neon", 4, Isa::Neon;
    WINOGRAD_F6_NEON = "winograd-f6-neon", 6, Isa::Neon;
}

type DenseFn = fn(&DensePlan, &Geometry, &[f32], (usize, usize), &mut [f32], &mut [f32]);
type DwFn = fn(&DwPlan, &Geometry, &[f32], (usize, usize), &mut [f32]);

/// The monomorphic band kernels of tile `T` on `isa`, and the weight panel width they pack.
fn kernels_for<T: Tile>(isa: Isa) -> Option<(DenseFn, DwFn, usize)> {
    match isa {
        Isa::Scalar => Some((
            portable::conv3x3s1_winograd_f32_scalar::<T>,
            portable::dwconv3x3s1_winograd_f32_scalar::<T>,
            portable::NR,
        )),
        #[cfg(all(feature = "avx2", target_arch = "x86_64"))]
        Isa::Avx2 => {
            Some((avx2::conv3x3s1_winograd_f32_avx2::<T>, avx2::dwconv3x3s1_winograd_f32_avx2::<T>, avx2::NR))
        }
        #[cfg(all(feature = "avx512", target_arch = "x86_64"))]
        Isa::Avx512 => Some((
            avx512::conv3x3s1_winograd_f32_avx512::<T>,
            avx512::dwconv3x3s1_winograd_f32_avx512::<T>,
            avx512::NR,
        )),
        #[cfg(all(feature = "neon", target_arch = "aarch64"))]
        Isa::Neon => {
            Some((neon::conv3x3s1_winograd_f32_neon::<T>, neon::dwconv3x3s1_winograd_f32_neon::<T>, neon::NR))
        }
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

impl Winograd {
    /// The output tile side `m` of F(m x m, 3 x 3).
    pub fn tile(&self) -> usize {
        self.m
    }

    /// Whether `spec` is a shape Winograd F(m, 3) handles (independent of the CPU).
    pub fn supports_shape(spec: &ConvSpec) -> bool {
        let p = spec.padding;
        spec.validate().is_ok()
            && spec.kernel_h == 3
            && spec.kernel_w == 3
            && spec.stride_h == 1
            && spec.stride_w == 1
            && spec.is_undilated()
            && p.top <= 2
            && p.left <= 2
            && p.bottom <= 2
            && p.right <= 2
            && (spec.groups == 1 || spec.is_depthwise())
    }

    fn prepare_tile<T: Tile>(
        &self,
        spec: &ConvSpec,
        weights: &[f32],
        bias: &[f32],
        epi: Epilogue,
    ) -> Result<Box<dyn PreparedConv>> {
        let unsupported = || KernelError::Unsupported {
            algorithm: self.name,
            spec: format!("{spec} (ISA not compiled in)"),
        };
        let (dense_fn, dw_fn, nr) = kernels_for::<T>(self.isa).ok_or_else(unsupported)?;
        let a2 = T::A * T::A;
        let mut u64 = [0.0f32; 64];
        let plan = if spec.groups == 1 {
            let (cin, cout) = (spec.in_channels, spec.out_channels);
            let cout_pad = cout.div_ceil(nr) * nr;
            let mut u =
                AlignedBuf::zeros(crate::error::checked_product("winograd weights", &[a2, cin, cout_pad])?)?;
            for co in 0..cout {
                let (panel, lane) = (co / nr, co % nr);
                for ci in 0..cin {
                    filter_transform::<T>(&weights[(co * cin + ci) * 9..][..9], &mut u64);
                    for (p, &v) in u64[..a2].iter().enumerate() {
                        u[((p * cout_pad / nr + panel) * cin + ci) * nr + lane] = v;
                    }
                }
            }
            let mut b = bias.to_vec();
            b.resize(cout_pad, 0.0);
            Plan::Dense(DensePlan { cin, cout, cout_pad, nr, u, bias: b, epi }, dense_fn)
        } else {
            let c = spec.in_channels;
            let mut u = AlignedBuf::zeros(crate::error::checked_product("winograd weights", &[a2, c])?)?;
            for ch in 0..c {
                filter_transform::<T>(&weights[ch * 9..][..9], &mut u64);
                for (p, &v) in u64[..a2].iter().enumerate() {
                    u[p * c + ch] = v;
                }
            }
            Plan::Dw(DwPlan { c, u, bias: bias.to_vec(), epi }, dw_fn)
        };
        Ok(Box::new(WinogradPrepared { spec: *spec, name: self.name, m: T::M, a: T::A, plan }))
    }
}

impl ConvAlgorithm for Winograd {
    fn name(&self) -> &'static str {
        self.name
    }
    fn family(&self) -> &'static str {
        "winograd"
    }
    fn flavour(&self) -> &'static str {
        self.isa.name()
    }
    fn isa(&self) -> Isa {
        self.isa
    }
    fn tolerance(&self) -> f64 {
        match self.m {
            2 => TOLERANCE_F2,
            4 => TOLERANCE_F4,
            _ => TOLERANCE_F6,
        }
    }
    fn supports(&self, spec: &ConvSpec) -> bool {
        isa::available(self.isa) && Self::supports_shape(spec)
    }
    fn prepare(
        &self,
        spec: &ConvSpec,
        weights_oihw: &[f32],
        bias: Option<&[f32]>,
        activation: Activation,
    ) -> Result<Box<dyn PreparedConv>> {
        check_prepare(self, spec, weights_oihw, bias, activation)?;
        let (lo, hi) = activation.bounds();
        let epi = Epilogue { clamp: activation != Activation::None, lo, hi };
        let bias = bias_or_zeros(spec, bias);
        match self.m {
            2 => self.prepare_tile::<F2>(spec, weights_oihw, &bias, epi),
            4 => self.prepare_tile::<F4>(spec, weights_oihw, &bias, epi),
            _ => self.prepare_tile::<F6>(spec, weights_oihw, &bias, epi),
        }
    }
}

enum Plan {
    Dense(DensePlan, DenseFn),
    Dw(DwPlan, DwFn),
}

struct WinogradPrepared {
    spec: ConvSpec,
    name: &'static str,
    m: usize,
    a: usize,
    plan: Plan,
}

/// The most bands that run at once: scratch holds this many band regions, so `threads`
/// above it use this many tasks (the scratch size must not depend on `threads`).
const MAX_REGIONS: usize = 8;

/// A dense band's scratch target: its transformed input and products (`a^2 (Cin + Cout)` f32
/// per tile) should stay in the 1 MiB L2 next to a slice of the weights.
const BAND_BYTES: usize = 512 * 1024;

/// How one run is cut: geometry, tile rows per band, bands per image, scratch per band.
struct Schedule {
    geo: Geometry,
    out_dims: Dims,
    tiles_h: usize,
    band_rows: usize,
    bands_per_img: usize,
    region_len: usize,
    regions: usize,
}

impl WinogradPrepared {
    fn schedule(&self, in_dims: Dims) -> Result<Schedule> {
        let out_dims = self.spec.output_dims(in_dims)?;
        let (m, a) = (self.m, self.a);
        let tiles_h = out_dims.h.div_ceil(m);
        let tiles_w = out_dims.w.div_ceil(m);
        let geo = Geometry {
            in_h: in_dims.h,
            in_w: in_dims.w,
            out_h: out_dims.h,
            out_w: out_dims.w,
            tiles_w,
            pad_top: self.spec.padding.top,
            pad_left: self.spec.padding.left,
        };
        let (band_rows, region_len) = match &self.plan {
            Plan::Dense(p, _) => {
                let per_tile = a * a * (p.cin + p.cout_pad) * 4;
                let rows = (BAND_BYTES / per_tile / tiles_w).clamp(1, tiles_h);
                (rows, body::dense_band_scratch(a, rows * tiles_w, p.cin, p.cout_pad))
            }
            Plan::Dw(..) => (1, 0),
        };
        let bands_per_img = tiles_h.div_ceil(band_rows);
        let regions = if region_len == 0 { 0 } else { (in_dims.n * bands_per_img).min(MAX_REGIONS) };
        Ok(Schedule { geo, out_dims, tiles_h, band_rows, bands_per_img, region_len, regions })
    }
}

impl PreparedConv for WinogradPrepared {
    fn spec(&self) -> &ConvSpec {
        &self.spec
    }
    fn algorithm(&self) -> &'static str {
        self.name
    }
    fn scratch_len(&self, input: Dims) -> Result<usize> {
        let s = self.schedule(input)?;
        crate::error::checked_product("winograd scratch", &[s.regions, s.region_len])
    }
    fn run(
        &self,
        input: &[f32],
        in_dims: Dims,
        output: &mut [f32],
        scratch: &mut [f32],
        threads: usize,
    ) -> Result<()> {
        let s = self.schedule(in_dims)?;
        let need = s.regions * s.region_len;
        check_run(&self.spec, input, in_dims, output, scratch, need)?;
        let in_img = in_dims.h * in_dims.w * in_dims.c;
        let m = self.m;
        let band = |gi: usize, out: &mut [f32], scr: &mut [f32]| {
            let (img, j) = (gi / s.bands_per_img, gi % s.bands_per_img);
            let ty0 = j * s.band_rows;
            let ty1 = (ty0 + s.band_rows).min(s.tiles_h);
            let inp = &input[img * in_img..(img + 1) * in_img];
            match &self.plan {
                Plan::Dense(p, f) => f(p, &s.geo, inp, (ty0, ty1), out, scr),
                Plan::Dw(p, f) => f(p, &s.geo, inp, (ty0, ty1), out),
            }
        };
        let row_len = s.out_dims.w * s.out_dims.c;
        let out_img = s.out_dims.h * row_len;
        let total = in_dims.n * s.bands_per_img;
        // Output offset of band `gi`: bands are in order and tile the output exactly.
        let out_len = output.len();
        let start = |gi: usize| {
            if gi == total {
                return out_len;
            }
            let (img, j) = (gi / s.bands_per_img, gi % s.bands_per_img);
            img * out_img + (j * s.band_rows * m).min(s.out_dims.h) * row_len
        };
        let run_bands = |b0: usize, b1: usize, mut out: &mut [f32], scr: &mut [f32]| {
            for gi in b0..b1 {
                let (head, tail) = std::mem::take(&mut out).split_at_mut(start(gi + 1) - start(gi));
                band(gi, head, scr);
                out = tail;
            }
        };
        let groups = threads.max(1).min(total).min(if s.regions == 0 { total } else { s.regions });
        if groups <= 1 {
            run_bands(0, total, output, &mut scratch[..s.region_len]);
            return Ok(());
        }
        rayon::scope(|sc| {
            let mut out_rest: &mut [f32] = output;
            let mut scr_rest: &mut [f32] = scratch;
            for gr in 0..groups {
                let (b0, b1) = (gr * total / groups, (gr + 1) * total / groups);
                let (out_g, o) = std::mem::take(&mut out_rest).split_at_mut(start(b1) - start(b0));
                out_rest = o;
                let (scr_g, r) = std::mem::take(&mut scr_rest).split_at_mut(s.region_len);
                scr_rest = r;
                let run_bands = &run_bands;
                sc.spawn(move |_| run_bands(b0, b1, out_g, scr_g));
            }
        });
        Ok(())
    }
}
