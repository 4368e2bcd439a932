//! The bad-input table of docs/robustness.md, model and CLI half: each case ends in a
//! one-line `error: ...` and a non-zero exit, never a panic, quickly and without a large
//! allocation.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let p = std::env::temp_dir().join(format!("mobilenet-cli-{}-{name}", std::process::id()));
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Runs `mobilenet run` on the fixture configuration with `args`; returns stderr.
fn fails(args: &[&str], needle: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_mobilenet")).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    assert!(stderr.contains(needle), "{args:?}: expected {needle:?} in {stderr}");
}

fn run_args<'a>(weights: &'a str, input: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        "--width",
        "0.25",
        "--resolution",
        "64",
        "--classes",
        "10",
        "--kernels",
        "naive",
        "--weights",
        weights,
        "--input",
        input,
    ]
}

#[test]
fn bad_arguments() {
    fails(&["run", "--kernels", "warp-speed", "--input", "x.npy"], "unknown kernel set");
    fails(&["info", "--resolution", "100"], "multiple of 32");
    fails(&["info", "--width", "0"], "width multiplier");
    fails(&["info", "--classes", "0"], "classes");
    fails(
        &["bench", "--width", "0.25", "--resolution", "32", "--threads", "0", "--kernels", "naive"],
        "threads",
    );
    fails(&["bench", "--width", "0.25", "--resolution", "32", "--batch", "0", "--kernels", "naive"], "batch");
    fails(&["run", "--kernels", "naive", "--input", "/nonexistent/x.npy"], "No such file");
}

#[test]
fn bad_weights_files() {
    let input = fixtures().join("input.npy");
    let input = input.to_str().unwrap();
    let good = std::fs::read(fixtures().join("weights.safetensors")).unwrap();
    let truncated = tmp("trunc.safetensors", &good[..good.len() / 2]);
    fails(&run_args(truncated.to_str().unwrap(), input), "not a valid safetensors");
    // A header that claims 1 TiB: rejected from the 8-byte length, nothing allocated.
    let mut huge = (1u64 << 40).to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    let huge = tmp("huge.safetensors", &huge);
    fails(&run_args(huge.to_str().unwrap(), input), "not a valid safetensors");
    let garbage = tmp("garbage.safetensors", b"definitely not safetensors");
    fails(&run_args(garbage.to_str().unwrap(), input), "not a valid safetensors");
    // Wrong dtype and wrong shape, named with the key.
    let st = safetensors::SafeTensors::deserialize(&good).unwrap();
    let mut tensors: Vec<(String, safetensors::tensor::TensorView)> =
        st.tensors().into_iter().filter(|(k, _)| k != "linear.bias").collect();
    let f64_bias = vec![0u8; 10 * 8];
    tensors.push((
        "linear.bias".into(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::F64, vec![10], &f64_bias).unwrap(),
    ));
    let wrong_dtype = tmp("dtype.safetensors", &safetensors::serialize(tensors, None).unwrap());
    fails(&run_args(wrong_dtype.to_str().unwrap(), input), "linear.bias: dtype F64");
    // Weights for another configuration: the first mismatching key and both shapes.
    let args =
        ["run", "--width", "0.5", "--resolution", "64", "--classes", "10", "--kernels", "naive", "--weights"];
    let mut v: Vec<&str> = args.to_vec();
    let w = fixtures().join("weights.safetensors");
    v.extend([w.to_str().unwrap(), "--input", input]);
    fails(&v, "first_conv.0.weight: shape [8, 3, 3, 3], expected [16, 3, 3, 3]");
}

#[test]
fn bad_inputs() {
    let w = fixtures().join("weights.safetensors");
    let w = w.to_str().unwrap();
    let npy = tmp("bad.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4',");
    fails(&run_args(w, npy.to_str().unwrap()), "npy:");
    let wrong_shape = tmp("shape.npy", &model::npy::to_bytes(&[1, 3, 32, 32], &vec![0.0; 3 * 32 * 32]));
    fails(&run_args(w, wrong_shape.to_str().unwrap()), "expected [N, 3, 64, 64]");
    let image = tmp("broken.png", b"\x89PNG\r\n\x1a\nthis is not a png");
    fails(&run_args(w, image.to_str().unwrap()), "cannot decode");
}

#[test]
fn a_png_image_runs() {
    let mut img = image::RgbImage::new(50, 40);
    for (x, y, p) in img.enumerate_pixels_mut() {
        *p = image::Rgb([(x * 5) as u8, (y * 6) as u8, 128]);
    }
    let path = std::env::temp_dir().join(format!("mobilenet-cli-{}-ok.png", std::process::id()));
    img.save(&path).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .args([
            "run",
            "--width",
            "0.25",
            "--resolution",
            "32",
            "--classes",
            "3",
            "--kernels",
            "naive",
            "--top",
            "2",
            "--input",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("image 0: class "), "{stdout}");
}
