//! Parity with ONNX Runtime: every kernel set reproduces the logits of an ONNX graph with
//! explicit BatchNormalization nodes (tools/onnx-reference/make_fixture.py, committed output).
//!
//! Tolerance: `max |ours - ort| <= 1e-4 * max(1, max |ort|)` for every set whose algorithms
//! promise <= 1e-5 against naive; sets with looser algorithms (Winograd) get their worst
//! algorithm tolerance x 100, since the error is amplified through 28 layers.

use std::path::Path;

use model::{npy, Config, MobileNet, Weights};

fn fixture() -> (Config, Weights, npy::Array, npy::Array) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let config = Config {
        width: meta["width"].as_f64().unwrap(),
        resolution: meta["resolution"].as_u64().unwrap() as usize,
        classes: meta["classes"].as_u64().unwrap() as usize,
    };
    let weights = Weights::load(&dir.join("weights.safetensors"), &config).unwrap();
    let input = npy::read(&dir.join("input.npy")).unwrap();
    let logits = npy::read(&dir.join("logits.npy")).unwrap();
    (config, weights, input, logits)
}

#[test]
fn every_kernel_set_matches_onnx_runtime() {
    let (config, weights, input, want) = fixture();
    let batch = input.shape[0];
    let scale = want.data.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for set in kernels::kernel_sets().unwrap() {
        let worst_algo = set.tolerance().max(1e-5);
        let tol = if worst_algo <= 1e-5 { 1e-4 } else { 100.0 * worst_algo } as f32;
        for threads in [1, 2] {
            let mut net = MobileNet::new(config, &weights, &set, batch, threads).unwrap();
            let got = net.forward(&input.data).unwrap();
            let err = got.iter().zip(&want.data).map(|(g, w)| (g - w).abs()).fold(0.0f32, f32::max);
            eprintln!(
                "{:<16} threads {threads}: max |ours - onnxruntime| = {err:.3e} (scale {scale:.3})",
                set.name()
            );
            assert!(
                err <= tol * scale,
                "{} ({threads} threads): max error {err} > {}",
                set.name(),
                tol * scale
            );
        }
    }
}

#[test]
fn cli_run_writes_logits_matching_the_fixture() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let out = std::env::temp_dir().join(format!("mobilenet-fixture-{}.npy", std::process::id()));
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .args([
            "run",
            "--width",
            "0.25",
            "--resolution",
            "64",
            "--classes",
            "10",
            "--kernels",
            "naive",
            "--logits",
        ])
        .arg("--weights")
        .arg(dir.join("weights.safetensors"))
        .arg("--input")
        .arg(dir.join("input.npy"))
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let got = npy::read(&out).unwrap();
    let (_, _, _, want) = fixture();
    assert_eq!(got.shape, want.shape);
    for (g, w) in got.data.iter().zip(&want.data) {
        assert!((g - w).abs() <= 1e-4, "{g} vs {w}");
    }
    let _ = std::fs::remove_file(out);
}
