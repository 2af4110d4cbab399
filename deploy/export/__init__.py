"""From a trained checkpoint to a bundle: stage-wise ONNX export, quantization, LiteRT, parity checks, the inference benchmark."""
