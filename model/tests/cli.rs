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

/// Runs `mobilenet` with `args`, which must fail with `needle` in stderr and no panic.
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
    let i32_bias = vec![0u8; 10 * 4];
    tensors.push((
        "linear.bias".into(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::I32, vec![10], &i32_bias).unwrap(),
    ));
    let wrong_dtype = tmp("dtype.safetensors", &safetensors::serialize(tensors, None).unwrap());
    fails(
        &run_args(wrong_dtype.to_str().unwrap(), input),
        "linear.bias: dtype I32, expected one of F16, BF16, F32, F64",
    );
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

/// Runs `mobilenet` with `args`, which must succeed; returns stdout.
fn succeeds(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mobilenet")).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A one-image f32 `.npy` input at `resolution`, a smooth deterministic pattern.
fn npy_input(name: &str, resolution: usize) -> PathBuf {
    let data: Vec<f32> = (0..3 * resolution * resolution).map(|i| ((i % 97) as f32 / 48.0) - 1.0).collect();
    tmp(name, &model::npy::to_bytes(&[1, 3, resolution, resolution], &data))
}

#[test]
fn convert_to_f16_then_run_on_the_f16_file() {
    let f32_weights = fixtures().join("weights.safetensors");
    let f16_weights =
        std::env::temp_dir().join(format!("mobilenet-cli-{}-f16.safetensors", std::process::id()));
    let (w32, w16) = (f32_weights.to_str().unwrap(), f16_weights.to_str().unwrap());
    let config = ["--width", "0.25", "--resolution", "64", "--classes", "10"];
    let mut args = vec!["convert", "--weights", w32, "--precision", "f16", "--output", w16];
    args.extend(config);
    let line = succeeds(&args);
    let before = std::fs::metadata(&f32_weights).unwrap().len();
    let after = std::fs::metadata(&f16_weights).unwrap().len();
    assert!(after < before * 6 / 10, "{before} -> {after} bytes");
    let group = |n: u64| {
        let s = n.to_string();
        let mut out = String::new();
        for (i, ch) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(ch);
        }
        out
    };
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains("164 tensors (f32)")
            && line.contains("as f16")
            && line.contains(&format!("{} -> {} bytes", group(before), group(after))),
        "{line}"
    );

    let input = fixtures().join("input.npy");
    let stdout = succeeds(&run_args(w16, input.to_str().unwrap()));
    assert!(stdout.starts_with("image 0: class ") && stdout.contains("image 1: class "), "{stdout}");

    // Converting the f16 file back to f32 reads the f16 tensors.
    let back = std::env::temp_dir().join(format!("mobilenet-cli-{}-back.safetensors", std::process::id()));
    let mut args =
        vec!["convert", "--weights", w16, "--precision", "F32", "--output", back.to_str().unwrap()];
    args.extend(config);
    assert!(succeeds(&args).contains("164 tensors (f16)"));

    // The keys are validated for the configuration given.
    let mut args = vec!["convert", "--weights", w32, "--precision", "bf16", "--output", w16];
    args.extend(["--width", "0.5", "--resolution", "64", "--classes", "10"]);
    fails(&args, "first_conv.0.weight: shape [8, 3, 3, 3], expected [16, 3, 3, 3]");
}

#[test]
fn convert_rejects_an_unknown_precision_in_one_line() {
    let w = fixtures().join("weights.safetensors");
    let out = Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .args(["convert", "--weights", w.to_str().unwrap(), "--precision", "f8", "--output", "x.safetensors"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error:")
            && first.contains("unknown precision \"f8\" (expected one of f32, f16, bf16)"),
        "{stderr}"
    );
    assert!(!std::path::Path::new("x.safetensors").exists());
}

#[test]
fn run_labels_file_with_the_wrong_count_fails_naming_the_file() {
    let labels = tmp("labels-short.txt", b"alpha\nbeta\ngamma\n\n");
    let input = npy_input("labels-short.npy", 32);
    let args = [
        "run",
        "--width",
        "0.25",
        "--resolution",
        "32",
        "--classes",
        "4",
        "--kernels",
        "naive",
        "--input",
        input.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
    ];
    fails(&args, &format!("labels {}: 3 class names, but the model has 4 classes", labels.display()));
}

#[test]
fn run_prints_class_names_from_labels_or_imagenet() {
    let input = npy_input("labels.npy", 32);
    let input = input.to_str().unwrap();
    let labels = tmp("labels.txt", b"alpha\nbeta\ngamma\ndelta\n\n");
    let base = ["run", "--width", "0.25", "--resolution", "32", "--kernels", "naive", "--input", input];
    let mut args = base.to_vec();
    args.extend(["--classes", "4", "--top", "4", "--labels", labels.to_str().unwrap()]);
    let stdout = succeeds(&args);
    for (i, name) in ["alpha", "beta", "gamma", "delta"].iter().enumerate() {
        assert!(stdout.contains(&format!("class {i} ({name}): ")), "{stdout}");
    }

    // 1000 classes and no --labels: the ImageNet-1k names.
    let mut args = base.to_vec();
    args.extend(["--classes", "1000", "--top", "3"]);
    let stdout = succeeds(&args);
    let imagenet: Vec<&str> = include_str!("../data/imagenet-1k.txt").lines().collect();
    let named: Vec<(usize, &str)> = stdout
        .split(", ")
        .filter_map(|entry| {
            let rest = entry.split("class ").nth(1)?;
            let (index, rest) = rest.split_once(" (")?;
            Some((index.parse().ok()?, rest.split_once("):")?.0))
        })
        .collect();
    assert_eq!(named.len(), 3, "{stdout}");
    for (index, name) in named {
        assert_eq!(name, imagenet[index], "{stdout}");
    }

    // Other class counts without --labels: indices only.
    let mut args = base.to_vec();
    args.extend(["--classes", "4"]);
    let stdout = succeeds(&args);
    assert!(stdout.starts_with("image 0: class ") && !stdout.contains('('), "{stdout}");
}

/// Issue 17, item 9: `bench --resolution 8192 --batch 64 --kernels direct` died with SIGABRT
/// from a failed 51,539,607,552-byte allocation. It must be refused up front, in one line
/// that gives the bytes it needs and the memory available, with an exit code (no signal).
#[test]
fn bench_at_resolution_8192_batch_64_is_refused_in_one_line_not_aborted() {
    let out = Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .args(["bench", "--resolution", "8192", "--batch", "64", "--kernels", "direct", "--iters", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "killed by a signal or wrong exit: {:?}: {stderr}", out.status);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: not enough memory: ")
            && stderr.contains(" bytes (")
            && stderr.contains("available"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn convert_over_its_own_input_reports_both_sizes_and_gets_the_umask_mode() {
    let dir = std::env::temp_dir().join(format!("mobilenet-cli-{}-inplace", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let w = dir.join("w.safetensors");
    std::fs::copy(fixtures().join("weights.safetensors"), &w).unwrap();
    let before = std::fs::metadata(&w).unwrap().len();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&w, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let ws = w.to_str().unwrap();
    let line = succeeds(&[
        "convert",
        "--weights",
        ws,
        "--output",
        ws,
        "--precision",
        "bf16",
        "--width",
        "0.25",
        "--resolution",
        "64",
        "--classes",
        "10",
    ]);
    let after = std::fs::metadata(&w).unwrap().len();
    assert!(after < before * 6 / 10, "{before} -> {after}");
    assert!(
        line.contains(&format!("{} -> {} bytes", model::units::group(before), model::units::group(after))),
        "{line}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let fresh = dir.join("fresh");
        std::fs::write(&fresh, b"").unwrap();
        let umask_mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(std::fs::metadata(&w).unwrap().permissions().mode() & 0o777, umask_mode);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cost_prints_three_versions_and_the_explainer_discrepancy() {
    let args =
        ["cost", "--input", "227x227x3", "--kernel", "11", "--stride", "4", "--out", "6", "--groups", "3"];
    let out = succeeds(&args);
    for needle in [
        "standard",
        "2,178",
        "13,176,900",
        "grouped, 3 groups",
        "4,392,300",
        "depthwise-separable",
        "1/N + 1/K^2 = 1/6 + 1/121",
        "2,205,225",
    ] {
        assert!(out.contains(needle), "{needle:?} missing: {out}");
    }
    fails(&["cost", "--input", "227x227", "--kernel", "3", "--out", "6"], "HxWxC");
    fails(&["cost", "--input", "227x227x3", "--kernel", "11", "--out", "6", "--groups", "4"], "groups");
    fails(&["cost", "--input", "8x8x3", "--kernel", "11", "--out", "6"], "larger than the padded input");
}

#[test]
fn info_standard_conv_is_the_papers_conv_mobilenet() {
    let out = succeeds(&["info", "--standard-conv"]);
    assert!(out.contains("total      4,867,293,184 MACs"), "{out}");
    assert!(out.contains("29,288,104 parameters"), "{out}");
    let plain = succeeds(&["info"]);
    assert!(
        plain.contains("total        568,740,352 MACs") && plain.contains("4,221,032 parameters"),
        "{plain}"
    );
}

#[test]
fn bench_json_is_the_versioned_schema_and_int8_rates_are_gops() {
    let small = [
        "bench",
        "--width",
        "0.25",
        "--resolution",
        "32",
        "--classes",
        "10",
        "--iters",
        "2",
        "--threads",
        "1",
    ];
    let mut args = small.to_vec();
    args.extend(["--kernels", "direct", "--json"]);
    let out = succeeds(&args);
    let report: model::bench::BenchReport = serde_json::from_str(&out).unwrap();
    assert_eq!(report.schema_version, model::bench::SCHEMA_VERSION);
    assert_eq!((report.iters, report.batch, report.layers.len()), (2, 1, 28));
    assert!(report.min_ms <= report.median_ms && report.median_ms <= report.max_ms, "{out}");
    assert!(report.layers.iter().all(|l| !l.level.is_empty()), "{out}");
    let mut args = small.to_vec();
    args.extend(["--kernels", "direct", "--precision", "int8"]);
    let table = succeeds(&args);
    assert!(table.contains("GOP/s") && !table.contains("GFLOP/s") && table.contains("% peak"), "{table}");
    assert!(table.contains("end to end: "), "{table}");
}
