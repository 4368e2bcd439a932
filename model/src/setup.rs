//! What the front ends share between "the user named a kernel set, threads, a precision and
//! maybe a weights file" and a built [`MobileNet`]: the checks that fail early (before any
//! file is read), the seeded weights when no file is given, and the `auto` plan's report.

use std::path::Path;

use kernels::{KernelError, Precision};

use crate::config::Config;
use crate::error::Result;
use crate::net::{MobileNet, Workers};
use crate::plan::{Plan, AUTO};
use crate::weights::Weights;

/// How to build the model: kernel set (or `auto`), threads, precision, wisdom file, pool.
#[derive(Debug, Clone, Copy)]
pub struct How<'a> {
    pub kernels: &'a str,
    pub threads: usize,
    pub precision: Precision,
    /// The wisdom file `auto` reads (`None`: the default location).
    pub wisdom: Option<&'a Path>,
    pub pool: PoolKind,
}

/// Which threads run the layers (`--pool`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolKind {
    /// Our pool, whose workers spin between layers (the default: the faster one here).
    #[default]
    Spin,
    /// A rayon pool of `threads` threads, as an application that already runs one would
    /// share it ([`Workers::Rayon`]).
    Rayon,
}

impl PoolKind {
    pub fn parse(s: &str) -> std::result::Result<PoolKind, String> {
        match s {
            "spin" => Ok(PoolKind::Spin),
            "rayon" if cfg!(feature = "rayon") => Ok(PoolKind::Rayon),
            "rayon" => {
                Err("this build has no rayon support (cargo feature `rayon` of the model crate)".into())
            }
            _ => Err(format!("unknown pool {s:?}: choose spin or rayon")),
        }
    }
}

/// The threads for `how`: our pool's size, or a new rayon pool of `how.threads` threads.
pub fn workers(how: &How<'_>) -> Result<Workers> {
    match how.pool {
        PoolKind::Spin => Ok(Workers::Spin(how.threads)),
        #[cfg(feature = "rayon")]
        PoolKind::Rayon => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(how.threads)
                .thread_name(|i| format!("rayon-app-{i}"))
                .build()
                .map_err(|e| {
                    crate::ModelError::Config(format!(
                        "cannot start a rayon pool of {} threads: {e}",
                        how.threads
                    ))
                })?;
            Ok(Workers::Rayon(std::sync::Arc::new(pool)))
        }
        #[cfg(not(feature = "rayon"))]
        PoolKind::Rayon => Err(crate::ModelError::Config("this build has no rayon support".into())),
    }
}

/// `--threads`, defaulting to the cores this process may use (as ONNX Runtime does).
pub fn threads_or_all(threads: Option<usize>) -> usize {
    threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Fails early, before any file is read, on a kernel set that does not exist here; the
/// error lists the ones that do, `auto` included.
pub fn check_kernels(name: &str) -> Result<()> {
    if name == AUTO {
        return Ok(());
    }
    match kernels::kernel_set(name) {
        Ok(_) => Ok(()),
        Err(KernelError::UnknownKernelSet { name, mut available }) => {
            available.insert(0, AUTO.to_string());
            Err(KernelError::UnknownKernelSet { name, available }.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// The weights of `path`, f32 or int8 (a file from `quantize`); without a file, the
/// weights seeded with `seed`, quantized on 8 synthetic calibration images at int8 (said
/// on `log`).
pub fn weights(
    path: Option<&Path>,
    config: &Config,
    precision: Precision,
    seed: u64,
    threads: usize,
    log: &mut dyn FnMut(&str),
) -> Result<Weights> {
    match path {
        Some(p) => crate::quant::load(p, config),
        None if precision == Precision::Int8 => {
            log("no --weights: the seeded weights, quantized on 8 synthetic calibration images");
            crate::quant::seeded(config, seed, 8, threads)
        }
        None => Weights::random(config, seed),
    }
}

/// The model for `how`; for `auto`, says on `log` where its choices came from (and any
/// warning about the wisdom file).
pub fn build(
    config: Config,
    weights: &Weights,
    batch: usize,
    how: &How<'_>,
    workers: &Workers,
    log: &mut dyn FnMut(&str),
) -> Result<MobileNet> {
    check_kernels(how.kernels)?;
    let plan = if how.kernels == AUTO {
        let plan = Plan::auto(&config, batch, how.threads, how.precision, how.wisdom, &mut *log)?;
        log(&format!("auto: {}", plan.source));
        plan
    } else {
        Plan::from_set(&kernels::kernel_set(how.kernels)?, &config, how.threads)?
    };
    MobileNet::with_workers(config, weights, &plan, batch, workers, how.precision)
}
