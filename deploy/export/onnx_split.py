"""Split a per-step graph into its constant-per-chunk part and the part that runs every step.

The SmolVLA denoise stage runs N times per chunk with the same prefix (pad mask + K/V). Part of
its graph depends on the prefix only: the attention masks built from the pad mask, the RoPE
position ids and their sin/cos, the GQA head expansion and transposition of the expert's
pre-projected cross-attention K/V. ``split_per_step`` moves those nodes into a separate "prep"
graph (run once per chunk) and leaves a "step" graph that takes the prep graph's outputs as extra
inputs. Same ops, same order: the composition computes the same numbers as the original graph.

The split works on ONNX Runtime's *basic*-optimised graph (constant folding, redundant node
removal: standard ONNX ops only, portable), where the shape arithmetic the exporter emits for
``x_t.shape[0]`` & co. is already folded away; before that, almost every prefix-only node hangs
off a ``Shape(x_t)`` and nothing could be moved. Export side only (needs the ``onnx`` package).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class SplitReport:
    prep_nodes: int
    step_nodes: int
    frontier: list[str]        # tensors the prep graph hands to the step graph


def basic_optimized(src: str | Path, dst: str | Path) -> Path:
    """Write ``src`` after ONNX Runtime's basic (portable) graph optimisations to ``dst``."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    return Path(dst)


def simplify_shapes(path: str | Path) -> int:
    """Drop no-op shape nodes in place; returns how many nodes were removed.

    * ``Reshape(Reshape(x, a), b)`` -> ``Reshape(x, b)`` when ``b`` is a constant without 0
      entries (a 0 copies a dimension of the intermediate; -1 is fine, the count is the same);
      identities and one-input Concats in between are looked through;
    * a Reshape, Slice, Expand, Identity or one-input Concat whose output has its input's
      (static, inferred) shape is bypassed.

    The exporter leaves many of these around the fused RoPE/attention nodes and ORT's
    MatMul+Add -> Gemm rewrite (3-D -> 2-D -> 3-D); ONNX Runtime runs each of them as a kernel,
    a few microseconds apiece, ~30 per denoise step. Nodes left without readers are dropped.
    """
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(str(path))
    g = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    producer = {o: n for n in g.node for o in n.output}
    before = len(g.node)

    def producer_past_identities(name):
        # a one-input Concat (lerobot's ``torch.cat([x])``) is an identity too
        src = producer.get(name)
        while src is not None and (src.op_type == "Identity"
                                   or (src.op_type == "Concat" and len(src.input) == 1)):
            src = producer.get(src.input[0])
        return src

    for n in g.node:
        if n.op_type != "Reshape" or len(n.input) < 2:
            continue
        src = producer_past_identities(n.input[0])
        shape = consts.get(n.input[1])
        if (src is None or src.op_type != "Reshape" or shape is None or (shape == 0).any()
                or any(a.name == "allowzero" and a.i for a in (*n.attribute, *src.attribute))):
            continue
        n.input[0] = src.input[0]

    def shapes_of(m):
        inferred = shape_inference.infer_shapes(m)
        out = {}
        for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
            dims = v.type.tensor_type.shape.dim
            if v.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
                out[v.name] = tuple(d.dim_value for d in dims)
        return out

    shapes = shapes_of(model)
    graph_out = {o.name for o in g.output}
    rename: dict[str, str] = {}
    for n in g.node:
        n.input[:] = [rename.get(i, i) for i in n.input]
        data = n.input[0] if n.input else ""
        no_op = (n.op_type in ("Reshape", "Expand", "Identity")
                 or (n.op_type == "Concat" and len(n.input) == 1)
                 # a same-shape Slice is a copy unless it steps backwards
                 or (n.op_type == "Slice" and (len(n.input) < 5 or not n.input[4] or (
                     n.input[4] in consts and (consts[n.input[4]] == 1).all()))))
        if (no_op and len(n.output) == 1 and n.output[0] not in graph_out
                and data in shapes and shapes.get(n.output[0]) == shapes[data]):
            rename[n.output[0]] = data
    while True:
        read = {i for n in g.node for i in n.input} | graph_out
        dead = [n for n in g.node if not any(o in read for o in n.output)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    removed = before - len(g.node)
    if removed:
        onnx.save(model, str(path))
    return removed


def split_per_step(src: str | Path, prep_path: str | Path, step_path: str | Path,
                   per_step_inputs: tuple[str, ...]) -> SplitReport:
    """``src`` -> ``prep_path`` (nodes that depend only on the other inputs) + ``step_path``.

    A node goes to the prep graph when it reads at least one constant-per-chunk graph input (or
    a tensor the prep graph computes) and nothing else than those, initializers and Constant
    nodes. Constant nodes and initializers are copied to whichever graph reads them.
    """
    import onnx
    from onnx import helper

    model = onnx.load(str(src))
    g = model.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
           for n in g.node for a in n.attribute):
        raise ValueError(f"{src}: graphs with control-flow subgraphs are not split")
    names = {i.name for i in g.input}
    unknown = [n for n in per_step_inputs if n not in names]
    if unknown:
        raise ValueError(f"{src}: no graph input(s) {unknown}")
    inits = {t.name for t in g.initializer}
    consts = [n for n in g.node if n.op_type == "Constant"]
    const_out = {o for n in consts for o in n.output}
    prefix = {i.name for i in g.input if i.name not in per_step_inputs}
    prep_nodes, step_nodes = [], []
    for n in g.node:
        if n.op_type == "Constant":
            continue
        ins = [i for i in n.input if i]
        if (any(i in prefix for i in ins)
                and all(i in prefix or i in inits or i in const_out for i in ins)):
            prep_nodes.append(n)
            prefix.update(o for o in n.output if o)
        else:
            step_nodes.append(n)
    prep_out = {o for n in prep_nodes for o in n.output}
    frontier: list[str] = []
    for n in step_nodes:
        for i in n.input:
            if i in prep_out and i not in frontier:
                frontier.append(i)
    for o in g.output:
        if o.name in prep_out and o.name not in frontier:
            frontier.append(o.name)
    inferred = onnx.shape_inference.infer_shapes(model)
    vi = {v.name: v for v in (*inferred.graph.value_info, *inferred.graph.output)}
    missing = [f for f in frontier if f not in vi or not vi[f].type.tensor_type.elem_type]
    if missing:
        raise ValueError(f"{src}: no type for split tensor(s) {missing}")
    front_vi = [vi[f] for f in frontier]

    def build(nodes, inputs, outputs, name):
        used = {i for n in nodes for i in n.input}
        graph = helper.make_graph([c for c in consts if c.output[0] in used] + list(nodes), name,
                                  inputs, outputs, [t for t in g.initializer if t.name in used])
        m = helper.make_model(graph, opset_imports=list(model.opset_import),
                              ir_version=model.ir_version)
        onnx.checker.check_model(m)
        return m, used

    prep_used = {i for n in prep_nodes for i in n.input}
    prep, _ = build(prep_nodes, [i for i in g.input if i.name in prep_used], front_vi, "prep")
    step_used = {i for n in step_nodes for i in n.input} | {o.name for o in g.output}
    step, _ = build(step_nodes, [i for i in g.input if i.name in step_used] + front_vi,
                    list(g.output), "step")
    onnx.save(prep, str(prep_path))
    onnx.save(step, str(step_path))
    return SplitReport(prep_nodes=len(prep_nodes), step_nodes=len(step_nodes), frontier=frontier)
