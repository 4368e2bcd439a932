#!/usr/bin/env python3
"""int8 MobileNetV1: our quantized model against ONNX Runtime's, accuracy and speed.

What it does (everything on the same seeded weights of make_fixture.build, 1.0-224, 1000 classes):

1. Calibration: --calib seeded N(0, 1) NCHW images, saved as one .npy batch.
2. Ours: `mobilenet quantize` on them (MinMax), then `mobilenet run --precision int8` and
   `--precision f32` over --images evaluation images (another seed) for the logits.
3. ONNX Runtime's own `quantize_static` of the same network (batch norm folded, so the same
   convolutions): QDQ format, per-channel int8 weights, u8 activations (the u8 x s8 scheme
   ONNX Runtime runs on x86), MinMax, the same calibration images.
4. Our quantized file exported as an ONNX QDQ model (`qdq_model`): ONNX Runtime runs the very
   same quantized network, both as written (graph optimisation off: the reference semantics
   of QuantizeLinear / DequantizeLinear) and optimised (its int8 kernels).
5. Accuracy against f32 (ONNX Runtime fp32 on the folded graph): the logits' relative error
   (RMS over all logits, and over the input-dependent part `f - mean over inputs`, since the
   random-weight model's logits share a large input-independent part), top-1 agreement and
   top-5 overlap; and ours against ONNX Runtime on our QDQ model, in logit LSBs.
6. Speed: interleaved rounds (--rounds x --iters) at 1 thread and all cores of ONNX Runtime
   int8 (its quantize_static model, and our QDQ model), ONNX Runtime fp32, and ours at int8,
   bf16 and f32 (`mobilenet bench --json`), median of per-round medians.

Writes results/<cpu-slug>/int8.md. `--fixture DIR` instead writes the small committed fixture
(width 0.25, resolution 64, 10 classes, batch 2): our quantized file, the input, and ONNX
Runtime's logits on our QDQ model with graph optimisation off, which model/tests/fixture.rs
holds our int8 path to.

    python3 -m venv .venv && .venv/bin/pip install -r tools/onnx-reference/requirements.txt
    cargo build --release -p model
    .venv/bin/python tools/onnx-reference/int8.py [--images 256] [--rounds 5]
    .venv/bin/python tools/onnx-reference/int8.py --fixture model/tests/fixtures/int8
"""
import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
import onnxruntime as ort
from safetensors.numpy import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixture import BLOCKS, build, channels  # noqa: E402
import machine  # noqa: E402

ROOT = machine.ROOT
MOBILENET = os.path.join(ROOT, "target", "release", "mobilenet")
EPS = 1e-5


def sh(*args, env=None):
    full = dict(os.environ, **env) if env else None
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True, env=full).stdout


def conv_names(width):
    """(conv name, bn name, cin, cout, groups, stride, k) of every conv layer, in order."""
    out = [("first_conv.0", "first_conv.1", 3, channels(32, width), 1, 2, 3)]
    cin = channels(32, width)
    for i, (cout, stride) in enumerate(BLOCKS):
        cout = channels(cout, width)
        out.append((f"bottleneck.{i}.0", f"bottleneck.{i}.1", cin, cin, cin, stride, 3))
        out.append((f"bottleneck.{i}.3", f"bottleneck.{i}.4", cin, cout, 1, 1, 1))
        cin = cout
    return out


def folded(state, width):
    """The batch-norm-folded weights {conv: (w, b)}, folded in f64 as the Rust side does."""
    out = {}
    for conv, bn, *_ in conv_names(width):
        g, be, m, v = (state[f"{bn}.{f}"].astype(np.float64) for f in ("weight", "bias", "running_mean", "running_var"))
        s = g / np.sqrt(v + EPS)
        w = state[f"{conv}.weight"].astype(np.float64) * s[:, None, None, None]
        b = (state[f"{conv}.bias"].astype(np.float64) - m) * s + be
        out[conv] = (w.astype(np.float32), b.astype(np.float32))
    out["linear"] = (state["linear.weight"], state["linear.bias"])
    return out


def folded_model(state, width, resolution, classes, batch):
    """The fp32 network with folded batch norm: Conv (+bias) -> Clip(0, 6), pool, Gemm."""
    f = folded(state, width)
    nodes, inits = [], [numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
                        numpy_helper.from_array(np.array(6.0, np.float32), "six")]
    x = "input"
    for conv, _, cin, cout, groups, stride, k in conv_names(width):
        w, b = f[conv]
        inits += [numpy_helper.from_array(w, f"{conv}.weight"), numpy_helper.from_array(b, f"{conv}.bias")]
        nodes.append(helper.make_node("Conv", [x, f"{conv}.weight", f"{conv}.bias"], [f"{conv}.out"], group=groups,
                                      kernel_shape=[k, k], pads=[k // 2] * 4, strides=[stride] * 2))
        nodes.append(helper.make_node("Clip", [f"{conv}.out", "zero", "six"], [f"{conv}.act"]))
        x = f"{conv}.act"
    lw, lb = f["linear"]
    inits += [numpy_helper.from_array(lw, "linear.weight"), numpy_helper.from_array(lb, "linear.bias")]
    nodes += [helper.make_node("GlobalAveragePool", [x], ["pooled"]),
              helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
              helper.make_node("Gemm", ["flat", "linear.weight", "linear.bias"], ["logits"], transB=1)]
    return finish(nodes, inits, batch, resolution, classes)


def finish(nodes, inits, batch, resolution, classes):
    graph = helper.make_graph(
        nodes, "mobilenet_v1",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, resolution, resolution])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def qdq_model(qpath, width, resolution, classes, batch):
    """Our int8 file (model/src/quant.rs names) as an ONNX QDQ graph: every activation goes
    through QuantizeLinear -> DequantizeLinear with our scale and zero point, every weight
    is DequantizeLinear of our int8 values with our per-channel scales (axis 0), every bias
    DequantizeLinear of int32 round(b / (s_x s_w)) with scale s_x s_w."""
    t = load_file(qpath)
    nodes, inits = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(arr, name))
        return name

    def qdq(x, scale, zp, name):
        s, z = const(f"{name}.s", np.array(scale, np.float32)), const(f"{name}.z", np.array(zp, np.uint8))
        nodes.append(helper.make_node("QuantizeLinear", [x, s, z], [f"{name}.q"]))
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}.q", s, z], [f"{name}.dq"]))
        return f"{name}.dq"

    def weights(conv, in_scale):
        wq = t[f"{conv}.weight"].astype(np.int8)
        ws = t[f"{conv}.weight_scale"].astype(np.float32)
        const(f"{conv}.wq", wq)
        const(f"{conv}.ws", ws)
        const(f"{conv}.wz", np.zeros(len(ws), np.int8))
        nodes.append(helper.make_node("DequantizeLinear", [f"{conv}.wq", f"{conv}.ws", f"{conv}.wz"], [f"{conv}.w"], axis=0))
        bs = (np.float64(in_scale) * ws.astype(np.float64)).astype(np.float32)
        bq = np.clip(np.rint(t[f"{conv}.bias"].astype(np.float64) / (np.float64(in_scale) * ws.astype(np.float64))),
                     -2**31, 2**31 - 1).astype(np.int32)
        const(f"{conv}.bq", bq)
        const(f"{conv}.bs", bs)
        const(f"{conv}.bz", np.zeros(len(ws), np.int32))
        nodes.append(helper.make_node("DequantizeLinear", [f"{conv}.bq", f"{conv}.bs", f"{conv}.bz"], [f"{conv}.b"], axis=0))
        return f"{conv}.w", f"{conv}.b"

    const("zero", np.array(0.0, np.float32))
    const("six", np.array(6.0, np.float32))
    in_scale, in_zp = float(t["input.scale"][0]), int(t["input.zero_point"][0])
    x = qdq("input", in_scale, in_zp, "input")
    for conv, _, cin, cout, groups, stride, k in conv_names(width):
        w, b = weights(conv, in_scale)
        nodes.append(helper.make_node("Conv", [x, w, b], [f"{conv}.out"], group=groups, kernel_shape=[k, k],
                                      pads=[k // 2] * 4, strides=[stride] * 2))
        nodes.append(helper.make_node("Clip", [f"{conv}.out", "zero", "six"], [f"{conv}.act"]))
        in_scale, in_zp = float(t[f"{conv}.output_scale"][0]), int(t[f"{conv}.output_zero_point"][0])
        x = qdq(f"{conv}.act", in_scale, in_zp, conv)
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"]))
    # The pool keeps the last layer's parameters (model/src/quant.rs).
    x = qdq("pooled", in_scale, in_zp, "pool")
    nodes.append(helper.make_node("Flatten", [x], ["flat"], axis=1))
    w, b = weights("linear", in_scale)
    nodes.append(helper.make_node("Gemm", ["flat", w, b], ["fc.out"], transB=1))
    x = qdq("fc.out", float(t["linear.output_scale"][0]), int(t["linear.output_zero_point"][0]), "fc")
    nodes.append(helper.make_node("Identity", [x], ["logits"]))
    return finish(nodes, inits, batch, resolution, classes)


def session(model, threads, optimize=True):
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    if not optimize:
        o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return ort.InferenceSession(data, o, providers=["CPUExecutionProvider"])


def run_batched(model, images, batch_model, threads=0):
    """Logits of `images` [N, 3, r, r] through a batch-1 model, one image at a time."""
    s = session(model, threads)
    return np.concatenate([s.run(None, {"input": images[i:i + 1]})[0] for i in range(len(images))])


def ort_quantize_static(fp32, calib, tmp):
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, \
        quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.it, None)

    src, dst = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "ort-int8.onnx")
    onnx.save(fp32, src)
    quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    return onnx.load(dst)


def metrics(got, ref):
    """Relative RMS error, the same over the input-dependent part, top-1 agreement, top-5 overlap."""
    rel = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
    gd, rd = got - got.mean(axis=0), ref - ref.mean(axis=0)
    rel_dep = float(np.linalg.norm(gd - rd) / np.linalg.norm(rd))
    top1 = float(np.mean(np.argmax(got, 1) == np.argmax(ref, 1)))
    t5g, t5r = np.argsort(-got, 1)[:, :5], np.argsort(-ref, 1)[:, :5]
    top5 = float(np.mean([len(set(a) & set(b)) / 5 for a, b in zip(t5g, t5r)]))
    return rel, rel_dep, top1, top5


def lsb(got, ref, qpath):
    t = load_file(qpath)
    return float(np.max(np.abs(got - ref)) / t["linear.output_scale"][0])


def time_block(fn, iters, warm=3):
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1e3)
    return float(np.median(ts))


def ours_ms(wpath, precision, threads, iters, isa=None):
    out = json.loads(sh(MOBILENET, "bench", "--weights", wpath, "--precision", precision, "--threads", threads,
                        "--iters", iters, "--json", env={"KERNELS_ISA": isa} if isa else None))
    return float(out["median_ms"])


def fixture(a):
    width, resolution, classes, batch = 0.25, 64, 10, 2
    model, state, image = build(width, resolution, classes, batch, 2017)
    os.makedirs(a.fixture, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="int8-fixture-")
    wpath, ipath = os.path.join(tmp, "w.safetensors"), os.path.join(a.fixture, "input.npy")
    qpath = os.path.join(a.fixture, "weights-int8.safetensors")
    save_file(state, wpath)
    np.save(ipath, image)
    cfg = ["--width", str(width), "--resolution", str(resolution), "--classes", str(classes)]
    sh(MOBILENET, "quantize", *cfg, "--weights", wpath, "--calibration", ipath, "--output", qpath)
    qdq = qdq_model(qpath, width, resolution, classes, batch)
    (logits,) = session(qdq, 1, optimize=False).run(None, {"input": image})
    np.save(os.path.join(a.fixture, "logits.npy"), logits.astype(np.float32))
    meta = {"width": width, "resolution": resolution, "classes": classes, "batch": batch, "seed": 2017,
            "calibration": "the input itself (MinMax)", "onnxruntime": ort.__version__,
            "graph_optimization": "disabled", "logit_scale": float(load_file(qpath)["linear.output_scale"][0])}
    with open(os.path.join(a.fixture, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print(json.dumps(meta))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=256, help="evaluation images (default 256)")
    ap.add_argument("--calib", type=int, default=32, help="calibration images (default 32)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--threads", default=None, help="thread counts (default 1 and all cores)")
    ap.add_argument("--fixture", default=None, help="write the small test fixture into this folder and stop")
    ap.add_argument("--out-dir", default=None, help="default results/<cpu-slug>/")
    a = ap.parse_args()
    if not os.path.exists(MOBILENET):
        sys.exit("build the CLI first: cargo build --release -p model")
    if a.fixture:
        return fixture(a)
    threads = sorted({int(t) for t in a.threads.split(",")}) if a.threads else sorted({1, os.cpu_count() or 1})
    out_dir = a.out_dir or machine.results_dir()
    os.makedirs(out_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="int8-")
    _, state, _ = build(1.0, 224, 1000, 1, 2017)
    rng = np.random.default_rng(99)
    calib = rng.normal(0.0, 1.0, size=(a.calib, 3, 224, 224)).astype(np.float32)
    evals = np.random.default_rng(7).normal(0.0, 1.0, size=(a.images, 3, 224, 224)).astype(np.float32)
    wpath, qpath = os.path.join(tmp, "w.safetensors"), os.path.join(tmp, "q.safetensors")
    cpath, epath, lpath = (os.path.join(tmp, n) for n in ("calib.npy", "eval.npy", "logits.npy"))
    save_file(state, wpath)
    np.save(cpath, calib)
    np.save(epath, evals)
    t = time.perf_counter()
    sh(MOBILENET, "quantize", "--weights", wpath, "--calibration", cpath, "--output", qpath)
    print(f"ours: quantized in {time.perf_counter() - t:.1f} s", flush=True)

    fp32 = folded_model(state, 1.0, 224, 1000, 1)
    ref = run_batched(fp32, evals, 1)
    print("onnxruntime fp32: done", flush=True)
    sh(MOBILENET, "run", "--weights", qpath, "--precision", "int8", "--input", epath, "--logits", "--output", lpath)
    ours8 = np.load(lpath)
    sh(MOBILENET, "run", "--weights", wpath, "--input", epath, "--logits", "--output", lpath)
    ours32 = np.load(lpath)
    ort8_model = ort_quantize_static(fp32, calib, tmp)
    ort8 = run_batched(ort8_model, evals, 1)
    qdq = qdq_model(qpath, 1.0, 224, 1000, 1)
    ort_qdq_ref = np.concatenate([session(qdq, 0, optimize=False).run(None, {"input": evals[i:i + 1]})[0]
                                  for i in range(len(evals))])
    ort_qdq_opt = run_batched(qdq, evals, 1)
    print("accuracy: done", flush=True)

    rows = [("ours int8 (`mobilenet quantize`, MinMax)", metrics(ours8, ref)),
            ("ONNX Runtime int8 (`quantize_static`: QDQ, per-channel, u8 activations, MinMax)", metrics(ort8, ref)),
            ("ONNX Runtime on our QDQ export, optimised", metrics(ort_qdq_opt, ref)),
            ("ours f32", metrics(ours32, ref))]
    agree = [("ONNX Runtime on our QDQ export, graph optimisation off (QDQ semantics)", lsb(ours8, ort_qdq_ref, qpath)),
             ("ONNX Runtime on our QDQ export, optimised (its int8 kernels)", lsb(ours8, ort_qdq_opt, qpath))]

    # Speed, interleaved.
    runners = {}
    img1 = evals[:1]
    for t_ in threads:
        s_ort8, s_qdq, s_fp = session(ort8_model, t_), session(qdq, t_), session(fp32, t_)
        runners[("ONNX Runtime int8 (quantize_static)", t_)] = lambda s=s_ort8: s.run(None, {"input": img1})
        runners[("ONNX Runtime int8 (our QDQ export)", t_)] = lambda s=s_qdq: s.run(None, {"input": img1})
        runners[("ONNX Runtime fp32", t_)] = lambda s=s_fp: s.run(None, {"input": img1})
    engines = ["ONNX Runtime int8 (quantize_static)", "ONNX Runtime int8 (our QDQ export)", "ONNX Runtime fp32",
               "ours int8", "ours bf16", "ours f32", "ours int8 avx2", "ours f32 avx2"]
    ms = {(e, t_): [] for e in engines for t_ in threads}
    for r in range(a.rounds):
        order = engines[r % len(engines):] + engines[:r % len(engines)]
        for t_ in threads:
            for e in order:
                if e.startswith("ours"):
                    parts = e.split()
                    prec, isa = parts[1], (parts[2] if len(parts) > 2 else None)
                    w = qpath if prec == "int8" else wpath
                    if prec == "bf16" and "avx512_bf16" not in machine.cpuinfo_text():
                        continue
                    if isa and isa not in machine.cpuinfo_text():
                        continue
                    ms[(e, t_)].append(ours_ms(w, prec, t_, a.iters, isa))
                else:
                    ms[(e, t_)].append(time_block(runners[(e, t_)], a.iters))
        print(f"round {r + 1}/{a.rounds}", flush=True)
    write(a, out_dir, rows, agree, ms, engines, threads)


def write(a, out_dir, rows, agree, ms, engines, threads):
    med = {k: float(np.median(v)) for k, v in ms.items() if v}
    lines = [f"# int8 MobileNetV1 1.0-224: accuracy and speed against ONNX Runtime int8", "",
             f"CPU: {machine.cpu_line()}", "",
             f"Written by `tools/onnx-reference/int8.py --images {a.images} --calib {a.calib} --rounds {a.rounds} "
             f"--iters {a.iters}` on {datetime.date.today()}; ONNX Runtime {ort.__version__}. Same seeded weights "
             "(make_fixture.build, seed 2017), calibration on "
             f"{a.calib} seeded N(0, 1) images, evaluation on {a.images} others. Reference: ONNX Runtime fp32 on the "
             "batch-norm-folded graph.", "",
             "## Accuracy against f32", "",
             "| model | logits rel. RMS error | rel. error of the input-dependent part | top-1 agreement | top-5 overlap |",
             "|---|---:|---:|---:|---:|"]
    for name, (rel, dep, t1, t5) in rows:
        lines.append(f"| {name} | {rel:.2e} | {dep:.3f} | {t1 * 100:.1f}% | {t5 * 100:.1f}% |")
    lines += ["", "The random-weight model's logits share a large input-independent part; the second column "
              "(`f - mean over inputs`) is the error that matters for ranking.", "",
              "## Ours against ONNX Runtime on the very same quantized network", "",
              "| ONNX Runtime run | max abs difference of the logits, in LSBs of the logit scale |", "|---|---:|"]
    for name, v in agree:
        lines.append(f"| {name} | {v:.1f} |")
    lines += ["", "## Speed (median of per-round medians, ms)", "",
              "`ours ... avx2`: the same binary under `KERNELS_ISA=avx2` (the AVX2 int8 path: `vpmaddwd` on "
              "widened operands, no VNNI, no AMX). ONNX Runtime runs as deployed (its own dispatch).", "",
              "| engine | " + " | ".join(f"{t} thread{'s' if t > 1 else ''}" for t in threads) + " |",
              "|---|" + "---:|" * len(threads)]
    for e in engines:
        if all((e, t) not in med for t in threads):
            continue
        lines.append(f"| {e} | " + " | ".join(f"{med[(e, t)]:.2f}" if (e, t) in med else "-" for t in threads) + " |")
    lines += ["", "| ratio | " + " | ".join(f"{t} thread{'s' if t > 1 else ''}" for t in threads) + " |",
              "|---|" + "---:|" * len(threads)]
    for num, den in [("ours int8", "ONNX Runtime int8 (quantize_static)"), ("ours int8", "ONNX Runtime int8 (our QDQ export)"),
                     ("ours int8", "ours f32"), ("ours int8", "ours bf16"),
                     ("ours int8 avx2", "ours f32 avx2")]:
        cells = []
        for t in threads:
            if (num, t) in med and (den, t) in med:
                cells.append(f"{med[(num, t)] / med[(den, t)]:.2f}")
            else:
                cells.append("-")
        lines.append(f"| {num} / {den} | " + " | ".join(cells) + " |")
    path = os.path.join(out_dir, "int8.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {path}")
    machine.regenerate_index()


if __name__ == "__main__":
    main()
