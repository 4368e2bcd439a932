//! What `mobilenet info` and `mobilenet kernels` print, and the one-line storage summary of
//! `run` and `bench`: text built here so that the binary only parses arguments, and so the
//! text can be tested without a process.

use std::fmt::Write;

use kernels::cost::Cost;
use kernels::{LayerKind, Precision, StoragePath};

use crate::config::{Config, LayerInfo};
use crate::error::Result;
use crate::net::MobileNet;
use crate::units::group;
use crate::weights::Weights;

/// The per-layer table (shapes, op, params, MACs, share), the MACs per layer kind, and the
/// totals, of `layers` (the model's [`Config::layers`], or
/// [`Config::standard_conv_layers`] for `--standard-conv`).
pub fn info_table(config: &Config, layers: &[LayerInfo], standard_conv: bool) -> String {
    let total: Cost = layers.iter().map(|l| l.cost).sum();
    let share = |macs: u64| 100.0 * macs as f64 / total.macs.max(1) as f64;
    let mut s = String::new();
    let variant = if standard_conv {
        " with every depthwise-separable block as a standard 3x3 convolution (the paper's Table 4 \"Conv \
         MobileNet\")"
    } else {
        ""
    };
    let _ = writeln!(
        s,
        "MobileNetV1 {}-{} ({} classes){variant}\n",
        config.width, config.resolution, config.classes
    );
    let _ = writeln!(
        s,
        "{:<6} {:>16} {:<26} {:>16} {:>10} {:>13} {:>7}",
        "layer", "input", "op", "output", "params", "MACs", "share"
    );
    for l in layers {
        let spec = &l.spec;
        let _ = writeln!(
            s,
            "{:<6} {:>16} {:<26} {:>16} {:>10} {:>13} {:>6.2}%",
            l.name,
            format!("{}x{}x{}", l.input_hw.0, l.input_hw.1, spec.in_channels),
            l.op(),
            format!("{}x{}x{}", l.output_hw.0, l.output_hw.1, spec.out_channels),
            group(l.cost.params()),
            group(l.cost.macs),
            share(l.cost.macs)
        );
    }
    let _ = writeln!(s);
    for kind in LayerKind::ALL {
        let macs: u64 = layers.iter().filter(|l| l.kind == kind).map(|l| l.cost.macs).sum();
        if macs > 0 || !standard_conv {
            let _ = writeln!(s, "{:<10} {:>13} MACs  {:>6.2}%", kind.name(), group(macs), share(macs));
        }
    }
    let _ = writeln!(
        s,
        "total      {:>13} MACs  ({:.4} GFLOP), {} parameters (batch norm folded)",
        group(total.macs),
        total.flops as f64 / 1e9,
        group(total.params())
    );
    if standard_conv {
        let _ = writeln!(s, "(the paper's Table 4 gives 4,866M mult-adds and 29.3M parameters at 1.0-224)");
    }
    s
}

/// What `mobilenet kernels` prints: caches and blocking, the ISA ceiling, the bf16 GEMM's
/// recorded decision, the backends, the kernel sets and how each runs each precision.
pub fn kernels_report() -> Result<String> {
    let mut s = String::new();
    let caches = kernels::cache::caches();
    let b = kernels::cache::blocking();
    let _ = writeln!(s, "caches: {caches}");
    let _ = writeln!(
        s,
        "blocking: GEMM KC {} (from L1d), packed-B block {} KiB and Winograd band {} KiB (half of L2)",
        b.kc,
        b.b_block_bytes / 1024,
        b.winograd_band_bytes / 1024
    );
    let _ = writeln!(s, "ISA ceiling: {}", kernels::isa::ceiling().map_err(kernels::KernelError::from)?);
    if let Some((planned, measured)) = kernels::gemm::bf16_dot_vs_fma() {
        let _ = writeln!(
            s,
            "bf16 GEMM: plans with vdpbf16ps at {planned:.2}x the f32 FMA's FLOP rate (a recorded decision, \
             KERNELS_BF16_DOT overrides it; measured now: {measured:.2}x); {}",
            if planned >= 1.0 {
                "used for every pointwise layer"
            } else {
                "used for layers of at most 16 rows (weight-bound)"
            }
        );
    }
    if kernels::isa::available(kernels::isa::Isa::Amx) {
        let yes = |on: bool| if on { "yes" } else { "no" };
        let _ = writeln!(
            s,
            "AMX tiles (every pointwise and FC layer with K a multiple of 32, ahead of the paths above): \
             bf16 yes, int8 {}, f16 {} (AMX-FP16)",
            yes(kernels::isa::amx_int8()),
            yes(kernels::isa::amx_fp16())
        );
    }
    let _ = writeln!(s, "backends:");
    for &backend in kernels::Backend::ALL {
        let state = match backend.shape() {
            Ok(sh) => format!("runs at {} ({} f32 lanes, {} registers)", sh.level, sh.lanes, sh.registers),
            Err(e) => format!("unavailable: {e}"),
        };
        let _ = writeln!(s, "  {:<7} {state}", backend.name());
    }
    let sets = kernels::kernel_sets()?;
    let _ = writeln!(s, "kernel sets:");
    for set in &sets {
        let _ = writeln!(s, "  {set}");
    }
    let _ = writeln!(
        s,
        "  auto  per-layer algorithm, threads and fusion from `mobilenet tune`'s wisdom for this CPU, else the \
         direct set with fusion where the caches call for it"
    );
    let _ =
        writeln!(s, "precisions (per layer kind of MobileNetV1: native, or widened around the f32 kernel):");
    for set in &sets {
        let per: Vec<String> = [Precision::F16, Precision::Bf16]
            .iter()
            .map(|&p| Ok(format!("{p}: {}", precision_paths(set, p)?)))
            .collect::<Result<_>>()?;
        let _ = writeln!(s, "  {:<14} f32: native; {}", set.name(), per.join("; "));
    }
    Ok(s)
}

/// How `set` runs each layer kind of MobileNetV1 at `precision`: `kind=native|widened`,
/// found by preparing the first layer of each kind of a small model.
pub fn precision_paths(set: &kernels::KernelSet, precision: Precision) -> Result<String> {
    let config = Config { width: 0.25, resolution: 32, classes: 16 };
    let net = MobileNet::with_precision(config, &Weights::random(&config, 0)?, set, 1, 1, precision)?;
    let mut seen: Vec<(LayerKind, String)> = Vec::new();
    for l in net.layer_runs() {
        if !seen.iter().any(|(k, _)| *k == l.info.kind) {
            let level =
                if l.storage == StoragePath::Native { format!(" at {}", l.level) } else { String::new() };
            seen.push((l.info.kind, format!("{}={}{level}", l.info.kind, l.storage)));
        }
    }
    Ok(seen.into_iter().map(|(_, s)| s).collect::<Vec<_>>().join(" "))
}

/// One line on how a reduced-precision model runs: how many layers read and write the
/// storage type natively, and which are widened to f32 around an f32 kernel.
pub fn storage_summary(net: &MobileNet) -> String {
    let runs = net.layer_runs();
    let widened: Vec<String> = runs
        .iter()
        .filter(|l| l.storage != StoragePath::Native)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_tables() {
        let config = Config::default();
        let text = info_table(&config, &config.layers().unwrap(), false);
        assert!(
            text.contains("total        568,740,352 MACs") && text.contains("4,221,032 parameters"),
            "{text}"
        );
        assert!(text.contains("pointwise") && text.contains("94.86%"), "{text}");
        let text = info_table(&config, &config.standard_conv_layers().unwrap(), true);
        assert!(text.contains("4,867,293,184 MACs") && text.contains("29,288,104 parameters"), "{text}");
        assert!(
            text.contains("Conv MobileNet") && text.contains("conv13") && !text.contains("depthwise "),
            "{text}"
        );
    }

    #[test]
    fn summaries_of_a_small_model() {
        let config = Config { width: 0.25, resolution: 32, classes: 4 };
        let set = kernels::kernel_set("naive").unwrap();
        let net = MobileNet::with_precision(
            config,
            &Weights::random(&config, 0).unwrap(),
            &set,
            1,
            1,
            Precision::F16,
        )
        .unwrap();
        let line = storage_summary(&net);
        assert!(line.starts_with("precision f16: ") && line.contains("of 28 layers native"), "{line}");
        let paths = precision_paths(&set, Precision::Bf16).unwrap();
        assert_eq!(paths.split(' ').count(), 4, "{paths}");
    }
}
