//! Two processes of the same binary on the same machine compute the same bits: no path is
//! chosen from a timing (the bf16 GEMM's `vdpbf16ps`-or-f32-panels choice is a recorded
//! decision, `kernels/src/gemm/avx512_bf16.rs`), and the kernels are deterministic at a
//! given thread count.

use std::path::PathBuf;
use std::process::Command;

fn logits(args: &[&str], out: &PathBuf) -> Vec<u8> {
    let status = Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .args([
            "run",
            "--width",
            "0.25",
            "--resolution",
            "64",
            "--classes",
            "10",
            "--logits",
            "--kernels",
            "direct",
        ])
        .args(["--input", "tests/fixtures/input.npy", "--output"])
        .arg(out)
        .args(args)
        .status()
        .expect("run mobilenet");
    assert!(status.success(), "mobilenet run {args:?} failed");
    std::fs::read(out).expect("read the logits")
}

#[test]
fn two_processes_compute_the_same_bits_at_every_precision() {
    let dir = std::env::temp_dir().join(format!("dwconv-determinism-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for precision in ["f32", "f16", "bf16", "int8"] {
        for threads in ["1", "2"] {
            let args = ["--precision", precision, "--threads", threads];
            let a = logits(&args, &dir.join("a.npy"));
            let b = logits(&args, &dir.join("b.npy"));
            assert!(a == b, "{precision} at {threads} threads: two processes gave different logits");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
