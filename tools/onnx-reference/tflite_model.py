"""MobileNetV1 (width 1.0) as a .tflite flatbuffer with our batch-norm-folded weights, for
XNNPACK through LiteRT (peers.py's `xnnpack` and `xnnpack-int8` engines).

The network is rebuilt as a TensorFlow graph of `tf.nn` ops in NHWC from the folded weights
(peers.fold, the model crate's folding) and converted by `tf.lite.TFLiteConverter`. TensorFlow
(`pip install tensorflow-cpu`, a large download) is needed only to build the files; running
them needs `ai-edge-litert` alone.

- Layout: NHWC. Conv filters are HWIO (`w.transpose(2, 3, 1, 0)` of OIHW); depthwise filters
  are [kh, kw, channels, 1].
- Padding: stride-1 3x3 layers use SAME (1 on every side, as PyTorch's pad 1). At stride 2 TF's
  SAME pads (0, 1), PyTorch/ONNX pad 1 on every side: those layers get an explicit 1-pixel zero
  pad and VALID.
- ReLU6 is `tf.nn.relu6` after the bias add; the converter fuses both into the conv.
- int8: full-integer post-training quantization (`Optimize.DEFAULT`, a representative dataset,
  `TFLITE_BUILTINS_INT8`): int8 activations per tensor, int8 weights per output channel, float
  input and output through a Quantize / Dequantize pair at the ends.

peers.py runs this file as a child process: TensorFlow's protobuf descriptors clash with MNN's
when both are loaded in one process, and the timing process is better without TensorFlow.

    python tflite_model.py --weights W.safetensors --output M.tflite [--calibration CALIB.npy]
"""
import argparse
import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter


def folded_layers(state, blocks, fold):
    """[(kind, filter in TF layout, bias, stride)] for conv0, the 13 dw/pw pairs; and the fc."""
    layers = []
    w, b = fold(state, "first_conv.0", "first_conv.1")
    layers.append(("conv", w.transpose(2, 3, 1, 0), b, 2))
    for i, (_, stride) in enumerate(blocks):
        w, b = fold(state, f"bottleneck.{i}.0", f"bottleneck.{i}.1")
        layers.append(("dw", w[:, 0].transpose(1, 2, 0)[..., None], b, stride))
        w, b = fold(state, f"bottleneck.{i}.3", f"bottleneck.{i}.4")
        layers.append(("conv", w.transpose(2, 3, 1, 0), b, 1))
    return layers, (state["linear.weight"].T.copy(), state["linear.bias"])


def build_tflite(state, blocks, fold, resolution, calibration_nhwc=None):
    """The .tflite bytes: fp32, or full-integer int8 calibrated on `calibration_nhwc` [N,H,W,3]."""
    import tensorflow as tf

    layers, (fc_w, fc_b) = folded_layers(state, blocks, fold)

    def forward(x):
        for kind, w, b, stride in layers:
            pad = "SAME"
            if stride == 2:
                x = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
                pad = "VALID"
            if kind == "dw":
                x = tf.nn.depthwise_conv2d(x, tf.constant(w), [1, stride, stride, 1], pad)
            else:
                x = tf.nn.conv2d(x, tf.constant(w), stride, pad)
            x = tf.nn.relu6(tf.nn.bias_add(x, tf.constant(b)))
        x = tf.reduce_mean(x, axis=[1, 2])
        return tf.matmul(x, tf.constant(fc_w)) + tf.constant(fc_b)

    f = tf.function(forward, input_signature=[tf.TensorSpec([1, resolution, resolution, 3], tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    if calibration_nhwc is not None:
        calib = np.ascontiguousarray(calibration_nhwc, dtype=np.float32)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([calib[i:i + 1]] for i in range(len(calib)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="the reference model's state dict (safetensors)")
    ap.add_argument("--output", required=True, help="the .tflite file to write")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--calibration", default=None, help="NCHW f32 .npy images: write a full-integer int8 model")
    a = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from safetensors.numpy import load_file
    from make_fixture import BLOCKS
    from peers import fold
    calib = None if a.calibration is None else np.load(a.calibration).transpose(0, 2, 3, 1)
    flat = build_tflite(load_file(a.weights), BLOCKS, fold, a.resolution, calib)
    with open(a.output, "wb") as f:
        f.write(flat)


if __name__ == "__main__":
    main()
