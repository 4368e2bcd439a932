//! Verify mode: every algorithm runnable here against the naive oracle on every MobileNetV1
//! 1.0-224 layer, written to `results/<cpu-slug>/verify-<arch>-<isa>.md` (`aarch64-qemu/`
//! under emulation) with no timings; the name is its own, so that it never replaces the
//! harness's `<arch>-<isa>.md` timings of the same machine. This is how the NEON kernels are
//! published: cross-built for aarch64 and run under qemu-aarch64, where timings would
//! measure the emulator.
//!
//! ```sh
//! cargo run --release -p bench-harness --bin verify --target aarch64-unknown-linux-gnu
//! ```
//! Exits non-zero if any algorithm exceeds its tolerance.

use bench_harness::machine::{results_dir, results_root, Provenance};
use bench_harness::report::{write_verify, VerifyResult};
use kernels::testing::{agreement, Case};
use kernels::{Activation, Dims, LayerKind};
use model::Config;

fn main() {
    let algos = match kernels::algorithms() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let layers = Config::default().layers().expect("the default configuration is valid");
    let mut rows = Vec::new();
    for (index, info) in layers.iter().enumerate() {
        let in_hw = if info.kind == LayerKind::FullyConnected { (1, 1) } else { info.input_hw };
        let in_dims = Dims::new(1, in_hw.0, in_hw.1, info.spec.in_channels);
        let activation =
            if info.kind == LayerKind::FullyConnected { Activation::None } else { Activation::Relu6 };
        let case =
            Case::random(info.spec, in_dims, activation, index as u64).expect("layer shapes are valid");
        let (want, scale) = case.reference().expect("naive runs every valid spec");
        for algo in algos.iter().filter(|a| a.name() != "naive" && a.supports(&info.spec)) {
            let got = case.run(*algo, 1).expect("a supported spec runs");
            let a = agreement(&got, &want, &scale);
            eprintln!("{:<6} {:<20} max rel err {:.2e}", info.name, algo.name(), a.max_rel);
            rows.push(VerifyResult {
                layer: info.name.clone(),
                algorithm: algo.name().to_string(),
                max_rel: a.max_rel,
                mean_rel: a.mean_rel,
                tolerance: algo.tolerance(),
            });
        }
    }
    let mut provenance = Provenance::collect_for(
        "cargo run --profile test -p bench-harness --bin verify --target aarch64-unknown-linux-gnu --",
        "maximum and mean error against the naive oracle; no timings".into(),
    );
    if cfg!(target_arch = "aarch64") && !provenance.flags.contains("asimd") {
        // Under qemu-aarch64 user mode, /proc/cpuinfo is the x86 host's.
        provenance.cpu = format!("qemu-aarch64 user-mode emulation on {}", provenance.cpu);
        provenance.flags = "neon (emulated)".into();
    }
    match write_verify(&results_dir(), &provenance, &rows) {
        Ok(path) => eprintln!("wrote {}", path.display()),
        Err(e) => {
            eprintln!("error: cannot write results: {e}");
            std::process::exit(2);
        }
    }
    match bench_harness::index::write_index(&results_root()) {
        Ok(path) => eprintln!("wrote {}", path.display()),
        Err(e) => eprintln!("error: cannot write the results index: {e}"),
    }
    let failures = rows.iter().filter(|r| r.max_rel.is_nan() || r.max_rel > r.tolerance).count();
    if failures > 0 {
        eprintln!("{failures} checks beyond tolerance");
        std::process::exit(1);
    }
}
