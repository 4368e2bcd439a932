//! `mobilenet tune`: measure, on this CPU, what should run each layer, and keep it as
//! wisdom for the `auto` plan.
//!
//! For every layer it times each runnable algorithm that supports the layer (naive
//! excluded) at each thread count, and for every depthwise layer led by a `direct` kernel
//! the fused block with the next pointwise layer at several band heights, against the
//! same two layers unfused. Then it times the whole tuned plan, the same without fusion,
//! and the untuned defaults end to end, and keeps the fastest.
//!
//! Statistic: candidates are timed in interleaved rounds (every candidate of a layer once
//! per round, so a slow phase of the noisy host hits all of them), each round the mean of
//! enough runs to fill [`ROUND_TARGET`]; a candidate's time is its *minimum* over rounds,
//! the least disturbed estimate of what the code can do. After the first round a
//! candidate more than [`PRUNE`] times slower than the best is dropped.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::quant::Synthetic;
use kernels::fused::FusedBlock;
use kernels::{Activation, ConvAlgorithm, Dims, LayerKind, Par, Precision, PreparedConv, ThreadPool};

use crate::config::{Config, LayerInfo};
use crate::error::{ModelError, Result};
use crate::net::MobileNet;
use crate::plan::{self, LayerChoice, Plan, AUTO};
use crate::rng::uniform_values;
use crate::stats::median;
use crate::weights::Weights;
use crate::wisdom::{self, Entry, Wisdom, WisdomKey};

/// Time one round of one candidate aims to fill.
pub const ROUND_TARGET: Duration = Duration::from_millis(2);
/// Candidates slower than this multiple of the best after round 1 are dropped.
pub const PRUNE: f64 = 1.5;
/// Band heights (output rows) tried for each fused block, besides the cache default.
pub const BAND_ROWS: &[usize] = &[1, 2, 4, 8, 16, 32];

/// What to tune for.
#[derive(Debug, Clone, Copy)]
pub struct TuneOptions {
    pub config: Config,
    pub batch: usize,
    pub threads: usize,
    pub precision: Precision,
    /// Interleaved rounds per layer (and end to end).
    pub rounds: usize,
}

/// Tunes the model and returns the wisdom entry (not yet saved). `progress` gets one line
/// per step.
pub fn tune(opts: &TuneOptions, progress: &mut dyn FnMut(&str)) -> Result<Entry> {
    crate::memory::check(&opts.config, opts.batch, opts.precision)?;
    match opts.precision {
        Precision::F32 => tune_as::<f32>(opts, progress),
        Precision::F16 => tune_as::<half::f16>(opts, progress),
        Precision::Bf16 => tune_as::<half::bf16>(opts, progress),
        Precision::Int8 => tune_as::<u8>(opts, progress),
    }
}

/// One thing to time: a label, the choice it stands for, and the run.
struct Candidate<'a> {
    label: String,
    choice: Vec<LayerChoice>,
    run: Box<dyn FnMut() -> Result<()> + 'a>,
    /// Runs per round, set by [`race`]'s calibration.
    reps: usize,
    /// Seconds per run: the minimum over rounds so far.
    best: f64,
}

impl<'a> Candidate<'a> {
    fn new(label: String, choice: Vec<LayerChoice>, run: impl FnMut() -> Result<()> + 'a) -> Self {
        Candidate { label, choice, run: Box::new(run), reps: 1, best: 0.0 }
    }
}

/// A prepared layer with its buffers.
struct Bench<E: Synthetic> {
    conv: Box<dyn PreparedConv<E>>,
    input: Vec<E>,
    output: Vec<E>,
    scratch: Vec<f32>,
    in_dims: Dims,
}

impl<E: Synthetic> Bench<E> {
    fn new(info: &LayerInfo, algorithm: &str, batch: usize, seed: u64) -> Result<Self> {
        let algo = plan::algorithm(algorithm)?;
        let in_hw = if info.kind == LayerKind::FullyConnected { (1, 1) } else { info.input_hw };
        let in_dims = Dims::new(batch, in_hw.0, in_hw.1, info.spec.in_channels);
        let out_dims = info.spec.output_dims(in_dims)?;
        let weights = uniform_values(info.spec.weights_len()?, seed);
        let bias = uniform_values(info.spec.out_channels, seed + 1);
        let act = if info.kind == LayerKind::FullyConnected { Activation::None } else { Activation::Relu6 };
        let quant = E::synthetic(&info.spec, &weights);
        let layer = kernels::Layer::new(&info.spec, &weights, Some(&bias), act);
        let conv = kernels::prepare::<E>(algo, &layer, &quant)?;
        let t = E::tensors(&quant).0;
        let input =
            uniform_values(in_dims.len()?, seed + 2).into_iter().map(|x| E::from_real(x, t)).collect();
        let scratch = vec![0.0; conv.scratch_len(in_dims)?];
        Ok(Bench { conv, input, output: vec![E::default(); out_dims.len()?], scratch, in_dims })
    }

    fn run(&mut self, par: Par<'_>) -> Result<()> {
        Ok(self.conv.run(&self.input, self.in_dims, &mut self.output, &mut self.scratch, par)?)
    }
}

/// Times `cands` in interleaved rounds (see the module docs) and returns the index of the
/// fastest.
fn race(cands: &mut [Candidate<'_>], rounds: usize) -> Result<usize> {
    // Warm up and calibrate: one run each, then enough runs to fill the round target.
    for c in cands.iter_mut() {
        (c.run)()?;
        let t = Instant::now();
        (c.run)()?;
        let once = t.elapsed().as_secs_f64().max(1e-7);
        c.reps = ((ROUND_TARGET.as_secs_f64() / once) as usize).clamp(1, 10_000);
        c.best = once;
    }
    let mut alive: Vec<usize> = (0..cands.len()).collect();
    for round in 0..rounds.max(1) {
        for &i in &alive {
            let c = &mut cands[i];
            let t = Instant::now();
            for _ in 0..c.reps {
                (c.run)()?;
            }
            c.best = c.best.min(t.elapsed().as_secs_f64() / c.reps as f64);
        }
        if round == 0 {
            let best = alive.iter().map(|&i| cands[i].best).fold(f64::INFINITY, f64::min);
            alive.retain(|&i| cands[i].best <= best * PRUNE);
        }
    }
    Ok(alive.into_iter().min_by(|&a, &b| cands[a].best.total_cmp(&cands[b].best)).unwrap_or(0))
}

/// Thread counts worth trying with a pool of `threads`: 1, powers of two, and `threads`.
fn thread_counts(threads: usize) -> Vec<usize> {
    let mut v: Vec<usize> =
        std::iter::successors(Some(1usize), |t| Some(t * 2)).take_while(|&t| t < threads).collect();
    v.push(threads);
    v.dedup();
    v
}

/// The progress sink with the time since tuning began appended to each line.
struct Progress<'p> {
    sink: &'p mut dyn FnMut(&str),
    started: Instant,
}

impl Progress<'_> {
    fn line(&mut self, text: &str) {
        (self.sink)(&format!("{text} [{:.0} s]", self.started.elapsed().as_secs_f64()));
    }
}

/// What the three races share.
struct Races<'a> {
    opts: &'a TuneOptions,
    infos: &'a [LayerInfo],
    pool: &'a ThreadPool,
    algos: &'a [&'static dyn ConvAlgorithm],
}

/// The choice per layer and its time (ms; a fused block's on its depthwise layer, 0 on its
/// pointwise layer).
#[derive(Clone)]
struct Choices {
    layers: Vec<LayerChoice>,
    layer_ms: Vec<f64>,
}

/// What the end-to-end race kept: the index of the winning plan in [`PLAN_NAMES`], its
/// layers, and every plan's time (ms).
struct EndToEnd {
    won: usize,
    layers: Vec<LayerChoice>,
    best_ms: [f64; 3],
}

/// The end-to-end race's plans, in the order they are raced ([`EndToEnd::won`] indexes it).
const PLAN_NAMES: [&str; 3] = ["tuned", "tuned without fusion", "defaults"];

impl Races<'_> {
    fn par(&self, threads: usize) -> Par<'_> {
        Par::on(self.pool, threads)
    }

    /// Race 1, each layer alone: every algorithm at every thread count.
    fn layers<E: Synthetic>(&self, progress: &mut Progress<'_>) -> Result<Choices> {
        let infos = self.infos;
        let mut choices = Choices { layers: Vec::with_capacity(infos.len()), layer_ms: Vec::new() };
        for (i, info) in infos.iter().enumerate() {
            let mut cands = Vec::new();
            for algo in self.algos.iter().filter(|a| a.name() != "naive" && a.supports(&info.spec)) {
                for t in thread_counts(self.opts.threads) {
                    let Ok(mut b) = Bench::<E>::new(info, algo.name(), self.opts.batch, i as u64) else {
                        continue;
                    };
                    let p = self.par(t);
                    let choice =
                        LayerChoice { algorithm: algo.name().into(), threads: t, fuse_band_rows: None };
                    cands.push(Candidate::new(format!("{} x{t}", algo.name()), vec![choice], move || {
                        b.run(p)
                    }));
                }
            }
            if cands.is_empty() {
                return Err(ModelError::Config(format!("no algorithm here runs {}", info.name)));
            }
            let n = cands.len();
            let w = race(&mut cands, self.opts.rounds)?;
            let runner_up = (0..n)
                .filter(|&j| j != w)
                .min_by(|&a, &b| cands[a].best.total_cmp(&cands[b].best))
                .map(|j| format!(", next {} {:.4} ms", cands[j].label, cands[j].best * 1e3))
                .unwrap_or_default();
            progress.line(&format!(
                "[{:>2}/{}] {:<6} {} {:.4} ms ({n} candidates{runner_up})",
                i + 1,
                infos.len(),
                info.name,
                cands[w].label,
                cands[w].best * 1e3,
            ));
            choices.layers.push(cands[w].choice[0].clone());
            choices.layer_ms.push(cands[w].best * 1e3);
        }
        Ok(choices)
    }

    /// Race 2, fused blocks: each depthwise layer with the pointwise layer after it, fused at
    /// several band heights against the same pair unfused; a winning block replaces the
    /// pair's choices in `choices`.
    fn fusion<E: Synthetic>(&self, choices: &mut Choices, progress: &mut Progress<'_>) -> Result<()> {
        let (infos, batch) = (self.infos, self.opts.batch);
        let fuse_dw: Vec<&str> = self.algos.iter().map(|a| a.name()).filter(|n| plan::fusable(n)).collect();
        for i in 0..infos.len() - 1 {
            let (dw, pw) = (&infos[i], &infos[i + 1]);
            if dw.kind != LayerKind::Depthwise || pw.kind != LayerKind::Pointwise {
                continue;
            }
            let layers = &choices.layers;
            let unfused_ms = choices.layer_ms[i] + choices.layer_ms[i + 1];
            // The same pair unfused, timed in these rounds: the reference. The pointwise layer
            // reads what the depthwise layer just wrote, as in the network (reading a buffer
            // of its own, cold, made the unfused pair look 10-25% slower than it is).
            let mut a = Bench::<E>::new(dw, &layers[i].algorithm, batch, i as u64)?;
            let mut b = Bench::<E>::new(pw, &layers[i + 1].algorithm, batch, i as u64 + 1)?;
            let (pa, pb) = (self.par(layers[i].threads), self.par(layers[i + 1].threads));
            let mut cands = vec![Candidate::new(
                "unfused".into(),
                vec![layers[i].clone(), layers[i + 1].clone()],
                move || {
                    a.run(pa)?;
                    Ok(b.conv.run(&a.output, b.in_dims, &mut b.output, &mut b.scratch, pb)?)
                },
            )];
            // The fastest fusable depthwise kernel alone, with the chosen pointwise kernel.
            let dw_algo = if plan::fusable(&layers[i].algorithm) {
                layers[i].algorithm.clone()
            } else {
                match fuse_dw.iter().find(|n| plan::algorithm(n).is_ok_and(|a| a.supports(&dw.spec))) {
                    Some(n) => n.to_string(),
                    None => continue,
                }
            };
            let pw_algo = &layers[i + 1].algorithm;
            let mid = Dims::new(batch, dw.output_hw.0, dw.output_hw.1, dw.spec.out_channels);
            let bands: Vec<usize> = BAND_ROWS.iter().copied().filter(|&r| r < mid.n * mid.h).collect();
            for t in thread_counts(self.opts.threads) {
                let mut rows = bands.clone();
                rows.push(FusedBlock::<E>::default_band_rows(mid, t));
                rows.sort_unstable();
                rows.dedup();
                for r in rows {
                    let a = Bench::<E>::new(dw, &dw_algo, batch, i as u64)?;
                    let b = Bench::<E>::new(pw, pw_algo, batch, i as u64 + 1)?;
                    let choice = vec![
                        LayerChoice { algorithm: dw_algo.clone(), threads: t, fuse_band_rows: Some(r) },
                        LayerChoice { algorithm: pw_algo.clone(), threads: t, fuse_band_rows: None },
                    ];
                    cands.push(Candidate::new(
                        format!("fused {r} rows x{t}"),
                        choice,
                        fused_run(a, b, r, self.par(t))?,
                    ));
                }
            }
            let w = race(&mut cands, self.opts.rounds)?;
            let reference = cands[0].best * 1e3;
            progress.line(&format!(
                "fuse {}+{}: {} {:.4} ms, unfused {reference:.4} ms (alone: {unfused_ms:.4} ms)",
                dw.name,
                pw.name,
                cands[w].label,
                cands[w].best * 1e3,
            ));
            if w != 0 {
                choices.layers[i] = cands[w].choice[0].clone();
                choices.layers[i + 1] = cands[w].choice[1].clone();
                choices.layer_ms[i] = cands[w].best * 1e3;
                choices.layer_ms[i + 1] = 0.0;
            }
        }
        Ok(())
    }

    /// Race 3, end to end: the tuned plan, the same without fusion, and the untuned
    /// defaults, interleaved; the fastest is kept. Layers timed alone do not always compose
    /// (a fused block that wins alone can lose in the network, where the unfused
    /// intermediate is still in L2 or L3), so the whole network decides.
    fn end_to_end(
        &self,
        tuned: &[LayerChoice],
        unfused: &[LayerChoice],
        progress: &mut Progress<'_>,
    ) -> Result<EndToEnd> {
        let TuneOptions { config, batch, threads, precision, rounds } = *self.opts;
        let weights = Weights::random(&config, 0)?;
        let tuned = Plan { name: AUTO.into(), source: "tune".into(), layers: tuned.to_vec() };
        let unfused = Plan { layers: unfused.to_vec(), ..tuned.clone() };
        let plans = [tuned, unfused, Plan::defaults(&config, batch, threads)?];
        let image = uniform_values(batch * 3 * config.resolution * config.resolution, 1);
        let mut nets = plans
            .iter()
            .map(|p| MobileNet::with_plan(config, &weights, p, batch, threads, precision))
            .collect::<Result<Vec<_>>>()?;
        let mut best = [f64::INFINITY; 3];
        for net in nets.iter_mut() {
            net.forward(&image)?;
        }
        for _ in 0..rounds.max(1) {
            for (net, b) in nets.iter_mut().zip(best.iter_mut()) {
                let ts: Vec<f64> = (0..10)
                    .map(|_| {
                        let t = Instant::now();
                        net.forward(&image).map(|_| t.elapsed().as_secs_f64() * 1e3)
                    })
                    .collect::<Result<_>>()?;
                *b = b.min(median(&ts).unwrap_or(f64::INFINITY));
            }
        }
        let won = (0..3).min_by(|&a, &b| best[a].total_cmp(&best[b])).unwrap_or(0);
        progress.line(&format!(
            "end to end: tuned {:.3} ms, tuned without fusion {:.3} ms, defaults {:.3} ms (best of {rounds} \
             rounds of median-of-10): keeping {}",
            best[0], best[1], best[2], PLAN_NAMES[won],
        ));
        Ok(EndToEnd { won, layers: plans[won].layers.clone(), best_ms: best })
    }
}

/// The run of one fused-block candidate: `dw` and `pw` fused at `band_rows` on `par`,
/// reading `dw`'s input and writing `pw`'s output.
fn fused_run<'a, E: Synthetic>(
    mut dw: Bench<E>,
    pw: Bench<E>,
    band_rows: usize,
    par: Par<'a>,
) -> Result<impl FnMut() -> Result<()> + 'a> {
    let scratch_len =
        FusedBlock::new(&*dw.conv, &*pw.conv, band_rows)?.scratch_len(dw.in_dims, par.threads())?;
    let mut scratch = vec![0.0f32; scratch_len];
    let (in_dims, input) = (dw.in_dims, std::mem::take(&mut dw.input));
    let (dw_conv, pw_conv, mut out) = (dw.conv, pw.conv, pw.output);
    Ok(move || {
        Ok(FusedBlock::new(&*dw_conv, &*pw_conv, band_rows)?.run(
            &input,
            in_dims,
            &mut out,
            &mut scratch,
            par,
        )?)
    })
}

fn tune_as<E: Synthetic>(opts: &TuneOptions, progress: &mut dyn FnMut(&str)) -> Result<Entry> {
    let infos = opts.config.layers()?;
    let pool = ThreadPool::new(opts.threads)?;
    let algos = kernels::algorithms()?;
    let races = Races { opts, infos: &infos, pool: &pool, algos: &algos };
    let mut progress = Progress { sink: progress, started: Instant::now() };

    let unfused = races.layers::<E>(&mut progress)?;
    let mut fused = unfused.clone();
    races.fusion::<E>(&mut fused, &mut progress)?;
    let e2e = races.end_to_end(&fused.layers, &unfused.layers, &mut progress)?;

    let TuneOptions { config, batch, threads, precision, rounds } = *opts;
    let statistic = format!(
        "per layer: minimum over {rounds} interleaved rounds of the mean of runs filling {} ms; end to end: \
         minimum over {rounds} rounds of the median of 10 forwards",
        ROUND_TARGET.as_millis()
    );
    let layer_ms = match e2e.won {
        0 => fused.layer_ms,
        1 => unfused.layer_ms,
        _ => Vec::new(),
    };
    Ok(Entry {
        key: WisdomKey::new(&config, batch, threads, precision),
        measured: crate::clock::now_utc(),
        statistic,
        tuned_ms: e2e.best_ms[e2e.won],
        default_ms: e2e.best_ms[2],
        layers: e2e.layers,
        layer_ms,
    })
}

/// `mobilenet tune`: tunes for `opts` and saves the entry in the wisdom file at
/// `wisdom_path` (default: [`wisdom::default_path`]), replacing a file of another CPU or
/// one that cannot be read (with a warning on `log`, which also gets the progress lines).
/// Returns what to print on stdout: the tuned plan and the file written.
pub fn tune_into_wisdom(
    opts: &TuneOptions,
    wisdom_path: Option<PathBuf>,
    log: &mut dyn FnMut(&str),
) -> Result<String> {
    let path = wisdom_path.or_else(wisdom::default_path).ok_or_else(|| {
        ModelError::Config("no wisdom location: pass --wisdom PATH or set DWCONV_WISDOM".into())
    })?;
    log(&format!(
        "tuning MobileNetV1 {}-{} batch {} on {} thread(s) at {} on {} (ISA ceiling {}); wisdom: {}",
        opts.config.width,
        opts.config.resolution,
        opts.batch,
        opts.threads,
        opts.precision,
        wisdom::CpuKey::this_cpu().describe(),
        kernels::isa::ceiling().map_err(kernels::KernelError::from)?,
        path.display()
    ));
    let entry = tune(opts, &mut *log)?;
    let mut file = match Wisdom::load(&path) {
        Ok(w) if w.cpu.matches_this_cpu() => w,
        Ok(w) => {
            log(&format!(
                "warning: {} held wisdom of another CPU ({}): replacing it",
                path.display(),
                w.cpu.describe()
            ));
            Wisdom::new()
        }
        Err(_) if !path.exists() => Wisdom::new(),
        Err(e) => {
            log(&format!("warning: {} is not readable wisdom ({e}): replacing it", path.display()));
            Wisdom::new()
        }
    };
    let infos = opts.config.layers()?;
    let plan = Plan { name: AUTO.into(), source: String::new(), layers: entry.layers.clone() };
    let mut out = format!(
        "tuned plan (end to end {:.3} ms; untuned defaults {:.3} ms):\n",
        entry.tuned_ms, entry.default_ms
    );
    for line in plan.describe(&infos) {
        out.push_str(&format!("  {line}\n"));
    }
    file.insert(entry);
    file.save(&path)?;
    out.push_str(&format!("wrote {}\n", path.display()));
    Ok(out)
}
