//! Plans, fused blocks in the model, the wisdom file and `mobilenet tune`.

use std::path::PathBuf;
use std::process::Command;

use kernels::testing::random_values;
use kernels::Precision;
use model::plan::{Plan, AUTO};
use model::tune::{tune, TuneOptions};
use model::wisdom::{CpuKey, Wisdom, WisdomKey};
use model::{Config, MobileNet, Weights};
use proptest::prelude::*;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mobilenet-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn logits(
    config: Config,
    w: &Weights,
    plan: &Plan,
    threads: usize,
    precision: Precision,
    x: &[f32],
) -> Vec<f32> {
    let mut net = MobileNet::with_plan(config, w, plan, 1, threads, precision).unwrap();
    net.forward(x).unwrap().to_vec()
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max) / scale
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Every depthwise layer fused with its pointwise layer, at any band height and thread
    /// count, gives the unfused model's logits (only the GEMM's row split differs: the same
    /// 1e-4 relative bound as the kernel sets against naive).
    #[test]
    fn fused_model_matches_unfused(
        width in prop_oneof![Just(0.25), Just(0.5)],
        resolution in prop_oneof![Just(32usize), Just(64)],
        band in 1usize..12,
        threads in 1usize..=3,
        seed in any::<u64>(),
    ) {
        let config = Config { width, resolution, classes: 10 };
        let mut w = Weights::random(&config, seed).unwrap();
        w.randomize_batchnorm(seed);
        let x = random_values(3 * resolution * resolution, seed);
        let direct = kernels::kernel_set("direct").unwrap();
        let unfused = Plan::from_set(&direct, &config, 1).unwrap();
        let mut fused = Plan::from_set(&direct, &config, threads).unwrap();
        let infos = config.layers().unwrap();
        for (i, l) in infos.iter().enumerate() {
            if l.kind == kernels::LayerKind::Depthwise {
                fused.layers[i].fuse_band_rows = Some(band + i % 3);
            }
        }
        fused.check(&config, threads).unwrap();
        let want = logits(config, &w, &unfused, 1, Precision::F32, &x);
        let got = logits(config, &w, &fused, threads, Precision::F32, &x);
        prop_assert!(max_rel(&got, &want) <= 1e-4, "{}", max_rel(&got, &want));
        // At f16 a different row split may flip an output's last bit: 8 units of roundoff.
        let want16 = logits(config, &w, &unfused, 1, Precision::F16, &x);
        let got16 = logits(config, &w, &fused, threads, Precision::F16, &x);
        let tol16 = 8.0 * Precision::F16.unit_roundoff() as f32;
        prop_assert!(max_rel(&got16, &want16) <= tol16, "f16 {}", max_rel(&got16, &want16));
    }
}

#[test]
fn plans_that_do_not_fit_the_model_are_errors() {
    let config = Config { width: 0.25, resolution: 32, classes: 10 };
    let good = Plan::from_set(&kernels::kernel_set("direct").unwrap(), &config, 2).unwrap();
    good.check(&config, 2).unwrap();
    let w = Weights::random(&config, 1).unwrap();
    let bad = |edit: &dyn Fn(&mut Plan), needle: &str| {
        let mut p = good.clone();
        edit(&mut p);
        let e = MobileNet::with_plan(config, &w, &p, 1, 2, Precision::F32).err().expect("should fail");
        assert!(e.to_string().contains(needle), "{e}");
    };
    bad(
        &|p| {
            p.layers.pop();
        },
        "layers",
    );
    bad(&|p| p.layers[3].algorithm = "gemm-quantum".into(), "not runnable");
    bad(&|p| p.layers[1].algorithm = p.layers[2].algorithm.clone(), "cannot run dw1");
    bad(&|p| p.layers[2].threads = 3, "threads");
    bad(&|p| p.layers[2].threads = 0, "threads");
    bad(&|p| p.layers[2].fuse_band_rows = Some(4), "fused");
    bad(&|p| p.layers[1].fuse_band_rows = Some(0), "fused");
}

#[test]
fn wisdom_roundtrip_and_atomic_save() {
    let path = tmp("roundtrip/wisdom.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let config = Config { width: 0.25, resolution: 32, classes: 10 };
    let plan = Plan::defaults(&config, 1, 2).unwrap();
    let mut w = Wisdom::new();
    let entry = model::wisdom::Entry {
        key: WisdomKey::new(&config, 1, 2, Precision::F32),
        measured: "2026-11-29 00:00 UTC".into(),
        statistic: "test".into(),
        tuned_ms: 1.0,
        default_ms: 1.5,
        layers: plan.layers.clone(),
        layer_ms: vec![0.1; plan.layers.len()],
    };
    w.insert(entry.clone());
    w.insert(entry);
    assert_eq!(w.entries.len(), 1, "same key replaces");
    w.save(&path).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary file left behind");
    let back = Wisdom::load(&path).unwrap();
    assert!(back.cpu.matches_this_cpu());
    let mut warnings = Vec::new();
    let auto = Plan::auto(&config, 1, 2, Precision::F32, Some(&path), &mut |s| warnings.push(s.to_string()))
        .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(auto.source.starts_with("wisdom"), "{}", auto.source);
    assert_eq!(auto.layers, plan.layers);
    // Another key (threads, precision) is not in the file: defaults, no warning.
    let other =
        Plan::auto(&config, 1, 1, Precision::F16, Some(&path), &mut |s| warnings.push(s.into())).unwrap();
    assert!(other.source.starts_with("defaults") && warnings.is_empty());
}

#[test]
fn corrupt_foreign_or_stale_wisdom_is_ignored_with_one_warning() {
    let config = Config { width: 0.25, resolution: 32, classes: 10 };
    let auto_with = |path: &PathBuf| {
        let mut warnings = Vec::new();
        let plan =
            Plan::auto(&config, 1, 2, Precision::F32, Some(path), &mut |s| warnings.push(s.to_string()))
                .unwrap();
        (plan, warnings)
    };
    let good = {
        let mut w = Wisdom::new();
        w.insert(model::wisdom::Entry {
            key: WisdomKey::new(&config, 1, 2, Precision::F32),
            measured: "now".into(),
            statistic: "test".into(),
            tuned_ms: 1.0,
            default_ms: 1.0,
            layers: Plan::defaults(&config, 1, 2).unwrap().layers,
            layer_ms: Vec::new(),
        });
        w
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("garbage.json", "{ not json".into(), "not a wisdom file"),
        ("truncated.json", serde_json::to_string(&good).unwrap()[..200].into(), "not a wisdom file"),
        (
            "format.json",
            serde_json::to_string(&good).unwrap().replace("dwconv-wisdom-1", "dwconv-wisdom-0"),
            "format",
        ),
        (
            "foreign.json",
            {
                let mut w = good.clone();
                w.cpu = CpuKey { model_name: "Some Other CPU".into(), l2_bytes: 12345, ..w.cpu };
                serde_json::to_string(&w).unwrap()
            },
            "another CPU",
        ),
        (
            "stale.json",
            {
                let mut w = good.clone();
                w.entries[0].layers[2].algorithm = "gemm-from-the-future".into();
                serde_json::to_string(&w).unwrap()
            },
            "not runnable",
        ),
    ];
    for (name, text, needle) in cases {
        let path = tmp(name);
        std::fs::write(&path, text).unwrap();
        let (plan, warnings) = auto_with(&path);
        assert_eq!(plan.name, AUTO);
        assert!(plan.source.starts_with("defaults"), "{name}: {}", plan.source);
        assert_eq!(warnings.len(), 1, "{name}: {warnings:?}");
        assert!(warnings[0].contains(needle) && !warnings[0].contains('\n'), "{name}: {}", warnings[0]);
    }
}

#[test]
fn tune_writes_wisdom_that_auto_then_uses() {
    let config = Config { width: 0.25, resolution: 32, classes: 10 };
    let opts = TuneOptions { config, batch: 1, threads: 2, precision: Precision::F32, rounds: 1 };
    let mut lines = Vec::new();
    let entry = tune(&opts, &mut |s| lines.push(s.to_string())).unwrap();
    assert!(lines.len() >= 28, "one progress line per layer at least: {lines:?}");
    let plan = Plan { name: AUTO.into(), source: "tune".into(), layers: entry.layers.clone() };
    plan.check(&config, 2).unwrap();
    assert!(entry.tuned_ms > 0.0 && entry.default_ms > 0.0);
    // Whatever it chose computes the same network.
    let w = Weights::random(&config, 3).unwrap();
    let x = random_values(3 * 32 * 32, 4);
    let direct = Plan::from_set(&kernels::kernel_set("direct").unwrap(), &config, 1).unwrap();
    let want = logits(config, &w, &direct, 1, Precision::F32, &x);
    let got = logits(config, &w, &plan, 2, Precision::F32, &x);
    assert!(max_rel(&got, &want) <= 1e-3, "{}", max_rel(&got, &want));

    // Through the CLI: tune writes the file, bench --kernels auto reads it.
    let path = tmp("cli-wisdom.json");
    let mobilenet = env!("CARGO_BIN_EXE_mobilenet");
    let small = ["--width", "0.25", "--resolution", "32", "--classes", "10", "--threads", "2"];
    let out = Command::new(mobilenet)
        .args(["tune", "--rounds", "1", "--wisdom", path.to_str().unwrap()])
        .args(small)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("wrote"));
    let out = Command::new(mobilenet)
        .args(["bench", "--kernels", "auto", "--iters", "2", "--json", "--wisdom", path.to_str().unwrap()])
        .args(small)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["plan"].as_str().unwrap().starts_with("wisdom"), "{v}");
    assert_eq!(v["layers"].as_array().unwrap().len(), 28);
    assert!(v["layers"][2]["threads"].as_u64().is_some());
    // A corrupt file: one warning, the defaults, success.
    std::fs::write(&path, "{").unwrap();
    let out = Command::new(mobilenet)
        .args(["bench", "--kernels", "auto", "--iters", "1", "--wisdom", path.to_str().unwrap()])
        .args(small)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("warning: ignoring wisdom file").count(), 1, "{stderr}");
    assert!(stderr.contains("auto: defaults"), "{stderr}");
}
