//! `mobilenet`: inspect, run and benchmark MobileNetV1 with any kernel set.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use kernels::Precision;
use model::tune::{tune, TuneOptions};
use model::wisdom::{self, Wisdom};
use model::{input, npy, softmax, top_k, Config, Labels, MobileNet, ModelError, Plan, Weights};

#[derive(Parser)]
#[command(name = "mobilenet", version, about = "MobileNetV1 on hand-written CPU convolution kernels")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone, Copy)]
struct ModelArgs {
    /// Width multiplier alpha (channels = max(8, floor(c * alpha))).
    #[arg(long, default_value_t = 1.0)]
    width: f64,
    /// Input resolution: a multiple of 32, at least 32.
    #[arg(long, default_value_t = 224)]
    resolution: usize,
    /// Number of output classes.
    #[arg(long, default_value_t = 1000)]
    classes: usize,
}

impl ModelArgs {
    fn config(self) -> Config {
        Config { width: self.width, resolution: self.resolution, classes: self.classes }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Print the per-layer table (shapes, op, params, MACs, share) and totals.
    Info(ModelArgs),
    /// List the kernel sets runnable on this CPU and the algorithm behind each layer kind.
    Kernels,
    /// Classify an image or an `.npy` batch.
    Run {
        #[command(flatten)]
        model: ModelArgs,
        /// Weights saved from the PyTorch reference model (safetensors); seeded random if absent.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// An f32 `.npy` array [N,3,H,W], or a PNG/JPEG image.
        #[arg(long)]
        input: PathBuf,
        /// Write the probabilities (or logits with --logits) as an [N,classes] f32 `.npy`.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Write pre-softmax logits instead of probabilities.
        #[arg(long)]
        logits: bool,
        /// Kernel set (see `mobilenet kernels`), or `auto`: the tuned choices of `mobilenet
        /// tune` for this CPU, else defaults derived from its caches.
        #[arg(long, default_value = "auto")]
        kernels: String,
        /// Threads (default: the cores this process may use).
        #[arg(long)]
        threads: Option<usize>,
        /// The wisdom file `auto` reads (default: $DWCONV_WISDOM, else
        /// ~/.cache/dwconv/wisdom.json).
        #[arg(long)]
        wisdom: Option<PathBuf>,
        /// How many classes to print per image.
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// Seed of the random weights when --weights is absent.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Class names, one per line, as many as --classes (ImageNet-1k's are built in for
        /// 1000 classes).
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Storage type: f32, f16 or bf16 (f32 accumulation), or int8 (a file from `quantize`).
        #[arg(long, default_value = "f32", value_parser = parse_precision)]
        precision: Precision,
    },
    /// Time every layer and the whole network (medians over --iters runs).
    Bench {
        #[command(flatten)]
        model: ModelArgs,
        /// Kernel set (see `mobilenet kernels`), or `auto` (see `run`).
        #[arg(long, default_value = "auto")]
        kernels: String,
        /// Threads (default: the cores this process may use).
        #[arg(long)]
        threads: Option<usize>,
        #[arg(long, default_value_t = 50)]
        iters: usize,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Weights (safetensors); seeded random if absent. Timing does not depend on them.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Storage type: f32, f16, bf16, or int8 (a file from `quantize`; without --weights,
        /// the seeded weights quantized on a built-in synthetic calibration set).
        #[arg(long, default_value = "f32", value_parser = parse_precision)]
        precision: Precision,
        /// The wisdom file `auto` reads (see `run`).
        #[arg(long)]
        wisdom: Option<PathBuf>,
    },
    /// Measure which algorithm, thread count and fusion runs each layer fastest on this
    /// CPU, and save it in the wisdom file for `--kernels auto`.
    Tune {
        #[command(flatten)]
        model: ModelArgs,
        /// Threads (default: the cores this process may use).
        #[arg(long)]
        threads: Option<usize>,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Storage type of weights and activations: f32, f16 or bf16.
        #[arg(long, default_value = "f32", value_parser = parse_precision)]
        precision: Precision,
        /// Interleaved rounds per measurement.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// The wisdom file to update (default: $DWCONV_WISDOM, else
        /// ~/.cache/dwconv/wisdom.json).
        #[arg(long)]
        wisdom: Option<PathBuf>,
    },
    /// Quantize a model to int8: calibrate the f32 model on CALIB (MinMax ranges of every
    /// layer's output), quantize the folded weights per output channel, write an int8 file
    /// for `run` / `bench --precision int8` (format: docs/int8.md).
    Quantize {
        #[command(flatten)]
        model: ModelArgs,
        /// f32 weights (safetensors) of the reference model.
        #[arg(long)]
        weights: PathBuf,
        /// An f32 `.npy` batch [N,3,H,W], or a folder of PNG/JPEG images (preprocessed as `run` does).
        #[arg(long)]
        calibration: PathBuf,
        /// The int8 safetensors file to write.
        #[arg(long)]
        output: PathBuf,
        /// Threads (default: the cores this process may use).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Rewrite a weights file (F16, BF16, F32 or F64 tensors) with every tensor stored as
    /// --precision, under the same names.
    Convert {
        #[command(flatten)]
        model: ModelArgs,
        /// Weights (safetensors) to read; checked against the configuration.
        #[arg(long)]
        weights: PathBuf,
        /// Storage type of the output: f32, f16 or bf16.
        #[arg(long, value_parser = parse_precision)]
        precision: Precision,
        /// The safetensors file to write.
        #[arg(long)]
        output: PathBuf,
    },
}

fn parse_precision(s: &str) -> Result<Precision, String> {
    Precision::parse(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), ModelError> {
    match command {
        Command::Info(m) => info(m.config()),
        Command::Kernels => {
            let caches = kernels::cache::caches();
            let b = kernels::cache::blocking();
            println!("caches: {caches}");
            println!(
                "blocking: GEMM KC {} (from L1d), packed-B block {} KiB and Winograd band {} KiB (half of L2)",
                b.kc,
                b.b_block_bytes / 1024,
                b.winograd_band_bytes / 1024
            );
            println!("ISA ceiling: {}", kernels::isa::ceiling().map_err(kernels::KernelError::from)?);
            if let Some(r) = kernels::gemm::bf16_dot_vs_fma() {
                println!(
                    "bf16 GEMM: vdpbf16ps runs at {r:.2}x the f32 FMA's FLOP rate on this core (measured); {}",
                    if r >= 1.0 { "used for every pointwise layer" } else { "used for layers of at most 16 rows (weight-bound)" }
                );
            }
            println!("backends:");
            for &backend in kernels::Backend::ALL {
                let state = match backend.shape() {
                    Ok(s) => {
                        format!("runs at {} ({} f32 lanes, {} registers)", s.level, s.lanes, s.registers)
                    }
                    Err(e) => format!("unavailable: {e}"),
                };
                println!("  {:<7} {state}", backend.name());
            }
            println!("kernel sets:");
            for set in kernels::kernel_sets()? {
                println!("  {set}");
            }
            println!(
                "  auto  per-layer algorithm, threads and fusion from `mobilenet tune`'s wisdom for this CPU, \
                 else the direct set with fusion where the caches call for it"
            );
            println!("precisions (per layer kind of MobileNetV1: native, or widened around the f32 kernel):");
            for set in kernels::kernel_sets()? {
                let per: Vec<String> = [Precision::F16, Precision::Bf16]
                    .iter()
                    .map(|&p| Ok(format!("{p}: {}", precision_paths(&set, p)?)))
                    .collect::<Result<_, ModelError>>()?;
                println!("  {:<14} f32: native; {}", set.name(), per.join("; "));
            }
            Ok(())
        }
        Command::Run {
            model,
            weights,
            input,
            output,
            logits,
            kernels,
            threads,
            wisdom,
            top,
            seed,
            labels,
            precision,
        } => {
            let config = model.config();
            config.validate()?;
            check_kernels(&kernels)?;
            let labels = Labels::for_run(labels.as_deref(), config.classes)?;
            let batch = input::load(&input, config.resolution)?;
            let w = match weights {
                Some(p) => model::quant::load(&p, &config)?,
                None if precision == Precision::Int8 => {
                    eprintln!("no --weights: the seeded weights, quantized on 8 synthetic calibration images");
                    model::quant::seeded(&config, seed, 8, threads_or_all(threads))?
                }
                None => Weights::random(&config, seed)?,
            };
            let how = How {
                kernels: &kernels,
                threads: threads_or_all(threads),
                precision,
                wisdom: wisdom.as_deref(),
            };
            let mut net = build(config, &w, batch.n, &how)?;
            if precision != Precision::F32 {
                eprintln!("{}", storage_summary(&net));
            }
            let raw = net.forward(&batch.data)?.to_vec();
            let probs = softmax(&raw, config.classes);
            for (i, row) in probs.chunks_exact(config.classes).enumerate() {
                let best: Vec<String> = top_k(row, top)
                    .iter()
                    .map(|&(c, p)| match labels.as_ref().and_then(|l| l.name(c)) {
                        Some(name) => format!("class {c} ({name}): {p:.4}"),
                        None => format!("class {c}: {p:.4}"),
                    })
                    .collect();
                println!("image {i}: {}", best.join(", "));
            }
            if let Some(path) = output {
                let data = if logits { &raw } else { &probs };
                npy::write(&path, &[batch.n, config.classes], data)?;
            }
            Ok(())
        }
        Command::Bench { model, kernels, threads, iters, batch, weights, json, precision, wisdom } => {
            let config = model.config();
            config.validate()?;
            let w = match weights {
                Some(p) => model::quant::load(&p, &config)?,
                None if precision == Precision::Int8 => {
                    eprintln!("no --weights: the seeded weights, quantized on 8 synthetic calibration images");
                    model::quant::seeded(&config, 0, 8, threads_or_all(threads))?
                }
                None => Weights::random(&config, 0)?,
            };
            let how = How {
                kernels: &kernels,
                threads: threads_or_all(threads),
                precision,
                wisdom: wisdom.as_deref(),
            };
            bench(config, &w, &how, iters.max(1), batch, json)
        }
        Command::Tune { model, threads, batch, precision, rounds, wisdom } => {
            let opts = TuneOptions {
                config: model.config(),
                batch,
                threads: threads_or_all(threads),
                precision,
                rounds,
            };
            tune_command(&opts, wisdom)
        }
        Command::Quantize { model, weights, calibration, output, threads } => {
            let config = model.config();
            let w = Weights::load(&weights, &config)?;
            let (n, images) = model::quant::load_calibration(&calibration, config.resolution)?;
            let q = model::quant::quantize(&config, &w, &images, n, threads_or_all(threads), &mut |i, n| {
                eprint!("\rcalibrating: {i}/{n} images");
                if i == n {
                    eprintln!();
                }
            })?;
            let bytes = model::quant::to_safetensors(&q, &config)?;
            std::fs::write(&output, &bytes).map_err(model::error::io_err(&output))?;
            println!("{}: int8 ({} layers, MinMax over {n} images), {} bytes", output.display(), config.layers()?.len(), bytes.len());
            Ok(())
        }
        Command::Convert { model, weights, precision, output } => {
            let w = Weights::load(&weights, &model.config())?;
            w.save_as(&output, precision)?;
            let size = |p: &PathBuf| {
                std::fs::metadata(p)
                    .map(|m| m.len())
                    .map_err(|source| ModelError::Io { path: p.display().to_string(), source })
            };
            println!(
                "{}: {} -> {} as {precision}: {} -> {} bytes",
                weights.display(),
                w.summary(),
                output.display(),
                group(size(&weights)?),
                group(size(&output)?)
            );
            Ok(())
        }
    }
}

/// How `set` runs each layer kind of MobileNetV1 at `precision`: `kind=native|widened`,
/// found by preparing the first layer of each kind of a small model.
fn precision_paths(set: &kernels::KernelSet, precision: Precision) -> Result<String, ModelError> {
    let config = Config { width: 0.25, resolution: 32, classes: 16 };
    let net = MobileNet::with_precision(config, &Weights::random(&config, 0)?, set, 1, 1, precision)?;
    let mut seen = Vec::new();
    for l in net.layer_runs() {
        if !seen.iter().any(|(k, _)| *k == l.info.kind) {
            let level = if l.storage == kernels::StoragePath::Native { format!(" at {}", l.level) } else { String::new() };
            seen.push((l.info.kind, format!("{}={}{level}", l.info.kind, l.storage)));
        }
    }
    Ok(seen.into_iter().map(|(_, s)| s).collect::<Vec<_>>().join(" "))
}

fn info(config: Config) -> Result<(), ModelError> {
    let layers = config.layers()?;
    let total: kernels::cost::Cost = layers.iter().map(|l| l.cost).sum();
    println!("MobileNetV1 {}-{} ({} classes)\n", config.width, config.resolution, config.classes);
    println!(
        "{:<6} {:>16} {:<26} {:>16} {:>10} {:>13} {:>7}",
        "layer", "input", "op", "output", "params", "MACs", "share"
    );
    for l in &layers {
        let s = &l.spec;
        println!(
            "{:<6} {:>16} {:<26} {:>16} {:>10} {:>13} {:>6.2}%",
            l.name,
            format!("{}x{}x{}", l.input_hw.0, l.input_hw.1, s.in_channels),
            l.op(),
            format!("{}x{}x{}", l.output_hw.0, l.output_hw.1, s.out_channels),
            group(l.cost.params()),
            group(l.cost.macs),
            100.0 * l.cost.macs as f64 / total.macs as f64
        );
    }
    println!();
    for kind in kernels::LayerKind::ALL {
        let macs: u64 = layers.iter().filter(|l| l.kind == kind).map(|l| l.cost.macs).sum();
        println!(
            "{:<10} {:>13} MACs  {:>6.2}%",
            kind.name(),
            group(macs),
            100.0 * macs as f64 / total.macs as f64
        );
    }
    println!(
        "total      {:>13} MACs  ({:.4} GFLOP), {} parameters (batch norm folded)",
        group(total.macs),
        total.flops as f64 / 1e9,
        group(total.params())
    );
    Ok(())
}

/// How to build the model: kernel set (or `auto`), threads, precision, wisdom file.
struct How<'a> {
    kernels: &'a str,
    threads: usize,
    precision: Precision,
    wisdom: Option<&'a std::path::Path>,
}

/// `--threads`, defaulting to the cores this process may use (as ONNX Runtime does).
fn threads_or_all(threads: Option<usize>) -> usize {
    threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Fails early, before any file is read, on a kernel set that does not exist here; the
/// error lists the ones that do, `auto` included.
fn check_kernels(name: &str) -> Result<(), ModelError> {
    if name == model::plan::AUTO {
        return Ok(());
    }
    match kernels::kernel_set(name) {
        Ok(_) => Ok(()),
        Err(kernels::KernelError::UnknownKernelSet { name, mut available }) => {
            available.insert(0, model::plan::AUTO.to_string());
            Err(kernels::KernelError::UnknownKernelSet { name, available }.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// The model for `how`; for `auto`, says on stderr where its choices came from.
fn build(config: Config, weights: &Weights, batch: usize, how: &How<'_>) -> Result<MobileNet, ModelError> {
    check_kernels(how.kernels)?;
    let plan = if how.kernels == model::plan::AUTO {
        let plan =
            Plan::auto(&config, batch, how.threads, how.precision, how.wisdom, &mut |w| eprintln!("{w}"))?;
        eprintln!("auto: {}", plan.source);
        plan
    } else {
        Plan::from_set(&kernels::kernel_set(how.kernels)?, &config, how.threads)?
    };
    MobileNet::with_plan(config, weights, &plan, batch, how.threads, how.precision)
}

fn tune_command(opts: &TuneOptions, wisdom_path: Option<PathBuf>) -> Result<(), ModelError> {
    let path = wisdom_path.or_else(wisdom::default_path).ok_or_else(|| {
        ModelError::Config("no wisdom location: pass --wisdom PATH or set DWCONV_WISDOM".into())
    })?;
    eprintln!(
        "tuning MobileNetV1 {}-{} batch {} on {} thread(s) at {} on {} (ISA ceiling {}); wisdom: {}",
        opts.config.width,
        opts.config.resolution,
        opts.batch,
        opts.threads,
        opts.precision,
        wisdom::CpuKey::this_cpu().describe(),
        kernels::isa::ceiling().map_err(kernels::KernelError::from)?,
        path.display()
    );
    let entry = tune(opts, &mut |line| eprintln!("{line}"))?;
    let mut file = match Wisdom::load(&path) {
        Ok(w) if w.cpu.matches_this_cpu() => w,
        Ok(w) => {
            eprintln!(
                "warning: {} held wisdom of another CPU ({}): replacing it",
                path.display(),
                w.cpu.describe()
            );
            Wisdom::new()
        }
        Err(_) if !path.exists() => Wisdom::new(),
        Err(e) => {
            eprintln!("warning: {} is not readable wisdom ({e}): replacing it", path.display());
            Wisdom::new()
        }
    };
    let infos = opts.config.layers()?;
    let plan = Plan { name: "auto".into(), source: String::new(), layers: entry.layers.clone() };
    println!(
        "tuned plan (end to end {:.3} ms; untuned defaults {:.3} ms):",
        entry.tuned_ms, entry.default_ms
    );
    for line in plan.describe(&infos) {
        println!("  {line}");
    }
    file.insert(entry);
    file.save(&path)?;
    println!("wrote {}", path.display());
    Ok(())
}

/// One line on how a reduced-precision model runs: how many layers read and write the
/// storage type natively, and which are widened to f32 around an f32 kernel.
fn storage_summary(net: &MobileNet) -> String {
    let runs = net.layer_runs();
    let widened: Vec<String> = runs
        .iter()
        .filter(|l| l.storage != kernels::StoragePath::Native)
        .map(|l| format!("{} ({})", l.info.name, l.algorithm))
        .collect();
    format!(
        "precision {}: {} of {} layers native, widened: {}",
        net.precision(),
        runs.len() - widened.len(),
        runs.len(),
        if widened.is_empty() { "none".to_string() } else { widened.join(", ") }
    )
}

fn bench(
    config: Config,
    weights: &Weights,
    how: &How<'_>,
    iters: usize,
    batch: usize,
    json: bool,
) -> Result<(), ModelError> {
    let (threads, precision) = (how.threads, how.precision);
    let mut net = build(config, weights, batch, how)?;
    let input = vec![0.5f32; batch * 3 * config.resolution * config.resolution];
    let n_layers = config.layers()?.len();
    let mut times = vec![Duration::ZERO; n_layers];
    let mut per_layer: Vec<Vec<f64>> = vec![Vec::with_capacity(iters); n_layers];
    let mut totals = Vec::with_capacity(iters);
    for _ in 0..3.min(iters) {
        net.forward(&input)?;
    }
    for _ in 0..iters {
        let start = Instant::now();
        net.forward_profiled(&input, &mut times)?;
        totals.push(start.elapsed().as_secs_f64() * 1e3);
        for (acc, t) in per_layer.iter_mut().zip(&times) {
            acc.push(t.as_secs_f64() * 1e3);
        }
    }
    let median_total = median(&mut totals);
    let runs = net.layer_runs();
    let rows: Vec<(&model::LayerRun, f64, f64)> = runs
        .iter()
        .zip(per_layer.iter_mut())
        .map(|(l, ts)| {
            let ms = median(ts);
            let gflops = l.info.cost.flops as f64 * batch as f64 / (ms * 1e-3) / 1e9;
            (l, ms, gflops)
        })
        .collect();
    if json {
        let layers_json: Vec<serde_json::Value> = rows
            .iter()
            .map(|(l, ms, gf)| {
                serde_json::json!({"name": l.info.name, "algorithm": l.algorithm, "storage": l.storage.name(),
                    "threads": l.threads, "fused_band_rows": l.fuse_band_rows, "in_fused_block": l.in_fused_block,
                    "median_ms": ms, "gflops": gf})
            })
            .collect();
        let obj = serde_json::json!({
            "kernels": net.kernel_set(), "plan": net.plan_source(), "precision": precision.name(),
            "threads": threads, "iters": iters, "batch": batch, "median_ms": median_total, "layers": layers_json,
        });
        println!("{obj}");
    } else {
        println!(
            "kernel set {} ({}), precision {precision}, {} thread(s), batch {}, {} iterations (medians)\n",
            net.kernel_set(),
            net.plan_source(),
            threads,
            batch,
            iters
        );
        println!(
            "{:<6} {:<16} {:<8} {:>7} {:>10} {:>9}  notes",
            "layer", "algorithm", "storage", "threads", "ms", "GFLOP/s"
        );
        for (l, ms, gf) in &rows {
            let note = match (l.fuse_band_rows, l.in_fused_block) {
                (Some(r), _) => format!("fused with the next layer, {r} rows/band: time of both"),
                (None, true) => "in the previous layer's fused block".to_string(),
                _ => String::new(),
            };
            let (name, algo, storage, t) = (&l.info.name, l.algorithm, l.storage, l.threads);
            if l.in_fused_block {
                println!("{name:<6} {algo:<16} {storage:<8} {t:>7} {:>10} {:>9}  {note}", "-", "-");
            } else {
                println!("{name:<6} {algo:<16} {storage:<8} {t:>7} {ms:>10.4} {gf:>9.2}  {note}");
            }
        }
        let flops = config.total_cost()?.flops as f64 * batch as f64;
        println!(
            "\nend to end: {median_total:.3} ms median ({:.2} GFLOP/s)",
            flops / (median_total * 1e-3) / 1e9
        );
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// 1234567 -> "1,234,567".
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
