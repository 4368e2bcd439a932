//! MobileNetV1 assembled from a kernel set: batch norm folded, ReLU6 fused, every buffer
//! allocated at build time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use half::{bf16, f16};
use kernels::fused::FusedBlock;
use kernels::tensor::nchw_to_nhwc_par;
use kernels::{
    AlignedBuf, Dims, Isa, KernelSet, LayerKind, Par, Precision, PreparedConv, Storage, StoragePath,
    ThreadPool,
};

use crate::config::{Config, LayerInfo};
use crate::error::{ModelError, Result};
use crate::plan::{self, Plan};
use crate::weights::Weights;

/// The threads a network runs its layers on.
#[derive(Clone, Debug)]
pub enum Workers {
    /// Our pool of this many threads, whose workers spin between layers (`kernels::pool`);
    /// 1: no pool, every layer on the calling thread.
    Spin(usize),
    /// An application's rayon pool, so that its threads and ours do not fight over the same
    /// cores: each layer is one `in_place_scope` on it ([`Par::on_rayon`]), on up to the
    /// plan's threads for that layer. Call `forward` from inside the pool (`pool.install`),
    /// so that the calling thread is one of its threads.
    #[cfg(feature = "rayon")]
    Rayon(Arc<rayon::ThreadPool>),
}

impl Workers {
    /// How many threads the layers may use.
    pub fn threads(&self) -> usize {
        match self {
            Workers::Spin(t) => *t,
            #[cfg(feature = "rayon")]
            Workers::Rayon(p) => p.current_num_threads().max(1),
        }
    }

    /// Runs `f` on these workers' side: inside the rayon pool (`install`, so that the
    /// caller is one of its threads), or right here for our pool.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match self {
            Workers::Spin(_) => f(),
            #[cfg(feature = "rayon")]
            Workers::Rayon(p) => p.install(f),
        }
    }
}

/// The started pool behind a network, shared by its sessions.
#[derive(Clone)]
enum Pool {
    Serial,
    Spin(Arc<ThreadPool>),
    #[cfg(feature = "rayon")]
    Rayon(Arc<rayon::ThreadPool>),
}

impl Pool {
    fn start(workers: &Workers) -> Result<Pool> {
        Ok(match workers {
            Workers::Spin(1) => Pool::Serial,
            Workers::Spin(t) => Pool::Spin(Arc::new(ThreadPool::new(*t)?)),
            #[cfg(feature = "rayon")]
            Workers::Rayon(p) => Pool::Rayon(Arc::clone(p)),
        })
    }

    /// Where a layer that may use `threads` threads runs.
    fn par(&self, threads: usize) -> Par<'_> {
        match self {
            Pool::Serial => Par::SERIAL,
            Pool::Spin(p) => Par::on(p, threads),
            #[cfg(feature = "rayon")]
            Pool::Rayon(p) => Par::on_rayon(p, threads),
        }
    }
}

/// One prepared layer and the NHWC shapes it runs on (the whole batch).
struct Layer<E: Storage> {
    info: LayerInfo,
    conv: Box<dyn PreparedConv<E>>,
    in_dims: Dims,
    out_dims: Dims,
    /// Threads this layer runs on.
    threads: usize,
    /// Rows per band when this (depthwise) layer runs fused with the next one.
    fuse_band_rows: Option<usize>,
    /// Its quantization (`()` for the float types).
    quant: E::Quant,
}

/// What the model reports about one prepared layer.
#[derive(Debug, Clone)]
pub struct LayerRun<'a> {
    pub info: &'a LayerInfo,
    /// The algorithm that runs it (`gemm-avx512`, ...).
    pub algorithm: &'static str,
    /// Native, or widened (an f32 kernel between conversions, see
    /// `kernels::Storage::emulated`).
    pub storage: StoragePath,
    /// The instruction level its code executes at.
    pub level: Isa,
    /// Threads it runs on.
    pub threads: usize,
    /// On a depthwise layer fused with the next (pointwise) one: rows per band.
    pub fuse_band_rows: Option<usize>,
    /// Whether this layer runs inside the previous layer's fused block.
    pub in_fused_block: bool,
}

/// A ready-to-run MobileNetV1: `forward` allocates nothing.
///
/// The prepared layers (packed weights) are immutable and shared: [`MobileNet::session`]
/// gives another handle with its own activation buffers, so several threads can run one
/// prepared model at once without copying its weights.
///
/// # Precision
///
/// At [`Precision::F16`] or [`Precision::Bf16`] ([`MobileNet::with_precision`]) the
/// activations between layers are stored in that type and every layer's weights and bias are
/// rounded to it *after* batch-norm folding (folding is done in f64 on the widened file
/// values, then rounded once). Every layer accumulates in f32 and rounds each output once.
/// The input is rounded on the way in; the logits come back widened to f32.
pub struct MobileNet {
    config: Config,
    batch: usize,
    threads: usize,
    kernel_set: String,
    plan_source: String,
    precision: Precision,
    engine: Box<dyn Engine>,
    /// The logits as f32 (what `forward` returns at every precision).
    logits: AlignedBuf,
}

/// What calibration watches: `(layer index, min, max)` of each layer's output.
pub type Observer<'a> = dyn FnMut(usize, f32, f32) + 'a;

/// The network at one storage type, behind one object-safe interface (so that nothing
/// outside [`MobileNet::with_plan`] names the storage types).
trait Engine: Send {
    fn layer_runs(&self) -> Vec<LayerRun<'_>>;
    fn n_layers(&self) -> usize;
    fn session(&self) -> Result<Box<dyn Engine>>;
    /// Runs the network, writing the logits as f32 into `logits` and reporting to `watch`.
    fn forward(&mut self, input_nchw: &[f32], watch: Watch<'_, '_>, logits: &mut [f32]) -> Result<()>;
}

/// What a forward reports besides the logits: each layer's wall time (profiling), and each
/// layer's index with the range of its output's real values (calibration).
struct Watch<'a, 'o> {
    times: Option<&'a mut [Duration]>,
    observe: Option<&'a mut Observer<'o>>,
}

/// The prepared layers and the activation buffers of one storage type.
struct Net<E: Storage> {
    layers: Arc<Vec<Layer<E>>>,
    /// The model input's tensor parameters (its quantization at int8).
    input_tensor: E::Tensor,
    pool: Pool,
    input: AlignedBuf<E>,
    ping: AlignedBuf<E>,
    pong: AlignedBuf<E>,
    scratch: AlignedBuf,
    pooled: AlignedBuf<E>,
    logits: AlignedBuf<E>,
}

impl MobileNet {
    /// Builds the network for `batch` images from `weights` with the algorithms of
    /// `kernel_set`, running on `threads` threads (1: no pool at all), in f32.
    pub fn new(
        config: Config,
        weights: &Weights,
        kernel_set: &KernelSet,
        batch: usize,
        threads: usize,
    ) -> Result<Self> {
        Self::with_precision(config, weights, kernel_set, batch, threads, Precision::F32)
    }

    /// As [`new`](Self::new), with activations and weights stored at `precision` (see the
    /// type's docs).
    pub fn with_precision(
        config: Config,
        weights: &Weights,
        kernel_set: &KernelSet,
        batch: usize,
        threads: usize,
        precision: Precision,
    ) -> Result<Self> {
        check_threads(threads)?;
        let plan = Plan::from_set(kernel_set, &config, threads)?;
        Self::with_plan(config, weights, &plan, batch, threads, precision)
    }

    /// Builds the network with the per-layer choices of `plan` (algorithm, threads,
    /// fusion; see [`Plan`]) on a pool of `threads` threads whose workers stay awake
    /// between layers (`kernels::pool`).
    pub fn with_plan(
        config: Config,
        weights: &Weights,
        plan: &Plan,
        batch: usize,
        threads: usize,
        precision: Precision,
    ) -> Result<Self> {
        Self::with_workers(config, weights, plan, batch, &Workers::Spin(threads), precision)
    }

    /// As [`with_plan`](Self::with_plan), on `workers`: our spinning pool, or an
    /// application's rayon pool ([`Workers::Rayon`]).
    pub fn with_workers(
        config: Config,
        weights: &Weights,
        plan: &Plan,
        batch: usize,
        workers: &Workers,
        precision: Precision,
    ) -> Result<Self> {
        let threads = workers.threads();
        crate::memory::check(&config, batch, precision)?;
        config.validate()?;
        if batch == 0 || batch > 1 << 16 {
            return Err(ModelError::Config(format!("batch must be in 1..=65536, got {batch}")));
        }
        check_threads(threads)?;
        plan.check(&config, threads)?;
        let pool = Pool::start(workers)?;
        let n = config.layers()?.len();
        if precision != Precision::Int8 && weights.quantization().is_some() {
            return Err(ModelError::Config(format!(
                "these weights are an int8 quantized file: run them with --precision int8, not {precision}"
            )));
        }
        let floats = vec![(); n];
        // The one place that maps a precision to its storage type.
        let engine: Box<dyn Engine> = match precision {
            Precision::F32 => Box::new(Net::<f32>::new(config, weights, plan, batch, pool, &floats)?),
            Precision::F16 => Box::new(Net::<f16>::new(config, weights, plan, batch, pool, &floats)?),
            Precision::Bf16 => Box::new(Net::<bf16>::new(config, weights, plan, batch, pool, &floats)?),
            Precision::Int8 => {
                let q = weights.quantization().ok_or_else(|| {
                    ModelError::Config(
                        "--precision int8 needs quantized weights (an f32 file was given): make them with \
                         `mobilenet quantize --weights F32.safetensors --calibration CALIB --output Q.safetensors`"
                            .into(),
                    )
                })?;
                Box::new(Net::<u8>::new(config, weights, plan, batch, pool, &q.layers())?)
            }
        };
        let logits = AlignedBuf::zeros(batch * config.classes)?;
        Ok(MobileNet {
            config,
            batch,
            threads,
            kernel_set: plan.name.clone(),
            plan_source: plan.source.clone(),
            precision,
            engine,
            logits,
        })
    }

    /// Another handle on the same prepared layers (and thread pool) with its own buffers,
    /// for running the model from another thread. Allocates the buffers, shares the weights.
    pub fn session(&self) -> Result<Self> {
        let engine = self.engine.session()?;
        Ok(MobileNet {
            config: self.config,
            batch: self.batch,
            threads: self.threads,
            kernel_set: self.kernel_set.clone(),
            plan_source: self.plan_source.clone(),
            precision: self.precision,
            engine,
            logits: AlignedBuf::zeros(self.logits.len())?,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn batch(&self) -> usize {
        self.batch
    }
    pub fn threads(&self) -> usize {
        self.threads
    }
    pub fn kernel_set(&self) -> &str {
        &self.kernel_set
    }
    pub fn precision(&self) -> Precision {
        self.precision
    }
    /// Where the per-layer choices came from (a kernel set, the wisdom file, or the
    /// cache-derived defaults of `auto`).
    pub fn plan_source(&self) -> &str {
        &self.plan_source
    }

    /// The layer table with the algorithm that runs each layer.
    pub fn layers(&self) -> Vec<(&LayerInfo, &'static str)> {
        self.layer_runs().into_iter().map(|l| (l.info, l.algorithm)).collect()
    }

    /// The layer table with the algorithm, storage path and level of each layer.
    pub fn layer_runs(&self) -> Vec<LayerRun<'_>> {
        self.engine.layer_runs()
    }

    /// Runs the network on NCHW input `[batch, 3, r, r]`; returns the logits `[batch, classes]`.
    pub fn forward(&mut self, input_nchw: &[f32]) -> Result<&[f32]> {
        self.forward_inner(input_nchw, None)
    }

    /// As [`forward`](Self::forward), recording each layer's wall time into `times`
    /// (one entry per layer; the fc entry includes the global average pool; a fused
    /// block's time is on its depthwise layer, and 0 on its pointwise layer).
    pub fn forward_profiled(&mut self, input_nchw: &[f32], times: &mut [Duration]) -> Result<&[f32]> {
        let n_layers = self.engine.n_layers();
        if times.len() != n_layers {
            return Err(ModelError::Config(format!("need {n_layers} timing slots, got {}", times.len())));
        }
        self.forward_inner(input_nchw, Some(times))
    }

    /// As [`forward`](Self::forward), calling `observe(layer, min, max)` with the range of
    /// every layer's output (the real values it stands for): what calibration records. A
    /// fused block reports only its second layer.
    pub fn forward_observed(&mut self, input_nchw: &[f32], observe: &mut Observer<'_>) -> Result<&[f32]> {
        self.engine.forward(input_nchw, Watch { times: None, observe: Some(observe) }, &mut self.logits)?;
        Ok(&self.logits)
    }

    fn forward_inner(&mut self, input_nchw: &[f32], times: Option<&mut [Duration]>) -> Result<&[f32]> {
        self.engine.forward(input_nchw, Watch { times, observe: None }, &mut self.logits)?;
        Ok(&self.logits)
    }
}

impl<E: Storage> Engine for Net<E> {
    fn layer_runs(&self) -> Vec<LayerRun<'_>> {
        let layers = &self.layers;
        layers
            .iter()
            .enumerate()
            .map(|(i, l)| LayerRun {
                info: &l.info,
                algorithm: l.conv.algorithm(),
                storage: l.conv.storage(),
                level: l.conv.level(),
                threads: l.threads,
                fuse_band_rows: l.fuse_band_rows,
                in_fused_block: i > 0 && layers[i - 1].fuse_band_rows.is_some(),
            })
            .collect()
    }
    fn n_layers(&self) -> usize {
        self.layers.len()
    }
    fn session(&self) -> Result<Box<dyn Engine>> {
        Ok(Box::new(Net::session(self)?))
    }
    fn forward(&mut self, input_nchw: &[f32], watch: Watch<'_, '_>, logits: &mut [f32]) -> Result<()> {
        let fc = self.layers.last().map(|l| E::tensors(&l.quant).1).expect("a network has layers");
        let out = Net::forward(self, input_nchw, watch)?;
        for (d, &x) in logits.iter_mut().zip(out) {
            *d = x.to_real(fc);
        }
        Ok(())
    }
}

impl<E: Storage> Net<E> {
    /// Prepares every layer at storage type `E`, layer `i` with `quants[i]` (`()` for the
    /// float types).
    fn new(
        config: Config,
        weights: &Weights,
        plan: &Plan,
        batch: usize,
        pool: Pool,
        quants: &[E::Quant],
    ) -> Result<Self> {
        let infos = config.layers()?;
        if quants.len() != infos.len() {
            return Err(ModelError::Config(format!(
                "{} layers but {} sets of quantization parameters",
                infos.len(),
                quants.len()
            )));
        }
        let mut layers = Vec::with_capacity(infos.len());
        for (idx, (info, choice)) in infos.into_iter().zip(&plan.layers).enumerate() {
            let (w, b, activation) = weights.layer(idx, info.kind)?;
            let layer = kernels::Layer::new(&info.spec, &w, Some(&b), activation);
            let quant = quants[idx].clone();
            let conv = kernels::prepare::<E>(plan::algorithm(&choice.algorithm)?, &layer, &quant)?;
            let (in_hw, out_hw) = if info.kind == LayerKind::FullyConnected {
                ((1, 1), (1, 1))
            } else {
                (info.input_hw, info.output_hw)
            };
            let in_dims = Dims::new(batch, in_hw.0, in_hw.1, info.spec.in_channels);
            let out_dims = Dims::new(batch, out_hw.0, out_hw.1, info.spec.out_channels);
            let (threads, fuse_band_rows) = (choice.threads, choice.fuse_band_rows);
            layers.push(Layer { info, conv, in_dims, out_dims, threads, fuse_band_rows, quant });
        }
        let mut act_len = 0;
        let mut scratch_len = 0;
        for (i, l) in layers.iter().enumerate() {
            act_len = act_len.max(l.out_dims.len()?);
            scratch_len = scratch_len.max(l.conv.scratch_len(l.in_dims)?);
            if let Some(block) = fused_block(&layers, i)? {
                scratch_len = scratch_len.max(block.scratch_len(l.in_dims, l.threads)?);
            }
        }
        let fc = &layers[layers.len() - 1];
        // The pool sums one image's channels in the scratch before the fc layer runs.
        scratch_len = scratch_len.max(fc.in_dims.c);
        // The scratch depends on the algorithms, so it is checked here, before the allocation
        // (`memory::check` counted the activations up front).
        let scratch_bytes = (scratch_len as u64).saturating_mul(4);
        crate::memory::ensure_available(scratch_bytes, "the layers' scratch")?;
        Ok(Net {
            input_tensor: E::tensors(&layers[0].quant).0,
            pooled: AlignedBuf::zeros(fc.in_dims.len()?)?,
            logits: AlignedBuf::zeros(fc.out_dims.len()?)?,
            input: AlignedBuf::zeros(layers[0].in_dims.len()?)?,
            ping: AlignedBuf::zeros(act_len)?,
            pong: AlignedBuf::zeros(act_len)?,
            scratch: AlignedBuf::zeros(scratch_len)?,
            layers: Arc::new(layers),
            pool,
        })
    }

    fn session(&self) -> Result<Self> {
        Ok(Net {
            input_tensor: self.input_tensor,
            layers: Arc::clone(&self.layers),
            pool: self.pool.clone(),
            input: AlignedBuf::zeros(self.input.len())?,
            ping: AlignedBuf::zeros(self.ping.len())?,
            pong: AlignedBuf::zeros(self.pong.len())?,
            scratch: AlignedBuf::zeros(self.scratch.len())?,
            pooled: AlignedBuf::zeros(self.pooled.len())?,
            logits: AlignedBuf::zeros(self.logits.len())?,
        })
    }

    fn forward(&mut self, input_nchw: &[f32], watch: Watch<'_, '_>) -> Result<&[E]> {
        let Watch { mut times, mut observe } = watch;
        let first = self.layers[0].in_dims;
        let expected = first.len()?;
        if input_nchw.len() != expected {
            return Err(ModelError::Config(format!(
                "input has {} values, expected {} ([N={}, C=3, H={}, W={}])",
                input_nchw.len(),
                expected,
                first.n,
                first.h,
                first.w
            )));
        }
        let all = self.pool.par(usize::MAX);
        let t = self.input_tensor;
        nchw_to_nhwc_par(input_nchw, &mut self.input, first, all, |s, d| E::from_real_slice(s, d, t));
        let layers = &*self.layers;
        let n_layers = layers.len();
        let mut i = 0;
        while i < n_layers {
            let start = Instant::now();
            let layer = &layers[i];
            let par = self.pool.par(layer.threads);
            let out_len = layer.out_dims.len()?;
            let mut step = 1;
            if i + 1 == n_layers {
                let prev = layers[i - 1].out_dims;
                let tensors = (E::tensors(&layers[i - 1].quant).1, E::tensors(&layer.quant).0);
                let input = &self.ping[..prev.len()?];
                kernels::tensor::global_average_pool(
                    input,
                    prev,
                    &mut self.pooled,
                    &mut self.scratch,
                    tensors,
                );
                layer.conv.run(&self.pooled, layer.in_dims, &mut self.logits, &mut self.scratch, par)?;
            } else if i == 0 {
                layer.conv.run(
                    &self.input,
                    layer.in_dims,
                    &mut self.ping[..out_len],
                    &mut self.scratch,
                    par,
                )?;
            } else {
                let in_len = layer.in_dims.len()?;
                let input = &self.ping[..in_len];
                if let Some(block) = fused_block(layers, i)? {
                    let out_len = layers[i + 1].out_dims.len()?;
                    block.run(input, layer.in_dims, &mut self.pong[..out_len], &mut self.scratch, par)?;
                    step = 2;
                } else {
                    layer.conv.run(
                        input,
                        layer.in_dims,
                        &mut self.pong[..out_len],
                        &mut self.scratch,
                        par,
                    )?;
                }
                std::mem::swap(&mut self.ping, &mut self.pong);
            }
            if let Some(obs) = observe.as_deref_mut() {
                let last = i + step - 1;
                let out: &[E] = if last + 1 == n_layers {
                    &self.logits
                } else {
                    &self.ping[..layers[last].out_dims.len()?]
                };
                let t = E::tensors(&layers[last].quant).1;
                let (lo, hi) = out.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
                    let v = x.to_real(t);
                    (lo.min(v), hi.max(v))
                });
                obs(last, lo, hi);
            }
            if let Some(t) = times.as_deref_mut() {
                t[i] = start.elapsed();
                if step == 2 {
                    t[i + 1] = Duration::ZERO;
                }
            }
            i += step;
        }
        Ok(&self.logits)
    }
}

/// The fused block that layer `i` leads, if its plan fuses it with layer `i + 1`.
fn fused_block<E: Storage>(layers: &[Layer<E>], i: usize) -> Result<Option<FusedBlock<'_, E>>> {
    match (layers[i].fuse_band_rows, layers.get(i + 1)) {
        (Some(rows), Some(next)) => Ok(Some(FusedBlock::new(&*layers[i].conv, &*next.conv, rows)?)),
        _ => Ok(None),
    }
}

fn check_threads(threads: usize) -> Result<()> {
    if threads == 0 || threads > kernels::pool::MAX_THREADS {
        return Err(ModelError::Config(format!(
            "threads must be in 1..={}, got {threads}",
            kernels::pool::MAX_THREADS
        )));
    }
    Ok(())
}

/// Softmax over the last axis of `[rows, classes]` logits, computed stably.
pub fn softmax(logits: &[f32], classes: usize) -> Vec<f32> {
    let mut out = logits.to_vec();
    for row in out.chunks_exact_mut(classes.max(1)) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f64;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v as f64;
        }
        row.iter_mut().for_each(|v| *v = (*v as f64 / sum) as f32);
    }
    out
}

/// The `k` largest entries of `row` as `(index, value)`, largest first.
pub fn top_k(row: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<(usize, f32)> = row.iter().copied().enumerate().collect();
    idx.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    idx.truncate(k);
    idx
}
