//! `mobilenet`: inspect, run and benchmark MobileNetV1 with any kernel set. This file only
//! parses arguments; the work is in the library (`model::bench`, `model::report`,
//! `model::cost`, `model::setup`, `model::files`, `model::tune`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kernels::Precision;
use model::setup::{self, threads_or_all, How, PoolKind};
use model::tune::TuneOptions;
use model::{input, npy, softmax, top_k, Config, Labels, ModelError, Weights};

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

/// How `run` and `bench` build the model.
#[derive(Args)]
struct EngineArgs {
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
    /// Storage type: f32, f16 or bf16 (f32 accumulation), or int8 (a file from `quantize`;
    /// without --weights, the seeded weights quantized on a built-in synthetic calibration set).
    #[arg(long, default_value = "f32", value_parser = parse_precision)]
    precision: Precision,
    /// Threads that run the layers: `spin` (our pool, workers spin between layers) or
    /// `rayon` (a rayon pool, as an application that runs one would share it).
    #[arg(long, default_value = "spin", value_parser = PoolKind::parse)]
    pool: PoolKind,
}

impl EngineArgs {
    fn how(&self) -> How<'_> {
        How {
            kernels: &self.kernels,
            threads: threads_or_all(self.threads),
            precision: self.precision,
            wisdom: self.wisdom.as_deref(),
            pool: self.pool,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Print the per-layer table (shapes, op, params, MACs, share) and totals.
    Info {
        #[command(flatten)]
        model: ModelArgs,
        /// Count the network with each depthwise-separable block replaced by a standard 3x3
        /// convolution (the paper's Table 4 "Conv MobileNet").
        #[arg(long)]
        standard_conv: bool,
    },
    /// List the kernel sets runnable on this CPU and the algorithm behind each layer kind.
    Kernels,
    /// Params, MACs and FLOPs of one convolution, standard, grouped and depthwise-separable.
    Cost {
        /// Input as HxWxC, e.g. 227x227x3.
        #[arg(long, value_parser = model::cost::parse_shape)]
        input: (usize, usize, usize),
        /// Kernel size K (KxK).
        #[arg(long)]
        kernel: usize,
        #[arg(long, default_value_t = 1)]
        stride: usize,
        /// Output channels N.
        #[arg(long)]
        out: usize,
        /// Also count the grouped version with this many groups.
        #[arg(long)]
        groups: Option<usize>,
        /// Zero padding on each side.
        #[arg(long, default_value_t = 0)]
        padding: usize,
    },
    /// Classify an image or an `.npy` batch.
    Run {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        engine: EngineArgs,
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
    },
    /// Time every layer and the whole network (medians over --iters runs).
    Bench {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        engine: EngineArgs,
        #[arg(long, default_value_t = 50)]
        iters: usize,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Weights (safetensors); seeded random if absent. Timing does not depend on them.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Print one JSON object (schema: `model::bench::BenchReport`) instead of a table.
        #[arg(long)]
        json: bool,
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
        /// Storage type of the output: f32, f16 or bf16 (int8 files come from `quantize`).
        #[arg(long, value_parser = parse_float_precision)]
        precision: Precision,
        /// The safetensors file to write (may be --weights itself).
        #[arg(long)]
        output: PathBuf,
    },
}

fn parse_precision(s: &str) -> Result<Precision, String> {
    Precision::parse(s).map_err(|e| e.to_string())
}

/// A float precision: what `convert` writes.
fn parse_float_precision(s: &str) -> Result<Precision, String> {
    let names = Precision::FLOATS.map(|p| p.name()).join(", ");
    match Precision::parse(s) {
        Ok(p) if p.is_float() => Ok(p),
        Ok(p) => Err(format!("{p} files are written by `mobilenet quantize` (expected one of {names})")),
        Err(_) => Err(format!("unknown precision {s:?} (expected one of {names})")),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn log(line: &str) {
    eprintln!("{line}");
}

fn run(command: Command) -> Result<(), ModelError> {
    match command {
        Command::Info { model, standard_conv } => {
            let config = model.config();
            let layers = if standard_conv { config.standard_conv_layers()? } else { config.layers()? };
            print!("{}", model::report::info_table(&config, &layers, standard_conv));
        }
        Command::Kernels => print!("{}", model::report::kernels_report()?),
        Command::Cost { input, kernel, stride, out, groups, padding } => {
            let layer = model::cost::Layer { input, kernel, stride, padding, out, groups };
            print!("{}", model::cost::compare(layer)?.render());
        }
        Command::Run { model, engine, weights, input, output, logits, top, seed, labels } => {
            let config = model.config();
            config.validate()?;
            setup::check_kernels(&engine.kernels)?;
            let labels = Labels::for_run(labels.as_deref(), config.classes)?;
            let batch = input::load(&input, config.resolution)?;
            let how = engine.how();
            let w = setup::weights(weights.as_deref(), &config, how.precision, seed, how.threads, &mut log)?;
            let workers = setup::workers(&how)?;
            let mut net = setup::build(config, &w, batch.n, &how, &workers, &mut log)?;
            if how.precision != Precision::F32 {
                log(&model::report::storage_summary(&net));
            }
            let raw = workers.install(|| net.forward(&batch.data).map(<[f32]>::to_vec))?;
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
                npy::write(&path, &[batch.n, config.classes], if logits { &raw } else { &probs })?;
            }
        }
        Command::Bench { model, engine, iters, batch, weights, json } => {
            let config = model.config();
            config.validate()?;
            setup::check_kernels(&engine.kernels)?;
            let how = engine.how();
            // Before the weights: a model that cannot fit is refused before anything is built.
            model::memory::check(&config, batch, how.precision)?;
            let w = setup::weights(weights.as_deref(), &config, how.precision, 0, how.threads, &mut log)?;
            let workers = setup::workers(&how)?;
            let mut net = setup::build(config, &w, batch, &how, &workers, &mut log)?;
            let report = workers.install(|| model::bench::measure(&mut net, iters))?;
            // Measured after the timed runs, so that its heat does not disturb them.
            let report = report.with_peak(model::bench::Peak::measure(how.precision));
            if json {
                let text = serde_json::to_string(&report).map_err(|e| ModelError::Config(e.to_string()))?;
                println!("{text}");
            } else {
                print!("{}", report.table());
            }
        }
        Command::Tune { model, threads, batch, precision, rounds, wisdom } => {
            let opts = TuneOptions {
                config: model.config(),
                batch,
                threads: threads_or_all(threads),
                precision,
                rounds,
            };
            print!("{}", model::tune::tune_into_wisdom(&opts, wisdom, &mut log)?);
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
            model::files::write_atomic(&output, &bytes)?;
            let layers = config.layers()?.len();
            println!(
                "{}: int8 ({layers} layers, MinMax over {n} images), {} bytes",
                output.display(),
                bytes.len()
            );
        }
        Command::Convert { model, weights, precision, output } => {
            println!("{}", model::weights::convert(&weights, &model.config(), precision, &output)?);
        }
    }
    Ok(())
}
