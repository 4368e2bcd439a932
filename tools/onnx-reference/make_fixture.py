#!/usr/bin/env python3
"""Independent reference for the `model` crate: MobileNetV1 as an ONNX graph with explicit
BatchNormalization nodes, run by ONNX Runtime.

Writes a small fixture (weights under the PyTorch reference model's state_dict names, an input
batch and ONNX Runtime's logits) that `model/tests/fixture.rs` checks every kernel set against.
Nothing here shares code with the Rust side: the graph, the weight initialisation and the
batch-norm arithmetic are ONNX Runtime's own.

    python3 -m venv .venv && .venv/bin/pip install -r tools/onnx-reference/requirements.txt
    .venv/bin/python tools/onnx-reference/make_fixture.py --out model/tests/fixtures
"""
import argparse
import json
import math
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
import onnxruntime as ort
from safetensors.numpy import save_file

BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]


def channels(c, width):
    return max(8, int(math.floor(c * width + 1e-9)))


def build(width, resolution, classes, batch, seed):
    rng = np.random.default_rng(seed)
    state = {}
    nodes, inits = [], []

    def conv_bn_relu6(x, conv, bn, cin, cout, groups, stride):
        fan_in = (cin // groups) * 9 if groups > 1 or conv.startswith("first") else cin
        k = 3 if groups > 1 or conv.startswith("first") else 1
        w = rng.normal(0.0, math.sqrt(2.0 / fan_in), size=(cout, cin // groups, k, k)).astype(np.float32)
        b = rng.uniform(-0.1, 0.1, size=cout).astype(np.float32)
        gamma = rng.uniform(0.5, 1.5, size=cout).astype(np.float32)
        beta = rng.uniform(-0.2, 0.2, size=cout).astype(np.float32)
        mean = rng.uniform(-0.2, 0.2, size=cout).astype(np.float32)
        var = rng.uniform(0.5, 1.5, size=cout).astype(np.float32)
        for name, arr in [(f"{conv}.weight", w), (f"{conv}.bias", b), (f"{bn}.weight", gamma),
                          (f"{bn}.bias", beta), (f"{bn}.running_mean", mean), (f"{bn}.running_var", var)]:
            state[name] = arr
            inits.append(numpy_helper.from_array(arr, name))
        state[f"{bn}.num_batches_tracked"] = np.array(0, dtype=np.int64)
        pad = k // 2
        nodes.append(helper.make_node("Conv", [x, f"{conv}.weight", f"{conv}.bias"], [f"{conv}.out"],
                                      group=groups, kernel_shape=[k, k], pads=[pad] * 4, strides=[stride] * 2))
        nodes.append(helper.make_node("BatchNormalization",
                                      [f"{conv}.out", f"{bn}.weight", f"{bn}.bias", f"{bn}.running_mean", f"{bn}.running_var"],
                                      [f"{bn}.out"], epsilon=1e-5))
        nodes.append(helper.make_node("Clip", [f"{bn}.out", "zero", "six"], [f"{bn}.act"]))
        return f"{bn}.act"

    inits += [numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
              numpy_helper.from_array(np.array(6.0, np.float32), "six")]
    c0 = channels(32, width)
    x = conv_bn_relu6("input", "first_conv.0", "first_conv.1", 3, c0, 1, 2)
    cin = c0
    for i, (cout, stride) in enumerate(BLOCKS):
        cout = channels(cout, width)
        x = conv_bn_relu6(x, f"bottleneck.{i}.0", f"bottleneck.{i}.1", cin, cin, cin, stride)
        x = conv_bn_relu6(x, f"bottleneck.{i}.3", f"bottleneck.{i}.4", cin, cout, 1, 1)
        cin = cout
    lw = rng.normal(0.0, 1.0 / math.sqrt(cin), size=(classes, cin)).astype(np.float32)
    lb = rng.uniform(-0.1, 0.1, size=classes).astype(np.float32)
    state["linear.weight"], state["linear.bias"] = lw, lb
    inits += [numpy_helper.from_array(lw, "linear.weight"), numpy_helper.from_array(lb, "linear.bias")]
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"]))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["flat"], axis=1))
    nodes.append(helper.make_node("Gemm", ["flat", "linear.weight", "linear.bias"], ["logits"], transB=1))
    graph = helper.make_graph(
        nodes, "mobilenet_v1",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, resolution, resolution])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    image = rng.normal(0.0, 1.0, size=(batch, 3, resolution, resolution)).astype(np.float32)
    return model, state, image


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="model/tests/fixtures")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seed", type=int, default=2017)
    a = ap.parse_args()
    model, state, image = build(a.width, a.resolution, a.classes, a.batch, a.seed)
    opts = ort.SessionOptions()
    # No graph fusion: ONNX Runtime evaluates Conv, BatchNormalization and Clip as written.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    (logits,) = sess.run(None, {"input": image})
    os.makedirs(a.out, exist_ok=True)
    save_file(state, os.path.join(a.out, "weights.safetensors"))
    np.save(os.path.join(a.out, "input.npy"), image)
    np.save(os.path.join(a.out, "logits.npy"), logits.astype(np.float32))
    meta = {"width": a.width, "resolution": a.resolution, "classes": a.classes, "batch": a.batch,
            "seed": a.seed, "onnxruntime": ort.__version__, "onnx": onnx.__version__, "opset": 17,
            "graph_optimization": "disabled"}
    with open(os.path.join(a.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print(json.dumps(meta), "logits[0][:5] =", logits[0][:5])


if __name__ == "__main__":
    main()
