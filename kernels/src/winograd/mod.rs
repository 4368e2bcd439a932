//! Winograd F(m x m, 3 x 3) convolution, m = 2, 4, 6: dense and depthwise, stride 1.
//!
//! `winograd-f{m}-{isa}`: one registered algorithm per tile size and ISA. The filter
//! transform runs once at prepare (f64, rounded to f32, see [`transforms`]); `run` works in
//! bands of output tile rows (see [`body`]), each band in its own region of the caller's
//! scratch, so that `threads > 1` runs bands in parallel without allocating buffers.
//!
//! Supported: 3x3 kernels, stride 1, no dilation, any padding 0..=2 per side, `groups == 1`
//! (dense) or depthwise. Stride 2 is not Winograd's (`supports()` says no and the kernel
//! set falls back). The price is accuracy: see `docs/winograd.md` and the harness's `winograd_accuracy`.

mod body;
pub mod transforms;

use body::{DensePlan, DwPlan, Geometry};
use transforms::{filter_transform, Transform, F2, F4, F6};

use crate::algo::{
    bias_or_zeros, per_backend, Bind, ConvAlgorithm, Layer as AlgoLayer, PreparedConv, Run, TokenLayer,
};
use crate::cache;
use crate::error::Result;
use crate::pool::SharedOut;
use crate::simd::{Backend, Clamp, Simd, SimdOp};
use crate::spec::{ConvSpec, Dims};
use crate::tensor::AlignedBuf;

/// Relative error bounds (see [`crate::testing`]) per tile size, set from the harness's `winograd_accuracy`
/// worst measurement on the MobileNet-range and uniform data (docs/winograd.md), which is a
/// corner output of a padding-2 depthwise layer (it sees one input pixel, its tile up to
/// `a x a`): F(2) 2.7e-6, F(4) 6.7e-5, F(6) 4.4e-4, with a 7x margin. Data with a
/// dynamic range inside one tile is not bounded by these (see `winograd_accuracy::bounded` in the harness).
pub const TOLERANCE_F2: f64 = 2e-5;
pub const TOLERANCE_F4: f64 = 5e-4;
pub const TOLERANCE_F6: f64 = 3e-3;

/// The output tile sides `m` of F(m x m, 3 x 3) this crate registers, preferred first: in
/// MobileNetV1 the `winograd` set runs only the stride-1 depthwise layers, where F(2) beats
/// F(4) on every layer (dw7, AVX-512: 46 vs 85 us; docs/winograd.md); F(4) wins only on wide
/// dense layers (56x56x64: 0.59 vs 0.85 ms).
pub const TILE_SIDES: [usize; 3] = [2, 4, 6];

/// A Winograd algorithm: output tile `m` on one backend.
pub struct Winograd {
    /// `winograd-f<m>-<backend>`.
    pub name: &'static str,
    pub m: usize,
    pub backend: Backend,
}

impl Winograd {
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

    fn prepare_transform<T: Transform>(
        &self,
        spec: &ConvSpec,
        weights: &[f32],
        bias: Vec<f32>,
        clamp: Clamp,
    ) -> Result<Box<dyn PreparedConv>> {
        let shape = self.backend.shape()?;
        let a2 = T::A * T::A;
        let mut u64 = [0.0f32; 64];
        let plan = if spec.groups == 1 {
            let (cin, cout) = (spec.in_channels, spec.out_channels);
            let nr = body::gemm_tile(shape.lanes, shape.registers).1 * shape.lanes;
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
            let mut b = bias;
            b.resize(cout_pad, 0.0);
            Plan::Dense(DensePlan { cin, cout, cout_pad, nr, u, w: weights.to_vec(), bias: b, clamp })
        } else {
            let c = spec.in_channels;
            let mut u = AlignedBuf::zeros(crate::error::checked_product("winograd weights", &[a2, c])?)?;
            for ch in 0..c {
                filter_transform::<T>(&weights[ch * 9..][..9], &mut u64);
                for (p, &v) in u64[..a2].iter().enumerate() {
                    u[p * c + ch] = v;
                }
            }
            Plan::Dw(DwPlan { c, u, w: weights.to_vec(), bias, clamp })
        };
        let layer = Layer { spec: *spec, name: self.name, m: T::M, a: T::A, plan };
        self.backend.dispatch(Bind::new(layer))
    }
}

impl ConvAlgorithm for Winograd {
    per_backend!(Winograd);
    fn winograd_tile(&self) -> Option<usize> {
        Some(self.m)
    }
    fn tolerance(&self) -> f64 {
        match self.m {
            2 => TOLERANCE_F2,
            4 => TOLERANCE_F4,
            _ => TOLERANCE_F6,
        }
    }
    fn supports(&self, spec: &ConvSpec) -> bool {
        self.backend.available() && Self::supports_shape(spec)
    }
    fn prepare_checked(&self, layer: &AlgoLayer<'_>) -> Result<Box<dyn PreparedConv>> {
        let AlgoLayer { spec, weights_oihw, bias, activation } = *layer;
        let (bias, clamp) = (bias_or_zeros(spec, bias), Clamp::of(activation));
        match self.m {
            2 => self.prepare_transform::<F2>(spec, weights_oihw, bias, clamp),
            4 => self.prepare_transform::<F4>(spec, weights_oihw, bias, clamp),
            _ => self.prepare_transform::<F6>(spec, weights_oihw, bias, clamp),
        }
    }
}

enum Plan {
    Dense(DensePlan),
    Dw(DwPlan),
}

/// A layer with its filters transformed.
struct Layer {
    spec: ConvSpec,
    name: &'static str,
    m: usize,
    a: usize,
    plan: Plan,
}

/// One band of output tile rows of one image, as a [`SimdOp`].
struct Band<'a> {
    layer: &'a Layer,
    geo: &'a Geometry,
    input: &'a [f32],
    rows: (usize, usize),
    out: &'a mut [f32],
    scratch: &'a mut [f32],
}

impl SimdOp for Band<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let Band { layer, geo, input, rows, out, scratch } = self;
        macro_rules! go {
            ($t:ty) => {
                match &layer.plan {
                    Plan::Dense(p) => body::dense_band::<$t, S>(s, p, geo, input, rows, out, scratch),
                    Plan::Dw(p) => body::dw_band::<$t, S>(s, p, geo, input, rows, out),
                }
            };
        }
        // SAFETY: `Layer::run` passes one whole input image, the output rows of
        // this band and (dense) a scratch region of `dense_band_scratch` f32s.
        unsafe {
            match layer.m {
                2 => go!(F2),
                4 => go!(F4),
                _ => go!(F6),
            }
        }
    }
}

/// The most bands that run at once: scratch holds this many band regions, so `threads`
/// above it use this many tasks (the scratch size must not depend on `threads`).
const MAX_REGIONS: usize = 8;

/// A dense band's scratch target: its transformed input and products (`a^2 (Cin + Cout)` f32
/// per tile) should stay in L2 next to a slice of the weights: half of this machine's L2
/// ([`cache::Blocking::winograd_band_bytes`]; 512 KiB on a 1 MiB L2).
fn band_bytes() -> usize {
    cache::blocking().winograd_band_bytes
}

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

impl Layer {
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
            Plan::Dense(p) => {
                let per_tile = a * a * (p.cin + p.cout_pad) * 4;
                let rows = (band_bytes() / per_tile / tiles_w).clamp(1, tiles_h);
                (rows, body::dense_band_scratch(a, rows * tiles_w, p.cin, p.cout_pad))
            }
            Plan::Dw(_) => (1, 0),
        };
        let bands_per_img = tiles_h.div_ceil(band_rows);
        let regions = if region_len == 0 { 0 } else { (in_dims.n * bands_per_img).min(MAX_REGIONS) };
        Ok(Schedule { geo, out_dims, tiles_h, band_rows, bands_per_img, region_len, regions })
    }
}

impl TokenLayer for Layer {
    fn spec(&self) -> &ConvSpec {
        &self.spec
    }
    fn name(&self) -> &'static str {
        self.name
    }
    fn scratch_len(&self, input: Dims) -> Result<usize> {
        let s = self.schedule(input)?;
        crate::error::checked_product("winograd scratch", &[s.regions, s.region_len])
    }
    fn run<T: Simd>(&self, token: T, run: Run<'_, f32>) -> Result<()> {
        let Run { input, in_dims, output, scratch, par, .. } = run;
        let s = self.schedule(in_dims)?;
        let in_img = in_dims.h * in_dims.w * in_dims.c;
        let m = self.m;
        let band = |gi: usize, out: &mut [f32], scratch: &mut [f32]| {
            let (img, j) = (gi / s.bands_per_img, gi % s.bands_per_img);
            let ty0 = j * s.band_rows;
            let ty1 = (ty0 + s.band_rows).min(s.tiles_h);
            let input = &input[img * in_img..(img + 1) * in_img];
            token.vectorize(Band { layer: self, geo: &s.geo, input, rows: (ty0, ty1), out, scratch });
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
        let groups = par.threads().min(total).min(if s.regions == 0 { total } else { s.regions });
        if groups <= 1 {
            run_bands(0, total, output, &mut scratch[..s.region_len]);
            return Ok(());
        }
        let (out_base, scr_base) = (SharedOut(output.as_mut_ptr()), SharedOut(scratch.as_mut_ptr()));
        par.limit(groups).for_each(groups, |gr| {
            let (b0, b1) = (gr * total / groups, (gr + 1) * total / groups);
            // SAFETY: group `gr` owns output `[start(b0), start(b1))` (bands tile the output
            // in order) and scratch region `gr` (`groups <= regions`); `Run` holds both
            // checked, and every group runs once.
            let (out_g, scr_g) = unsafe {
                (
                    std::slice::from_raw_parts_mut(out_base.get().add(start(b0)), start(b1) - start(b0)),
                    std::slice::from_raw_parts_mut(scr_base.get().add(gr * s.region_len), s.region_len),
                )
            };
            run_bands(b0, b1, out_g, scr_g);
        });
        Ok(())
    }
}
