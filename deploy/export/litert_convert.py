"""PyTorch -> LiteRT with the maintained converter, run inside the conversion environment.

``VENV/bin/python deploy/export/litert_convert.py PT2 EXAMPLE.npy CALIB.npy OUT_FP32 OUT_INT8``

This file is a script, not a module of the project's environment: litert-torch and
ai-edge-quantizer live in their own environment (``make litert-env``; their pins clash with the
project's; `litert_vision.litert_venv` says where it is), where edgevla is not installed. The exporter hands over a ``torch.export`` program
(``.pt2``: runs without lerobot) and numpy arrays, and reads back two ``.tflite`` files:

- fp32: ``litert_torch.convert`` of the program (batch-norms folded, NCHW kept at the interface);
- int8 full-integer (weights, activations and the model's input/output in int8: what an NPU such
  as the i.MX 95's eIQ Neutron takes): ai-edge-quantizer's ``static_wi8_ai8`` recipe on the fp32
  model, calibrated on CALIB. litert-torch's own PT2E quantizer leaves LayerNorm, attention and
  softmax of a ViT in float, so it is not used.

The converter names the input ``args_0`` and the output ``output_0``; the runtime maps them to the
stage's names by position (`deploy/inference/backends.py`). Prints one JSON line: the signature and
the int8 model's input/output quantization.
"""

from __future__ import annotations

import json
import sys


def convert(pt2: str, example: str, calib: str, out_fp32: str, out_int8: str) -> dict:
    import litert_torch
    import numpy as np
    import torch
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer, recipe

    program = torch.export.load(pt2)
    x = torch.from_numpy(np.load(example))
    litert_torch.convert(program.module(), (x,)).export(out_fp32)

    signatures = Interpreter(model_path=out_fp32).get_signature_list()
    key = next(iter(signatures))
    name = signatures[key]["inputs"][0]
    q = quantizer.Quantizer(out_fp32)
    q.load_quantization_recipe(recipe.static_wi8_ai8())
    batches = np.load(calib)
    result = q.calibrate({key: [{name: b} for b in batches]}, num_threads=2)
    q.quantize(result).export_model(out_int8, overwrite=True)

    interp = Interpreter(model_path=out_int8)
    io = [(d["name"], str(np.dtype(d["dtype"])), [float(v) for v in d["quantization"]])
          for d in (*interp.get_input_details(), *interp.get_output_details())]
    return {"signature": key, "input": name, "int8_io": io}


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    print(json.dumps(convert(*argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
