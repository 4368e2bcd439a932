#!/usr/bin/env python3
"""Peers at every precision side by side: our kernel sets at f32, f16, bf16 and int8 against
ONNX Runtime, OpenVINO, XNNPACK (LiteRT), MNN, ncnn and PyTorch eager at fp32, and their bf16,
f16 and int8 modes, on MobileNetV1 1.0-224, batch 1, the same seeded weights and input, in one
interleaved run.

Engines (ONNX Runtime fp32 is required: it is every check's reference; the others are optional
and skipped, loudly and with the install command, when their import fails):

fp32
- onnxruntime: the ONNX graph of make_fixture.build (Conv, BatchNormalization, Clip, ...) as
  deployed: CPUExecutionProvider, all graph optimisations (Conv+BN+Clip fusion, NCHWc layout),
  intra_op_num_threads = threads.
- openvino: the same ONNX file read by `ov.Core().read_model`, compiled for "CPU" with
  INFERENCE_NUM_THREADS = threads, PERFORMANCE_HINT LATENCY and INFERENCE_PRECISION_HINT f32
  (without it OpenVINO runs bf16 on CPUs with AVX512_BF16/AMX: not the fp32 comparison).
- xnnpack: LiteRT's Interpreter (`ai-edge-litert`; its CPU path applies the XNNPACK delegate by
  default, num_threads = threads) on a .tflite rebuilt from the folded weights as a tf.nn NHWC
  graph (tflite_model.py; building it needs `tensorflow-cpu`, running it does not).
- mnn: the `mnn` wheel's Session API at precision "high" on the ONNX file converted by
  MNNConvert (called through its C extension: the Python wrapper installs packages on import).
- ncnn: the PyPI wheel. The model comes from pnnx (PyTorch -> ncnn) when torch and pnnx are
  installed, else it is written directly from our batch-norm-folded weights: a .param text
  (Convolution / ConvolutionDepthWise with bias_term and activation_type 3 = clip 0..6,
  Pooling global average, InnerProduct) and a .bin (per layer: a 4-byte zero tag, the f32
  weights in OIHW order, then the f32 bias). fp16/bf16 storage and arithmetic are turned off.
- torch: PyTorch eager (`torch.inference_mode`, `torch.set_num_threads`), the DESIGN.md
  reference model with the same state dict.
f16 / bf16
- openvino-f16, openvino-bf16: the fp32 ONNX file with INFERENCE_PRECISION_HINT f16 / bf16;
  skipped where the compiled model reports another precision (a CPU without that support).
int8 (all calibrated on the same 16 seeded images, MinMax)
- onnxruntime-int8: ONNX Runtime on its own quantize_static of the folded network (QDQ,
  per-channel int8 weights, u8 activations); int8.py compares accuracy as well.
- openvino-int8: OpenVINO on that same QDQ file, without a precision hint (it runs int8).
- xnnpack-int8: a full-integer post-training-quantized .tflite (int8 per-channel weights, int8
  activations) through LiteRT / XNNPACK.
ours
- `target/release/mobilenet bench --weights W --precision P --kernels S --threads T --iters N
  --json` for every --kernels set S at every --precisions P; at int8, W is the file `mobilenet
  quantize` writes from the f32 weights and the same calibration images. A set or precision the
  binary refuses is skipped with one line.

Every engine's logits are checked against ONNX Runtime fp32's (`mobilenet run --logits` for
ours) within its precision's budget (TOL); an engine beyond it is not timed. Then --rounds
rounds: in each, per thread count, one block of --iters runs per engine, in an order rotated by
one every round. Reported per thread count: per precision, our fastest engine / the fastest peer
at that precision, and across precisions our fastest / the fastest peer at any precision (ratios
per round: median and min..max over rounds); then every engine's median and min..max.

--layers adds a per-layer comparison with ONNX Runtime's profiler (enable_profiling; per-node
`kernel_time` events, mapped to our layer names through the ONNX tensor names of
make_fixture.py), interleaved with our f32 per-layer times (the bench JSON) over the rounds.

Writes results/<cpu-slug>/peers.md (and layers-vs-ort.md with --layers), then regenerates the
results/README.md index. The CPU slug rule: machine.py / bench-harness/src/machine.rs.

    python3 -m venv .venv && .venv/bin/pip install -r tools/onnx-reference/requirements.txt \\
        -r tools/onnx-reference/requirements-peers.txt      # the second file: optional peers
    cargo build --release -p model
    .venv/bin/python tools/onnx-reference/peers.py [--rounds 7] [--iters 50] [--layers]
    .venv/bin/python tools/onnx-reference/peers.py --rounds 2 --iters 10   # quick, development
"""
import argparse
import datetime
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixture import BLOCKS, build  # noqa: E402
import machine  # noqa: E402

ROOT = machine.ROOT
MOBILENET = os.path.join(ROOT, "target", "release", "mobilenet")
EPS = 1e-5


def sh(*args):
    return subprocess.run(args, check=True, capture_output=True, text=True, cwd=ROOT).stdout.strip()


def median(v):
    return float(np.median(np.asarray(v, dtype=np.float64)))


def time_block(fn, iters, warm=3):
    """Per-block median ms of `iters` calls of fn after `warm` untimed ones."""
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1e3)
    return median(ts)


def time_ort(model_bytes, image, threads, iters):
    """ONNX Runtime alone (precision_peers.py): per-block median ms of `iters` runs, and logits."""
    run = ort_engine(model_bytes, image)["make"](threads)
    return time_block(run, iters, warm=10), run()


# ---------------------------------------------------------------------------------------------
# Engines. Each peer: name, version, route (how the model got there), make(threads) -> a
# zero-argument callable that runs one inference and returns the logits [1, 1000].


class Skip(Exception):
    """An optional engine that cannot run here; the message says why and how to install it."""


def ort_engine(onnx_bytes, image):
    def make(threads):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
        feed = {"input": image}
        return lambda: sess.run(None, feed)[0]
    return {"name": "onnxruntime", "version": ort.__version__, "precision": "fp32",
            "route": "ONNX graph, CPUExecutionProvider, all graph optimisations", "make": make}


# Each precision's accuracy budget: max |logits - ONNX Runtime fp32| / max |logit| at or below
# which an engine at that precision is timed. fp32 engines differ only by summation order (about
# 1e-6 relative here), and 1e-3 still catches a wrong layer, layout or a silent bf16/fp16 path.
# f16 and bf16 models err about 1e-3 and 1e-2 (results/<cpu-slug>/precision.md); int8 about
# 2e-2 (results/<cpu-slug>/int8.md).
TOL = {"fp32": 1e-3, "f16": 5e-3, "bf16": 3e-2, "int8": 0.1}
# Our `--precision` names for the report's precisions.
OUR_PRECISION = {"fp32": "f32", "f16": "f16", "bf16": "bf16", "int8": "int8"}
REPORT_PRECISION = {ours: report for report, ours in OUR_PRECISION.items()}


def calibration_images():
    """The 16 seeded NCHW images every int8 engine (ours, ONNX Runtime, OpenVINO, XNNPACK) is
    calibrated on, so that they quantize the same activation ranges."""
    return np.random.default_rng(99).normal(0.0, 1.0, size=(16, 3, 224, 224)).astype(np.float32)


def ort_qdq_model(state, tmp):
    """ONNX Runtime's own quantize_static of the batch-norm-folded network (QDQ, per-channel int8
    weights, u8 activations, MinMax) on calibration_images() (int8.py's helpers); its path."""
    path = os.path.join(tmp, "m-qdq.onnx")
    if not os.path.exists(path):
        from int8 import folded_model, ort_quantize_static
        q = ort_quantize_static(folded_model(state, 1.0, 224, 1000, 1), calibration_images(), tmp)
        with open(path, "wb") as f:
            f.write(q.SerializeToString())
    return path


def ort_int8_engine(state, image, tmp):
    with open(ort_qdq_model(state, tmp), "rb") as f:
        p = ort_engine(f.read(), image)
    p.update(name="onnxruntime-int8", precision="int8",
             route="its quantize_static (QDQ, per-channel, u8 activations, MinMax), all graph optimisations")
    return p


def openvino_engine(onnx_path, image, precision="fp32", hint="f32"):
    """OpenVINO's CPU plugin on an ONNX file. `hint` is its INFERENCE_PRECISION_HINT (f32, bf16,
    f16), or None for a QDQ (int8) model, which it runs in int8 without one. The compiled model's
    own report of its inference precision is checked, so that a CPU without bf16/f16 support
    (OpenVINO then falls back to f32 silently) is skipped rather than mislabelled."""
    try:
        import openvino as ov
    except Exception as e:  # ImportError, or a broken native library
        raise Skip(f"openvino: {e} (pip install openvino, see requirements-peers.txt)")
    core = ov.Core()

    def make(threads):
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        if hint:
            config["INFERENCE_PRECISION_HINT"] = hint
        compiled = core.compile_model(core.read_model(onnx_path), "CPU", config)
        if hint:
            got = compiled.get_property("INFERENCE_PRECISION_HINT")
            if got != getattr(ov.Type, hint):
                raise Skip(f"openvino-{hint}: this CPU runs it at {got.get_type_name()} (no {hint} support)")
        req = compiled.create_infer_request()

        def run():
            req.infer({0: image})
            return req.get_output_tensor(0).data.copy()
        return run
    route = (f"ONNX read by Core.read_model, CPU plugin, LATENCY hint, {hint} precision hint" if hint else
             "ONNX Runtime's quantize_static QDQ model read by Core.read_model, CPU plugin, LATENCY hint "
             "(no precision hint: the QDQ graph runs in int8)")
    name = "openvino" if precision == "fp32" else f"openvino-{precision}"
    return {"name": name, "version": ov.get_version().split("-")[0], "precision": precision, "route": route,
            "make": make}


def xnnpack_engine(wpath, image, tmp, calibration=None):
    """XNNPACK through LiteRT's Interpreter (its CPU path applies the XNNPACK delegate by default),
    on a .tflite that tflite_model.py rebuilds from the folded weights in a child process; int8
    when `calibration` (an NCHW .npy) is given: full-integer post-training quantization on it."""
    try:
        from ai_edge_litert.interpreter import Interpreter
        import ai_edge_litert
    except Exception as e:
        raise Skip(f"xnnpack: {e} (pip install ai-edge-litert, see requirements-peers.txt)")
    int8 = calibration is not None
    path = os.path.join(tmp, "m-int8.tflite" if int8 else "m.tflite")
    cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "tflite_model.py"),
           "--weights", wpath, "--output", path, "--resolution", str(image.shape[-1])]
    built = subprocess.run(cmd + (["--calibration", calibration] if int8 else []), capture_output=True, text=True)
    if built.returncode != 0 or not os.path.exists(path):
        last = (built.stderr.strip().splitlines() or ["no output"])[-1]
        if "No module named 'tensorflow'" in built.stderr:
            raise Skip("xnnpack: building the .tflite needs TensorFlow (pip install tensorflow-cpu, a large "
                       "download, see requirements-peers.txt)")
        raise RuntimeError(f"tflite_model.py failed: {last}")
    with open(path, "rb") as f:
        flat = f.read()
    x = np.ascontiguousarray(image.transpose(0, 2, 3, 1))

    def make(threads):
        it = Interpreter(model_content=flat, num_threads=threads)
        it.allocate_tensors()
        i0, o0 = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]

        def run():
            it.set_tensor(i0, x)
            it.invoke()
            return it.get_tensor(o0).copy()
        return run
    int8 = calibration is not None
    route = ("TFLiteConverter full-integer PTQ (int8 per-channel weights, int8 activations) of a tf.nn NHWC "
             "graph of the folded weights; LiteRT Interpreter, XNNPACK delegate" if int8 else
             "TFLiteConverter of a tf.nn NHWC graph of the folded weights; LiteRT Interpreter, XNNPACK delegate")
    return {"name": "xnnpack-int8" if int8 else "xnnpack", "version": f"LiteRT {ai_edge_litert.__version__}",
            "precision": "int8" if int8 else "fp32", "route": route, "make": make}


def mnn_engine(onnx_path, image, tmp):
    """MNN's Session API at precision "high" (fp32) on the ONNX file converted by MNNConvert.

    The converter is called through its C extension (`_tools.mnnconvert`): the Python wrapper
    module runs `pip install` and a network call when it is imported. That function reports
    success whatever happens, so the output file is checked."""
    try:
        import MNN
        import _tools
    except Exception as e:
        raise Skip(f"mnn: {e} (pip install mnn, see requirements-peers.txt)")
    path = os.path.join(tmp, "m.mnn")
    _tools.mnnconvert(["mnnconvert", "-f", "ONNX", "--modelFile", onnx_path, "--MNNModel", path, "--bizCode", "MNN"])
    if not os.path.exists(path):
        raise RuntimeError("MNNConvert wrote no model")

    def make(threads):
        interp = MNN.Interpreter(path)
        sess = interp.createSession({"numThread": threads, "precision": "high", "backend": "CPU"})
        inp = interp.getSessionInput(sess)
        host_in = MNN.Tensor(inp.getShape(), MNN.Halide_Type_Float, image, MNN.Tensor_DimensionType_Caffe)
        out = interp.getSessionOutput(sess)
        host_out = MNN.Tensor(out.getShape(), MNN.Halide_Type_Float, np.zeros(out.getShape(), np.float32),
                              MNN.Tensor_DimensionType_Caffe)

        def run():
            inp.copyFrom(host_in)
            interp.runSession(sess)
            out.copyToHostTensor(host_out)
            return np.array(host_out.getNumpyData()).reshape(1, -1)
        run.keep = (interp, sess)  # the session lives as long as the closure
        return run
    return {"name": "mnn", "version": MNN.version(), "precision": "fp32",
            "route": "ONNX converted by MNNConvert; Session API, CPU backend, precision high (fp32)", "make": make}


def torch_module(state, classes=1000):
    """The DESIGN.md PyTorch reference model (width 1.0) with `state` loaded, in eval mode."""
    import torch
    from torch import nn

    def cbr(cin, cout, k, stride, groups):
        return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups), nn.BatchNorm2d(cout, eps=EPS), nn.ReLU6()]

    class MobileNetV1(nn.Module):
        def __init__(self):
            super().__init__()
            self.first_conv = nn.Sequential(*cbr(3, 32, 3, 2, 1))
            blocks, cin = [], 32
            for cout, stride in BLOCKS:
                blocks.append(nn.Sequential(*cbr(cin, cin, 3, stride, cin), *cbr(cin, cout, 1, 1, 1)))
                cin = cout
            self.bottleneck = nn.Sequential(*blocks)
            self.linear = nn.Linear(cin, classes)

        def forward(self, x):
            x = self.bottleneck(self.first_conv(x))
            return self.linear(x.mean(dim=(2, 3)))

    m = MobileNetV1()
    m.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    return m.eval()


def torch_engine(state, image):
    try:
        import torch
    except Exception as e:
        raise Skip(f"torch: {e} (pip install torch: a large download, see requirements-peers.txt)")
    module = torch_module(state)
    x = torch.from_numpy(image)

    def make(threads):
        def run():
            # The thread count is process-wide and blocks of the thread counts alternate.
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
            with torch.inference_mode():
                return module(x).numpy()
        return run
    return {"name": "torch", "version": torch.__version__.split("+")[0], "precision": "fp32", "route": "eager, inference_mode",
            "make": make}


def fold(state, conv, bn):
    """Batch norm folded into the conv (f64, then f32), as the model crate does."""
    w = state[f"{conv}.weight"].astype(np.float64)
    scale = state[f"{bn}.weight"] / np.sqrt(state[f"{bn}.running_var"].astype(np.float64) + EPS)
    b = (state[f"{conv}.bias"] - state[f"{bn}.running_mean"]) * scale + state[f"{bn}.bias"]
    return (w * scale[:, None, None, None]).astype(np.float32), b.astype(np.float32)


def write_ncnn_direct(state, resolution, param_path, bin_path):
    """Writes the ncnn model of MobileNetV1 (width 1.0) from `state`; blobs `data` -> `output`.

    .param: magic 7767517, `layer_count blob_count`, then per layer `Type name n_in n_out
    inputs outputs key=value ...` (Convolution: 0 num_output, 1 kernel, 3 stride, 4 pad,
    5 bias_term, 6 weight_data_size, 9 activation_type (3 = clip), -23310 = the array
    activation_params [min, max]; ConvolutionDepthWise adds 7 group; Pooling 0 type (1 = avg),
    4 global; InnerProduct 0 num_output, 1 bias_term, 2 weight_data_size).
    .bin: per layer, the weights as a 4-byte zero tag (raw f32 follows) and the f32 data, then
    the bias as raw f32 (no tag).
    """
    layers, blobs = [], []
    clip = "9=3 -23310=2,0.000000e+00,6.000000e+00"
    with open(bin_path, "wb") as fb:
        def weights(w, b):
            fb.write(struct.pack("<I", 0))
            fb.write(np.ascontiguousarray(w, dtype="<f4").tobytes())
            fb.write(np.ascontiguousarray(b, dtype="<f4").tobytes())

        layers.append(f"Input data 0 1 data 0={resolution} 1={resolution} 2=3")
        blobs.append("data")
        w, b = fold(state, "first_conv.0", "first_conv.1")
        layers.append(f"Convolution conv0 1 1 data conv0 0={w.shape[0]} 1=3 3=2 4=1 5=1 6={w.size} {clip}")
        weights(w, b)
        prev = "conv0"
        blobs.append(prev)
        for i, (_, stride) in enumerate(BLOCKS):
            w, b = fold(state, f"bottleneck.{i}.0", f"bottleneck.{i}.1")
            c = w.shape[0]
            layers.append(f"ConvolutionDepthWise dw{i + 1} 1 1 {prev} dw{i + 1} 0={c} 1=3 3={stride} 4=1 5=1 "
                          f"6={w.size} 7={c} {clip}")
            weights(w, b)
            w, b = fold(state, f"bottleneck.{i}.3", f"bottleneck.{i}.4")
            layers.append(f"Convolution pw{i + 1} 1 1 dw{i + 1} pw{i + 1} 0={w.shape[0]} 1=1 3=1 4=0 5=1 "
                          f"6={w.size} {clip}")
            weights(w, b)
            prev = f"pw{i + 1}"
            blobs += [f"dw{i + 1}", prev]
        layers.append(f"Pooling pool 1 1 {prev} pool 0=1 4=1")
        lw, lb = state["linear.weight"], state["linear.bias"]
        layers.append(f"InnerProduct fc 1 1 pool output 0={lw.shape[0]} 1=1 2={lw.size}")
        weights(lw, lb)
        blobs += ["pool", "output"]
    with open(param_path, "w") as f:
        f.write(f"7767517\n{len(layers)} {len(blobs)}\n" + "\n".join(layers) + "\n")
    return "data", "output"


def ncnn_engine(state, image, tmp):
    try:
        import ncnn
    except Exception as e:
        raise Skip(f"ncnn: {e} (pip install ncnn, see requirements-peers.txt)")
    param, binf = os.path.join(tmp, "mobilenet.param"), os.path.join(tmp, "mobilenet.bin")
    try:
        import torch
        import pnnx
        pt = os.path.join(tmp, "mobilenet_pnnx.pt")
        # fp16=False: pnnx stores ncnn weights as fp16 by default; this comparison is fp32.
        pnnx.export(torch_module(state), pt, (torch.from_numpy(image),), fp16=False)
        param, binf = pt.replace(".pt", ".ncnn.param"), pt.replace(".pt", ".ncnn.bin")
        blob_in, blob_out = "in0", "out0"
        route = f"model converted by pnnx {getattr(pnnx, '__version__', '')}".strip()
    except Exception as e:  # no torch / pnnx, or the conversion failed: the direct writer
        why = "torch/pnnx not installed" if isinstance(e, ImportError) else f"pnnx failed: {e}"
        blob_in, blob_out = write_ncnn_direct(state, image.shape[-1], param, binf)
        route = f"model written directly from the folded weights by peers.py ({why})"

    def make(threads):
        net = ncnn.Net()
        net.opt.num_threads = threads
        # fp32 end to end: the comparison is fp32 (the x86 wheel may otherwise store f16/bf16).
        for opt in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage"):
            if hasattr(net.opt, opt):
                setattr(net.opt, opt, False)
        if net.load_param(param) != 0 or net.load_model(binf) != 0:
            raise RuntimeError(f"ncnn cannot load {param}")
        x = ncnn.Mat(np.ascontiguousarray(image[0]))

        def run():
            ex = net.create_extractor()
            ex.input(blob_in, x)
            ret, out = ex.extract(blob_out)
            if ret != 0:
                raise RuntimeError(f"ncnn extract returned {ret}")
            return np.array(out).reshape(1, -1)
        run.net = net  # keep the net alive with its closure
        return run
    return {"name": "ncnn", "version": ncnn.__version__, "precision": "fp32", "route": route, "make": make}


# The `mobilenet bench --json` schema this script reads (model::bench::BenchReport).
BENCH_SCHEMA = 1


def ours_bench(wpath, kernel_set, threads, iters, precision="f32"):
    out = json.loads(sh(MOBILENET, "bench", "--weights", wpath, "--kernels", kernel_set, "--threads", str(threads),
                        "--iters", str(iters), "--precision", precision, "--json"))
    # Before schema_version existed (schema 1 without the field) the fields read here were the same.
    version = out.get("schema_version", BENCH_SCHEMA)
    if version != BENCH_SCHEMA:
        raise SystemExit(f"mobilenet bench --json has schema_version {version}; peers.py reads {BENCH_SCHEMA}")
    return out


# ---------------------------------------------------------------------------------------------
# Per-layer: ONNX Runtime's profiler mapped to our layer names.

# ONNX tensor names of make_fixture.build -> our layer names. ORT names fused nodes after their
# output (`bottleneck.3.4.act_nchwc`), so the nodes are named after their output first.
LAYER_PATTERNS = [
    (re.compile(r"^first_conv\."), lambda m: "conv0"),
    (re.compile(r"^bottleneck\.(\d+)\.[012]\."), lambda m: f"dw{int(m.group(1)) + 1}"),
    (re.compile(r"^bottleneck\.(\d+)\.[345]\."), lambda m: f"pw{int(m.group(1)) + 1}"),
    # Our `fc` layer is "pool + fc": the global average pool runs inside it.
    (re.compile(r"^(pooled|flat|logits|linear)"), lambda m: "fc"),
]


def ort_layer(node_name):
    for pat, f in LAYER_PATTERNS:
        m = pat.match(node_name)
        if m:
            return f(m)
    return "other"  # ReorderInput / ReorderOutput of the NCHWc layout


def ort_profile(onnx_bytes, image, threads, iters, warm=3):
    """Per layer (our names), the median over `iters` runs of the summed kernel_time of its
    nodes (ms), from ONNX Runtime's profiler; and the median end-to-end ms of those runs."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(tempfile.gettempdir(), f"peers-ort-{os.getpid()}")
    sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    for _ in range(warm + iters):
        sess.run(None, {"input": image})
    path = sess.end_profiling()
    with open(path) as f:
        events = json.load(f)
    os.remove(path)
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    nodes = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    # Assign every node event to its run by timestamp; keep the last `iters` runs.
    runs.sort(key=lambda e: e["ts"])
    runs = runs[-iters:]
    per_run = [dict() for _ in runs]
    for e in nodes:
        for i, r in enumerate(runs):
            if r["ts"] <= e["ts"] <= r["ts"] + r["dur"]:
                layer = ort_layer(e["name"][: -len("_kernel_time")])
                per_run[i][layer] = per_run[i].get(layer, 0.0) + e["dur"] / 1e3
                break
    layers = sorted({k for d in per_run for k in d})
    return ({k: median([d.get(k, 0.0) for d in per_run]) for k in layers},
            median([r["dur"] / 1e3 for r in runs]))


def name_nodes_after_outputs(model):
    for n in model.graph.node:
        if not n.name:
            n.name = n.output[0]


# ---------------------------------------------------------------------------------------------


def engine_versions(peers):
    return ", ".join(f"{p['name']} {p['version']}" for p in peers)


def provenance(a, peers, stat, extra=()):
    commit = sh("git", "rev-parse", "--short=12", "HEAD")
    # results/ is what this tool writes: the files of this run, written one after another,
    # must not mark the next one's code as changed.
    if sh("git", "status", "--porcelain", "--untracked-files=no", "--", ":/", ":(top,exclude)results"):
        commit += " (with uncommitted changes)"
    lines = [
        f"- CPU: {machine.cpu_line()}",
        f"- results folder: {machine.cpu_slug()}",
        f"- engines: {engine_versions(peers)}; ours: {sh('rustc', '-V')}",
        f"- commit: {commit}",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- command: `python tools/onnx-reference/peers.py {' '.join(sys.argv[1:])}`",
        f"- statistic: {stat}",
    ]
    return lines + list(extra)


# Peers at every precision, in the order the report lists them; `python peers.py --engines ...`
# picks a subset. ONNX Runtime fp32 always runs: it is the reference for every check.
ENGINES = ["onnxruntime", "openvino", "xnnpack", "mnn", "ncnn", "torch", "openvino-f16", "openvino-bf16",
           "onnxruntime-int8", "openvino-int8", "xnnpack-int8"]
PRECISIONS = ["fp32", "f16", "bf16", "int8"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--iters", type=int, default=50, help="timed runs per engine per round (default 50)")
    ap.add_argument("--kernels", default="auto", help="our kernel sets, comma-separated (default auto)")
    ap.add_argument("--precisions", default="f32,f16,bf16,int8",
                    help="our precisions, comma-separated (default f32,f16,bf16,int8)")
    ap.add_argument("--threads", default=None, help="thread counts, comma-separated (default 1 and all cores)")
    ap.add_argument("--engines", default=",".join(ENGINES),
                    help=f"peers to try, comma-separated (default all: {','.join(ENGINES)}; onnxruntime always runs)")
    ap.add_argument("--layers", action="store_true", help="also the per-layer comparison with ONNX Runtime (fp32)")
    ap.add_argument("--out-dir", default=None, help="default results/<cpu-slug>/")
    a = ap.parse_args()
    if not os.path.exists(MOBILENET):
        sys.exit("build the CLI first: cargo build --release -p model")
    thread_counts = (sorted({int(t) for t in a.threads.split(",")}) if a.threads
                     else sorted({1, os.cpu_count() or 1}))
    out_dir = a.out_dir or machine.results_dir()
    os.makedirs(out_dir, exist_ok=True)

    model, state, image = build(1.0, 224, 1000, 1, 2017)
    name_nodes_after_outputs(model)
    image = np.ascontiguousarray(image[:1])
    tmp = tempfile.mkdtemp(prefix="peers-")
    wpath, qpath, ipath, cpath, lpath, opath = (os.path.join(tmp, n) for n in (
        "w.safetensors", "w-int8.safetensors", "x.npy", "calib.npy", "logits.npy", "m.onnx"))
    save_file(state, wpath)
    np.save(ipath, image)
    calib = calibration_images()
    np.save(cpath, calib)
    onnx_bytes = model.SerializeToString()
    with open(opath, "wb") as f:
        f.write(onnx_bytes)

    # Engines, their logits against ONNX Runtime fp32's, and refusals.
    wanted = [e.strip() for e in a.engines.split(",") if e.strip()]
    notes = []
    peers = [ort_engine(onnx_bytes, image)]
    ort_logits = peers[0]["make"](1)()
    scale = float(np.max(np.abs(ort_logits)))
    factories = {
        "openvino": lambda: openvino_engine(opath, image),
        "openvino-f16": lambda: openvino_engine(opath, image, "f16", "f16"),
        "openvino-bf16": lambda: openvino_engine(opath, image, "bf16", "bf16"),
        "openvino-int8": lambda: openvino_engine(ort_qdq_model(state, tmp), image, "int8", None),
        "xnnpack": lambda: xnnpack_engine(wpath, image, tmp),
        "xnnpack-int8": lambda: xnnpack_engine(wpath, image, tmp, cpath),
        "mnn": lambda: mnn_engine(opath, image, tmp),
        "ncnn": lambda: ncnn_engine(state, image, tmp),
        "torch": lambda: torch_engine(state, image),
        "onnxruntime-int8": lambda: ort_int8_engine(state, image, tmp),
    }

    def check(label, precision, route, logits):
        diff = float(np.max(np.abs(logits.reshape(ort_logits.shape) - ort_logits))) / scale
        ok = diff <= TOL[precision]
        print(f"{label} [{precision}]: max |logits - onnxruntime fp32| / max |logit| = {diff:.2e} "
              f"(budget {TOL[precision]:g}) -> {'ok' if ok else 'DISAGREES: not timed'}", flush=True)
        checks.append(f"| {label} | {precision} | {diff:.2e} | {TOL[precision]:g} | "
                      f"{'ok' if ok else '**disagrees: not timed**'} | {route} |")
        if not ok:
            notes.append(f"- {label}: logits beyond the {precision} budget ({diff:.2e} > {TOL[precision]:g}): "
                         "not timed")
        return ok

    checks = [f"| onnxruntime {ort.__version__} | fp32 | (reference) | | | {peers[0]['route']} |"]
    for name in wanted:
        if name == "onnxruntime":
            continue
        if name not in factories:
            sys.exit(f"unknown engine {name}: choose from onnxruntime,{','.join(factories)}")
        try:
            p = factories[name]()
            out = p["make"](1)()
        except Skip as e:
            print(f"SKIPPED: {e}", flush=True)
            notes.append(f"- SKIPPED: {e}")
            continue
        except Exception as e:
            print(f"SKIPPED: {name}: failed to run: {e}", flush=True)
            notes.append(f"- SKIPPED: {name}: failed to run: {e}")
            continue
        if check(f"{p['name']} {p['version']}", p["precision"], p["route"], out):
            peers.append(p)

    # Ours: every kernel set at every precision; int8 runs a file `mobilenet quantize` wrote from the
    # same calibration images as the int8 peers.
    ours = []  # (kernel set, report precision)
    for ours_p in [p.strip() for p in a.precisions.split(",") if p.strip()]:
        precision = REPORT_PRECISION.get(ours_p)
        if precision is None:
            sys.exit(f"unknown precision {ours_p}: choose from {','.join(OUR_PRECISION.values())}")
        weights = wpath
        if precision == "int8":
            if not os.path.exists(qpath):
                sh(MOBILENET, "quantize", "--weights", wpath, "--calibration", cpath, "--output", qpath)
            weights = qpath
        for s in [s.strip() for s in a.kernels.split(",") if s.strip()]:
            try:
                sh(MOBILENET, "run", "--weights", weights, "--precision", ours_p, "--input", ipath, "--kernels", s,
                   "--logits", "--output", lpath)
            except subprocess.CalledProcessError as e:
                msg = ((e.stderr or "").strip().splitlines()[-1:] or [f"exit {e.returncode}"])[0].split(";")[0]
                print(f"SKIPPED: ours {s} {ours_p}: {msg}", flush=True)
                notes.append(f"- SKIPPED: ours `{s}` at {ours_p}: {msg}")
                continue
            if check(f"ours `{s}` {ours_p}", precision, "target/release/mobilenet", np.load(lpath)):
                ours.append((s, precision, weights))
    if not ours:
        sys.exit("none of our kernel sets ran: nothing to compare")

    # Interleaved rounds. ms[(engine label, threads)] = per-round medians.
    our_label = {(s, p): f"ours `{s}` {OUR_PRECISION[p]}" for s, p, _ in ours}
    labels = [p["name"] for p in peers] + [our_label[(s, p)] for s, p, _ in ours]
    precision_of = {p["name"]: p["precision"] for p in peers} | {our_label[(s, p)]: p for s, p, _ in ours}
    runners = {(p["name"], t): p["make"](t) for p in peers for t in thread_counts}
    ours_by_label = {our_label[(s, p)]: (s, p, w) for s, p, w in ours}
    ms = {(e, t): [] for e in labels for t in thread_counts}
    our_layers = {(s, t): [] for s, p, _ in ours if p == "fp32" for t in thread_counts}
    ort_layers = {t: [] for t in thread_counts}
    fused = set()  # our layers that run inside a fused depthwise -> pointwise block
    for r in range(a.rounds):
        order = labels[r % len(labels):] + labels[: r % len(labels)]
        for t in thread_counts:
            for e in order:
                if e in ours_by_label:
                    s, p, w = ours_by_label[e]
                    out = ours_bench(w, s, t, a.iters, OUR_PRECISION[p])
                    ms[(e, t)].append(out["median_ms"])
                    if p == "fp32":
                        our_layers[(s, t)].append({l["name"]: l["median_ms"] for l in out["layers"]})
                        fused.update(l["name"] for l in out["layers"] if l.get("in_fused_block"))
                else:
                    ms[(e, t)].append(time_block(runners[(e, t)], a.iters))
            if a.layers:
                ort_layers[t].append(ort_profile(onnx_bytes, image, t, a.iters))
        summary = ", ".join(f"{e}@{t} {ms[(e, t)][-1]:.2f}" for t in thread_counts for e in labels)
        print(f"round {r + 1}/{a.rounds} (ms): {summary}", flush=True)

    write_peers(a, peers, labels, precision_of, ours_by_label, ms, thread_counts, checks, notes, scale, out_dir)
    if a.layers:
        f32_sets = [s for s, p, _ in ours if p == "fp32"]
        if f32_sets:
            write_layers(a, peers, thread_counts, f32_sets, our_layers, ort_layers, fused, out_dir)
    if a.out_dir is None:
        machine.regenerate_index()


def spread(v):
    return f"{median(v):.2f} ({min(v):.2f}..{max(v):.2f})"


def write_peers(a, peers, labels, precision_of, ours_by_label, ms, thread_counts, checks, notes, scale, out_dir):
    """results/<cpu-slug>/peers.md: the checks, per thread count a summary (ours / the best peer,
    per precision and across precisions) and every engine's times."""
    rounds = a.rounds
    peer_labels = [p["name"] for p in peers]
    versions = {p["name"]: f"{p['name']} {p['version']}" for p in peers}
    present = [p for p in PRECISIONS if any(precision_of[e] == p for e in labels)]

    def fastest(group, t):
        """Per round, the fastest time among `group`; and the member with the lowest median."""
        per_round = [min(ms[(e, t)][r] for e in group) for r in range(rounds)]
        return per_round, min(group, key=lambda e: median(ms[(e, t)]))

    lines = [
        "# Peers at every precision: MobileNetV1 1.0-224, batch 1, the same weights",
        "",
        "<!-- generated by tools/onnx-reference/peers.py; do not edit -->",
        "",
    ] + provenance(a, peers, f"{rounds} interleaved rounds; in each, per thread count, one block of "
                   f"{a.iters} runs per engine (after 3 warm-up runs) in an order rotated every round; "
                   "each time is the median over rounds of the per-round median; ratios are per round "
                   "(against the fastest peer of that round), median and min..max over rounds") + [
        "",
        f"Output check against ONNX Runtime fp32 (max abs difference of the logits over max |logit| = {scale:.2f}); "
        "an engine beyond its precision's budget is not timed:",
        "",
        "| engine | precision | max diff / max logit | budget | verdict | model route |",
        "|---|---|---:|---:|---|---|",
    ] + checks + [""] + (notes + [""] if notes else [])
    for t in thread_counts:
        lines += [f"## {t} thread(s)", "",
                  "| precision | our fastest | its median ms | fastest peer | its median ms | "
                  "ours / fastest peer (median, min..max) |",
                  "|---|---|---:|---|---:|---:|"]
        groups = [(p, [e for e in labels if precision_of[e] == p]) for p in present] + [("any", labels)]
        for p, group in groups:
            mine = [e for e in group if e in ours_by_label]
            theirs = [e for e in group if e not in ours_by_label]
            if not mine or not theirs:
                who = "no peer" if mine else "not run by us"
                ours_cell = f"{mine[0]} | {median(ms[(mine[0], t)]):.3f}" if mine else "- | -"
                lines.append(f"| {p} | {ours_cell} | {who} | - | - |")
                continue
            ours_rounds, ours_best = fastest(mine, t)
            peer_rounds, peer_best = fastest(theirs, t)
            label = "**any** (each within its budget)" if p == "any" else p
            lines.append(f"| {label} | {ours_best} | {median(ms[(ours_best, t)]):.3f} | {versions[peer_best]} "
                         f"[{precision_of[peer_best]}] | {median(ms[(peer_best, t)]):.3f} | "
                         f"{spread([x / y for x, y in zip(ours_rounds, peer_rounds)])} |")
        lines += ["", "| engine | precision | median ms | min..max over rounds | / fastest peer at its precision | "
                  "/ fastest peer at any precision |", "|---|---|---:|---:|---:|---:|"]
        any_best, _ = fastest(peer_labels, t)
        for p in present:
            same = [e for e in peer_labels if precision_of[e] == p]
            best = fastest(same, t)[0] if same else None
            for e in sorted((e for e in labels if precision_of[e] == p), key=lambda e: median(ms[(e, t)])):
                v = ms[(e, t)]
                own = spread([x / y for x, y in zip(v, best)]) if best else "-"
                lines.append(f"| {versions.get(e, e)} | {p} | {median(v):.3f} | {min(v):.3f}..{max(v):.3f} | {own} | "
                             f"{spread([x / y for x, y in zip(v, any_best)])} |")
        lines.append("")
    lines += ["Engines: onnxruntime (MLAS, NCHWc layout), openvino (oneDNN), xnnpack (LiteRT's CPU delegate), "
              "mnn, ncnn (their own x86 kernels), torch (eager PyTorch, oneDNN/MKL); int8 engines quantize on "
              "the same 16 seeded calibration images; see the docstring of tools/onnx-reference/peers.py."]
    path = os.path.join(out_dir, "peers.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", path)


def write_layers(a, peers, thread_counts, ours, our_layers, ort_layers, fused, out_dir):
    names = list(our_layers[(ours[0], thread_counts[0])][0].keys())
    # A fused block's time is reported on one of its layers: both layers of every fused pair
    # (dwN, pwN) are marked, and the pairs get their own subtotal instead of being split
    # between depthwise and pointwise.
    fused = {f"{k}{m.group(1)}" for n in fused for m in [re.match(r"^(?:dw|pw)(\d+)$", n)] if m
             for k in ("dw", "pw")}
    kinds = {"conv0": lambda n: n == "conv0",
             "depthwise (unfused)" if fused else "depthwise": lambda n: n.startswith("dw") and n not in fused,
             "pointwise (unfused)" if fused else "pointwise": lambda n: n.startswith("pw") and n not in fused,
             "fc (pool + fc)": lambda n: n == "fc"}
    if fused:
        kinds["fused dw + pw pairs"] = lambda n: n in fused
    lines = [
        "# Per layer against ONNX Runtime (MobileNetV1 1.0-224, batch 1, fp32)",
        "",
        "<!-- generated by tools/onnx-reference/peers.py --layers; do not edit -->",
        "",
    ] + provenance(a, peers[:1], f"{a.rounds} interleaved rounds; per round, ours: the per-layer medians of "
                   f"`mobilenet bench --json --iters {a.iters}`; ONNX Runtime: per node, the median over {a.iters} "
                   "profiled runs of the profiler's kernel_time (enable_profiling), nodes summed per layer; each "
                   "cell is the median over rounds; the ratio is per round, median and min..max") + [
        "",
        "ONNX Runtime's nodes are mapped to our layers by the ONNX tensor names of make_fixture.py "
        "(`first_conv.*` -> conv0, `bottleneck.i.{0,1,2}` -> dw(i+1), `bottleneck.i.{3,4,5}` -> pw(i+1), "
        "pool/flatten/Gemm -> fc, since our fc layer includes the global average pool); its NCHWc layout "
        "reorders have no counterpart in our layers and are listed as `other`. The profiler adds a little "
        "time per node." + (" Layers marked * run in one of our fused depthwise -> pointwise blocks, whose "
                            "time is reported on one of the pair: compare such pairs by their sum (the "
                            "`fused dw + pw pairs` subtotal; the depthwise and pointwise subtotals then "
                            "cover the unfused layers only)." if fused else ""),
    ]
    for s in ours:
        for t in thread_counts:
            rounds = len(ort_layers[t])
            our = our_layers[(s, t)]
            theirs = [d for d, _ in ort_layers[t]]
            lines += ["", f"## ours `{s}` against ONNX Runtime {ort.__version__}, {t} thread(s)", "",
                      "| layer | ours ms | ORT ms | ours / ORT (median, min..max) |", "|---|---:|---:|---:|"]

            def row(label, pick):
                o = [sum(v for k, v in our[r].items() if pick(k)) for r in range(rounds)]
                x = [sum(v for k, v in theirs[r].items() if pick(k)) for r in range(rounds)]
                ratios = [p / q for p, q in zip(o, x) if p > 0 and q > 0]
                ratio = f"{median(ratios):.2f} ({min(ratios):.2f}..{max(ratios):.2f})" if ratios else "-"
                return f"| {label} | {median(o):.3f} | {median(x):.3f} | {ratio} |"
            for n in names:
                lines.append(row(n + (" *" if n in fused else ""), lambda k, n=n: k == n))
            lines.append(row("other (ORT layout reorders)", lambda k: k == "other"))
            for label, pick in kinds.items():
                lines.append(row(f"**{label}**", pick))
            lines.append(row("**sum of layers**", lambda k: True))
            e2e = [e for _, e in ort_layers[t]]
            lines.append(f"\nONNX Runtime end to end while profiled (the profiler's own overhead included): "
                         f"{median(e2e):.3f} ms, median over rounds.")
    path = os.path.join(out_dir, "layers-vs-ort.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
