//! What runs each layer: a [`Plan`] names, per layer, the algorithm, how many threads it
//! runs on, and whether a depthwise layer runs fused with the pointwise layer after it.
//!
//! A plan comes from a kernel set ([`Plan::from_set`]: the set's algorithm per layer kind,
//! every layer on every thread, nothing fused) or is the `auto` plan
//! ([`Plan::auto`], in `auto.rs`, which reads the wisdom): the measured choices of `mobilenet tune` when the wisdom file holds
//! some for this CPU and model, and otherwise defaults derived from the detected caches
//! ([`Plan::defaults`]).

use kernels::fused::FusedBlock;
use kernels::{ConvAlgorithm, Dims, KernelSet, LayerKind};
use serde::{Deserialize, Serialize};

use crate::config::{Config, LayerInfo};
use crate::error::{ModelError, Result};

/// The kernel-set name that selects [`Plan::auto`].
pub const AUTO: &str = "auto";

/// The choice for one layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerChoice {
    /// The algorithm's registry name (`gemm-avx512`, `direct-avx2`, ...).
    pub algorithm: String,
    /// Threads this layer runs on (at most the model's).
    pub threads: usize,
    /// On a depthwise layer: run it fused with the next (pointwise) layer, this many output
    /// rows per band (see `kernels::fused`).
    pub fuse_band_rows: Option<usize>,
}

/// A choice per layer of the model, in layer order (conv0, dw1, pw1, ..., fc).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The kernel set it came from, or `auto`.
    pub name: String,
    /// Where the choices came from, in words (printed by the CLI).
    pub source: String,
    pub layers: Vec<LayerChoice>,
}

impl Plan {
    /// The plan of a kernel set: its algorithm for each layer, every layer on `threads`
    /// threads, nothing fused.
    pub fn from_set(set: &KernelSet, config: &Config, threads: usize) -> Result<Plan> {
        let layers = config
            .layers()?
            .iter()
            .map(|l| LayerChoice {
                algorithm: set.choose(l.kind, &l.spec).name().to_string(),
                threads,
                fuse_band_rows: None,
            })
            .collect();
        Ok(Plan { name: set.name().to_string(), source: format!("kernel set {}", set.name()), layers })
    }

    /// The untuned `auto` plan, derived from the detected caches:
    /// - each layer runs the best-flavour `direct` set's algorithm, on every thread;
    /// - a depthwise layer is fused with its pointwise layer where the intermediate
    ///   activation would not fit in half of L2 (so unfused it makes a round trip through
    ///   L3 or memory) and the pointwise weights fit in an eighth of L2 (so re-reading them
    ///   per band is cheap), with [`FusedBlock::default_band_rows`] rows per band;
    /// - but nothing is fused where the GEMM prefetches B ([`kernels::cache::Blocking`]'s
    ///   `prefetch_b`, L2 >= 1 MiB): there the unfused pointwise layer streams the
    ///   intermediate back from L3 faster than the fused block's per-band GEMMs run. Measured
    ///   on the AMD EPYC family 25 model 17 (Zen 4, 1 MiB L2; `bench --iters 150`, 6
    ///   interleaved rounds): dw1..pw3 unfused 2.33-2.55 ms against 2.64-2.90 fused at one
    ///   thread (0.83-0.95 per round), 1.32-1.44 against 1.44-1.52 at two; end to end
    ///   0.94-0.99 per round at one thread. Before the B prefetch was turned on there the
    ///   two were level.
    pub fn defaults(config: &Config, batch: usize, threads: usize) -> Result<Plan> {
        let set = kernels::kernel_set("direct")?;
        let mut plan = Self::from_set(&set, config, threads)?;
        let caches = kernels::cache::caches();
        let infos = config.layers()?;
        let prefetch = kernels::cache::blocking().prefetch_b;
        for i in 0..infos.len().saturating_sub(1) {
            let (dw, pw) = (&infos[i], &infos[i + 1]);
            if dw.kind != LayerKind::Depthwise || pw.kind != LayerKind::Pointwise {
                continue;
            }
            let mid = Dims::new(batch, dw.output_hw.0, dw.output_hw.1, dw.spec.out_channels);
            let mid_bytes = mid.len()? * 4;
            let b_bytes = pw.spec.in_channels * pw.spec.out_channels * 4;
            if !prefetch
                && mid_bytes > caches.l2 / 2
                && b_bytes <= caches.l2 / 8
                && fusable(&plan.layers[i].algorithm)
            {
                plan.layers[i].fuse_band_rows = Some(FusedBlock::<f32>::default_band_rows(mid, threads));
            }
        }
        plan.name = AUTO.into();
        let fusion = if prefetch {
            "B prefetch on: nothing fused"
        } else {
            "no B prefetch: large intermediates fused"
        };
        plan.source = format!(
            "defaults from the detected caches (L1d {} KiB, L2 {} KiB, {fusion}; no tuned wisdom for this \
             CPU and model: run `mobilenet tune`)",
            caches.l1d / 1024,
            caches.l2 / 1024,
        );
        Ok(plan)
    }

    /// Checks the plan against the model: one choice per layer, algorithms that exist
    /// here and support their layer, thread counts in `1..=threads`, fusion only on a
    /// depthwise layer followed by a pointwise one.
    pub fn check(&self, config: &Config, threads: usize) -> Result<()> {
        let infos = config.layers()?;
        if self.layers.len() != infos.len() {
            return Err(ModelError::Config(format!(
                "plan has {} layers, the model {}",
                self.layers.len(),
                infos.len()
            )));
        }
        for (i, (c, info)) in self.layers.iter().zip(&infos).enumerate() {
            let algo = algorithm(&c.algorithm)?;
            if !algo.supports(&info.spec) {
                return Err(ModelError::Config(format!("{} cannot run {}", c.algorithm, info.name)));
            }
            if c.threads == 0 || c.threads > threads {
                return Err(ModelError::Config(format!(
                    "{} on {} threads, the model has {threads}",
                    info.name, c.threads
                )));
            }
            if let Some(rows) = c.fuse_band_rows {
                let next = infos.get(i + 1).map(|l| l.kind);
                if rows == 0
                    || info.kind != LayerKind::Depthwise
                    || next != Some(LayerKind::Pointwise)
                    || !fusable(&c.algorithm)
                {
                    return Err(ModelError::Config(format!(
                        "{} cannot run fused with the next layer ({} rows per band, {})",
                        info.name, rows, c.algorithm
                    )));
                }
            }
        }
        Ok(())
    }

    /// One line per layer: name, algorithm, threads, fusion.
    pub fn describe(&self, infos: &[LayerInfo]) -> Vec<String> {
        self.layers
            .iter()
            .zip(infos)
            .map(|(c, l)| {
                let fused = c.fuse_band_rows.map(|r| format!(", fused with the next layer ({r} rows/band)"));
                format!(
                    "{:<6} {} on {} thread(s){}",
                    l.name,
                    c.algorithm,
                    c.threads,
                    fused.unwrap_or_default()
                )
            })
            .collect()
    }
}

/// The runnable algorithm of that name.
pub fn algorithm(name: &str) -> Result<&'static dyn ConvAlgorithm> {
    kernels::algorithms()?.into_iter().find(|a| a.name() == name).ok_or_else(|| {
        ModelError::Config(format!(
            "algorithm {name:?} is not runnable here (not compiled, or above the ISA ceiling)"
        ))
    })
}

/// Whether a depthwise layer run by `algorithm` can lead a fused block: the algorithm says
/// it has a row-band path ([`kernels::ConvAlgorithm::runs_rows`]).
pub fn fusable(algorithm: &str) -> bool {
    kernels::algorithms()
        .map(|all| all.iter().any(|a| a.name() == algorithm && a.runs_rows()))
        .unwrap_or(false)
}
