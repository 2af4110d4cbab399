"""SmolVLA (lerobot 0.4.4) split into three exportable stages: vision, prefill, denoise.

* ``vision``  – images [N_cam, 3, H, W] in [0, 1] (4-D: cameras folded into the batch, pitfall 3)
  -> resize-with-pad, [-1, 1], SigLIP encoder, connector, times sqrt(D) -> [N_cam, T_img, D].
  The patch position ids are computed once at export for the fixed image size (lerobot/transformers
  compute them with a per-sample bucketize loop that the exporters mistrace, SETUP-NOTES trap 1).
* ``prefill`` – image features + language tokens + normalised state -> per-layer prefix K/V
  (after RoPE, wavelength 10000 as lerobot's ``apply_rope`` hard-codes, pitfall 4) and the prefix
  pad mask. For the expert's cross-attention layers the expert's own K/V projections of the cached
  prefix are applied here once, instead of at every denoising step.
* ``denoise`` – one flow-matching step: (x_t, timestep, prefix pad mask, prefix K/V) -> v_t. The
  KV cache is an explicit input (pitfall 1); the timestep embedding is lerobot's own function
  (float64, 2*pi, sin then cos, pitfall 5). The actor calls it N times: x += dt * v_t.

Only torch modules and the ONNX export live here; running the stages is `edgevla.deploy.inference.pipeline`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgevla.deploy.export.onnx_split import basic_optimized, simplify_shapes, split_per_step


@dataclass(frozen=True)
class SmolVLALayout:
    """Shapes of the fixed-size decomposition (everything the board side needs to know)."""

    n_cameras: int
    image_hw: tuple[int, int]          # what the vision graph takes (policy input size)
    vision_hw: tuple[int, int]         # after resize-with-pad inside the graph
    img_tokens: int                    # tokens per camera after the connector
    hidden: int                        # VLM text width
    lang_len: int                      # language tokens (padded to this length)
    max_state_dim: int
    max_action_dim: int
    chunk_size: int
    num_steps: int
    num_layers: int
    cross_layers: tuple[int, ...]      # layers whose K/V the prefill pre-projects for the expert
    state_dim: int
    action_dim: int

    @property
    def prefix_len(self) -> int:
        return self.n_cameras * self.img_tokens + self.lang_len + 1

    def kv_names(self) -> list[str]:
        return [f"{kv}{i}" for i in range(self.num_layers) for kv in ("k", "v")]


def layout_of(policy, lang_len: int) -> SmolVLALayout:
    cfg = policy.config
    model = policy.model
    vwe = model.vlm_with_expert
    cams = list(cfg.image_features)
    img_shape = cfg.image_features[cams[0]].shape  # (3, H, W)
    vis_hw = tuple(cfg.resize_imgs_with_padding) if cfg.resize_imgs_with_padding else tuple(img_shape[1:])
    vcfg = vwe.config.vision_config
    n_patches = (vis_hw[0] // vcfg.patch_size) * (vis_hw[1] // vcfg.patch_size)
    img_tokens = n_patches // (vwe.config.scale_factor ** 2)
    cross = tuple(i for i in range(vwe.num_vlm_layers) if _is_cross_layer(vwe, i))
    return SmolVLALayout(
        n_cameras=len(cams), image_hw=tuple(img_shape[1:]), vision_hw=vis_hw,
        img_tokens=img_tokens, hidden=vwe.config.text_config.hidden_size, lang_len=lang_len,
        max_state_dim=cfg.max_state_dim, max_action_dim=cfg.max_action_dim,
        chunk_size=cfg.chunk_size, num_steps=cfg.num_steps, num_layers=vwe.num_vlm_layers,
        cross_layers=cross, state_dim=cfg.robot_state_feature.shape[0],
        action_dim=cfg.action_feature.shape[0])


def _is_cross_layer(vwe, layer_idx: int) -> bool:
    # Mirrors SmolVLMWithExpertModel.forward's choice when fill_kv_cache=False.
    return "cross" in vwe.attention_mode and not (
        vwe.self_attn_every_n_layers > 0 and layer_idx % vwe.self_attn_every_n_layers == 0)


def vision_position_ids(patch_h: int, patch_w: int, num_patches_per_side: int) -> torch.Tensor:
    """Transformers' bucketize position ids for a full (unpadded) image, computed once."""
    boundaries = torch.arange(1 / num_patches_per_side, 1.0, 1 / num_patches_per_side)
    h = torch.arange(patch_h, dtype=torch.float32) / patch_h * (1 - 1e-6)
    w = torch.arange(patch_w, dtype=torch.float32) / patch_w * (1 - 1e-6)
    bh = torch.bucketize(h, boundaries, right=True)
    bw = torch.bucketize(w, boundaries, right=True)
    return (bh[:, None] * num_patches_per_side + bw).flatten()


class VisionStage(nn.Module):
    """images [N, 3, H, W] in [0,1] -> image tokens [N, T, D] already scaled by sqrt(D)."""

    def __init__(self, policy, layout: SmolVLALayout) -> None:
        super().__init__()
        vlm = policy.model.vlm_with_expert.get_vlm_model()
        self.vision = vlm.vision_model
        self.connector = vlm.connector
        self.layout = layout
        emb = self.vision.embeddings
        ph, pw = layout.vision_hw[0] // emb.patch_size, layout.vision_hw[1] // emb.patch_size
        self.register_buffer("position_ids", vision_position_ids(ph, pw, emb.num_patches_per_side),
                             persistent=False)
        self.scale = float(layout.hidden) ** 0.5

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from lerobot.policies.smolvla.modeling_smolvla import resize_with_pad

        h, w = self.layout.vision_hw
        if tuple(images.shape[2:]) != (h, w):
            images = resize_with_pad(images, w, h, pad_value=0)
        x = images * 2.0 - 1.0
        emb = self.vision.embeddings
        x = emb.patch_embedding(x).flatten(2).transpose(1, 2)
        x = x + emb.position_embedding(self.position_ids)[None]
        # A full patch mask turns into an all-zero additive mask: pass none (same numbers).
        x = self.vision.encoder(inputs_embeds=x, attention_mask=None).last_hidden_state
        x = self.vision.post_layernorm(x)
        x = self.connector(x)
        return x * self.scale  # embed_prefix's sqrt(D) (trap 6: it is not in embed_image)


class PrefillStage(nn.Module):
    """(image tokens, language tokens/mask, state) -> prefix pad mask + K/V per layer."""

    def __init__(self, policy, layout: SmolVLALayout) -> None:
        super().__init__()
        self.model = policy.model
        self.layout = layout
        n_img = layout.n_cameras * layout.img_tokens
        # att_masks of embed_prefix: 0 for image+language tokens, 1 for the state token.
        cum = torch.zeros(layout.prefix_len, dtype=torch.int64)
        cum[n_img + layout.lang_len:] = 1
        self.register_buffer("att_2d", cum[None, :] <= cum[:, None], persistent=False)

    def forward(self, image_tokens, lang_tokens, lang_mask, state):
        lo = self.layout
        vwe = self.model.vlm_with_expert
        b = state.shape[0]
        imgs = image_tokens.reshape(b, lo.n_cameras * lo.img_tokens, lo.hidden)
        lang = vwe.embed_language_tokens(lang_tokens) * math.sqrt(lo.hidden)
        state = torch.cat([state, state.new_zeros(b, lo.max_state_dim - state.shape[1])], dim=1)
        state_emb = self.model.state_proj(state)[:, None, :]
        embs = torch.cat([imgs, lang, state_emb], dim=1)
        ones_img = torch.ones(b, imgs.shape[1], dtype=torch.bool)
        pad = torch.cat([ones_img, lang_mask.to(torch.bool), torch.ones(b, 1, dtype=torch.bool)], 1)
        pad_2d = pad[:, None, :] & pad[:, :, None]
        att_2d = self.att_2d[None] & pad_2d
        # cumsum on int64: the TorchScript exporter emits CumSum(bool) that ORT rejects (trap 2)
        position_ids = torch.cumsum(pad.to(torch.int64), dim=1) - 1
        _, kv = vwe.forward(attention_mask=att_2d, position_ids=position_ids, past_key_values=None,
                            inputs_embeds=[embs, None], use_cache=True, fill_kv_cache=True)
        outs = [pad]
        expert_layers = vwe.get_model_layers([vwe.get_vlm_model().text_model, vwe.lm_expert])[1]
        for i in range(lo.num_layers):
            k, v = kv[i]["key_states"], kv[i]["value_states"]
            if i in lo.cross_layers and expert_layers[i] is not None:
                attn = expert_layers[i].self_attn
                k = attn.k_proj(k.reshape(b, k.shape[1], -1)).view(b, k.shape[1], -1, attn.head_dim)
                v = attn.v_proj(v.reshape(b, v.shape[1], -1)).view(b, v.shape[1], -1, attn.head_dim)
            outs += [k, v]
        return tuple(outs)


class _PreProjected(nn.Identity):
    """Stands in for an expert K/V projection already applied by the prefill stage."""

    def __init__(self) -> None:
        super().__init__()
        # lerobot reads ``k_proj.weight.dtype`` to cast the cache
        self.register_buffer("weight", torch.zeros((), dtype=torch.float32), persistent=False)


class DenoiseStage(nn.Module):
    """One flow-matching step with the prefix cache as inputs: -> v_t [B, chunk, max_action_dim]."""

    def __init__(self, policy, layout: SmolVLALayout) -> None:
        super().__init__()
        # A private copy whose expert K/V projections on cross layers are identities: the prefill
        # already applied them, and the copy keeps the caller's policy untouched.
        self.model = copy.deepcopy(policy.model)
        vwe = self.model.vlm_with_expert
        expert_layers = vwe.get_model_layers([vwe.get_vlm_model().text_model, vwe.lm_expert])[1]
        for i in layout.cross_layers:
            if expert_layers[i] is not None:
                expert_layers[i].self_attn.k_proj = _PreProjected()
                expert_layers[i].self_attn.v_proj = _PreProjected()
        self.layout = layout
        c = layout.chunk_size
        # suffix att_masks are all 1 -> block-causal == lower-triangular among action tokens
        self.register_buffer("suffix_2d", torch.tril(torch.ones(c, c, dtype=torch.bool)),
                             persistent=False)

    def forward(self, x_t, timestep, prefix_pad_mask, *kv):
        lo = self.layout
        b = x_t.shape[0]
        suffix_embs, _, _ = self.model.embed_suffix(x_t, timestep)
        prefix_2d = prefix_pad_mask.to(torch.bool)[:, None, :].expand(b, lo.chunk_size,
                                                                      prefix_pad_mask.shape[1])
        full_2d = torch.cat([prefix_2d, self.suffix_2d[None].expand(b, -1, -1)], dim=2)
        offset = prefix_pad_mask.to(torch.int64).sum(dim=-1, keepdim=True)
        position_ids = offset + torch.arange(lo.chunk_size, dtype=torch.int64)[None]
        cache = {i: {"key_states": kv[2 * i], "value_states": kv[2 * i + 1]}
                 for i in range(lo.num_layers)}
        out, _ = self.model.vlm_with_expert.forward(
            attention_mask=full_2d, position_ids=position_ids, past_key_values=cache,
            inputs_embeds=[None, suffix_embs], use_cache=True, fill_kv_cache=False)
        suffix_out = out[1][:, -lo.chunk_size:].to(torch.float32)
        return self.model.action_out_proj(suffix_out)


def example_inputs(layout: SmolVLALayout, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    lo = layout
    return {
        "vision": {"images": torch.rand(lo.n_cameras, 3, *lo.image_hw, generator=g)},
        "prefill": {
            "image_tokens": torch.randn(lo.n_cameras, lo.img_tokens, lo.hidden, generator=g),
            "lang_tokens": torch.randint(0, 8, (1, lo.lang_len), generator=g),
            "lang_mask": torch.ones(1, lo.lang_len, dtype=torch.bool),
            "state": torch.randn(1, lo.state_dim, generator=g),
        },
    }


def export_onnx(policy, out_dir: str | Path, lang_len: int, opset: int = 17,
                progress=None, split_denoise: bool = True, fused_ops: bool = True
                ) -> tuple[SmolVLALayout, dict[str, dict[str, Any]]]:
    """Export the three stages; returns the layout and per-stage {file, inputs, outputs[, prep]}.

    ``split_denoise``: the denoise graph's prefix-only part (attention masks, RoPE sin/cos of
    the suffix positions, head expansion/transposition of the cross-attention K/V: everything
    that depends only on the prefix) goes to ``denoise.prep.onnx``, run once per chunk; the
    step graph ``denoise.onnx`` keeps the rest (`edgevla.deploy.export.onnx_split`, same numbers).
    ``fused_ops``: RoPE and attention of the prefill/denoise graphs as ONNX Runtime
    RotaryEmbedding / MultiHeadAttention nodes (False: standard ONNX ops only).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    lo = layout_of(policy, lang_len)
    ex = example_inputs(lo)
    vision, prefill, denoise = VisionStage(policy, lo), PrefillStage(policy, lo), DenoiseStage(policy, lo)
    stages: dict[str, dict[str, Any]] = {}
    with torch.no_grad():
        img_tok = vision(ex["vision"]["images"])
        pre_in = dict(ex["prefill"], image_tokens=img_tok)
        pre_out = prefill(**pre_in)
        kv_names = lo.kv_names()
        den_in = {"x_t": torch.randn(1, lo.chunk_size, lo.max_action_dim),
                  "timestep": torch.tensor([1.0]), "prefix_pad_mask": pre_out[0],
                  **dict(zip(kv_names, pre_out[1:]))}
        plan = [
            ("vision", vision, ex["vision"], ["image_tokens"]),
            ("prefill", prefill, pre_in, ["prefix_pad_mask", *kv_names]),
            ("denoise", denoise, den_in, ["v_t"]),
        ]
        for name, module, inputs, outputs in plan:
            path = out_dir / f"{name}.onnx"
            _export(module.eval(), tuple(inputs.values()), path, list(inputs), outputs, opset,
                    fused_ops=fused_ops and name != "vision")  # vision: no RoPE/LLM attention
            simplify_shapes(path)
            stages[name] = {"file": path.name, "inputs": _specs(inputs), "outputs": outputs}
            if name == "denoise" and split_denoise:
                stages[name]["prep"] = split_denoise_graph(path)
            if progress:
                progress(name)
    return lo, stages


def split_denoise_graph(path: Path) -> str:
    """``denoise.onnx`` -> ``denoise.prep.onnx`` (once per chunk) + step graph (in place)."""

    prep = path.with_name(path.stem + ".prep.onnx")
    tmp = path.with_name(path.stem + ".basic.onnx")
    try:
        basic_optimized(path, tmp)
        simplify_shapes(tmp)  # no-op casts are gone now: more chains show
        split_per_step(tmp, prep, path, per_step_inputs=("x_t", "timestep"))
    finally:
        tmp.unlink(missing_ok=True)
    return prep.name


def _specs(inputs: dict[str, torch.Tensor]) -> dict[str, dict[str, Any]]:
    return {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
            for k, v in inputs.items()}


def rope_without_scatter(x: torch.Tensor, positions: torch.Tensor,
                         max_wavelength: int = 10_000) -> torch.Tensor:
    """lerobot's ``apply_rope`` with the two halves joined by ``cat`` (same arithmetic).

    lerobot writes the rotated halves into ``torch.empty_like(x)`` by slice assignment, which
    the exporter turns into a zero constant plus two ScatterND per call: 15% of the fp32 denoise
    step's time in ONNX Runtime (measured on the small bench config), for nothing. Parity with
    lerobot's function is tested (tests/deploy/test_export.py).
    """
    sin, cos = _rope_sin_cos(x, positions, max_wavelength)
    dtype = x.dtype
    return _rotate(x.to(torch.float32), cos, sin).to(dtype)


def rope_fused(x: torch.Tensor, positions: torch.Tensor,
               max_wavelength: int = 10_000) -> torch.Tensor:
    """``rope_without_scatter`` exported as one ONNX Runtime ``RotaryEmbedding`` node.

    The split/4 Mul/Sub/Add/cat form costs 10 small nodes per call (6 calls per denoise step:
    ~60 of its ~190 nodes, each a few microseconds of dispatch on a 2-core A55-class CPU). The
    sin/cos are still computed by the graph from the positions (so they land in the per-chunk
    prep graph) and are handed to the fused node as its cache, indexed by 0..L-1. Batch 1 only
    (what the stage actors run); anything else keeps the portable form.
    """
    sin, cos = _rope_sin_cos(x, positions, max_wavelength)
    dtype = x.dtype
    x = x.to(torch.float32)
    if x.dim() != 4 or x.shape[0] != 1 or not torch.onnx.is_in_onnx_export():
        return _rotate(x, cos, sin).to(dtype)
    return _FusedRotary.apply(x, cos, sin, tuple(int(d) for d in x.shape)).to(dtype)


def _rope_sin_cos(x, positions, max_wavelength):
    d_half = x.shape[-1] // 2
    freq_exponents = (2.0 / x.shape[-1]) * torch.arange(d_half, dtype=torch.float32, device=x.device)
    timescale = max_wavelength**freq_exponents
    radians = positions[..., None].to(torch.float32) / timescale[None, None, :].to(torch.float32)
    radians = radians[..., None, :]
    return torch.sin(radians), torch.cos(radians)


def _rotate(x, cos, sin):
    x1, x2 = x.split(x.shape[-1] // 2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class _FusedRotary(torch.autograd.Function):
    """x [1, L, H, D], cos/sin [1, L, 1, D/2] -> com.microsoft.RotaryEmbedding (non-interleaved:
    the same half-split rotation as lerobot's ``apply_rope``)."""

    @staticmethod
    def forward(ctx, x, cos, sin, shape):  # noqa: D401 - torch.autograd.Function protocol
        return _rotate(x, cos, sin)

    @staticmethod
    def symbolic(g, x, cos, sin, shape):
        b, length, heads, dim = shape  # static at export (the traced graph may not carry it)

        def const(values):
            return g.op("Constant", value_t=torch.tensor(values, dtype=torch.int64))

        cache_shape = const([length, dim // 2])
        x3 = g.op("Reshape", x, const([b, length, heads * dim]))
        pos = g.op("Constant", value_t=torch.arange(length, dtype=torch.int64)[None, :])
        y = g.op("com.microsoft::RotaryEmbedding", x3, pos,
                 g.op("Reshape", cos, cache_shape), g.op("Reshape", sin, cache_shape),
                 num_heads_i=heads, interleaved_i=0)
        y.setType(x3.type().with_sizes([b, length, heads * dim]))
        return g.op("Reshape", y, const([b, length, heads, dim]))


def attention_fused(self, attention_mask, batch_size, head_dim, query_states, key_states,
                    value_states):
    """lerobot's ``eager_attention_forward`` exported as one ``MultiHeadAttention`` node.

    lerobot's form (transpose q and k, matmul, scale, ``where(mask, ., finfo.min)``, softmax,
    matmul, transpose, reshape) is 9 small nodes per layer. Here the GQA head expansion stays as
    lerobot writes it; the boolean mask becomes an additive bias of 0 / finfo.min (the same
    softmax: a masked logit ends at finfo.min either way), built from the mask alone, so in the
    denoise graph it lands in the per-chunk prep graph. Outside an ONNX export this is the plain
    computation (parity tested against lerobot's method).
    """
    heads, kv_heads = self.num_attention_heads, self.num_key_value_heads
    groups = heads // kv_heads
    length = key_states.shape[1]

    def expand(t):
        t = t[:, :, :, None, :].expand(batch_size, length, kv_heads, groups, head_dim)
        return t.reshape(batch_size, length, heads, head_dim)

    q = query_states.to(torch.float32)
    k, v = expand(key_states).to(torch.float32), expand(value_states)
    bias = torch.where(attention_mask[:, None, :, :], 0.0, torch.finfo(torch.float32).min)
    shapes = (tuple(int(d) for d in q.shape), int(length))
    if torch.onnx.is_in_onnx_export():
        return _FusedAttention.apply(q, k, v, bias, shapes)
    return _attend(q, k, v, bias)


def _attend(q, k, v, bias):
    b, s, heads, dim = q.shape
    att = torch.matmul(q.transpose(1, 2), k.permute(0, 2, 3, 1)) * dim**-0.5 + bias
    probs = nn.functional.softmax(att, dim=-1).to(v.dtype)
    out = torch.matmul(probs, v.permute(0, 2, 1, 3)).permute(0, 2, 1, 3)
    return out.reshape(b, s, heads * dim)


class _FusedAttention(torch.autograd.Function):
    """q [B, S, N, H], k/v [B, L, N, H], bias [B, 1, S, L] -> com.microsoft.MultiHeadAttention."""

    @staticmethod
    def forward(ctx, q, k, v, bias, shapes):  # noqa: D401 - torch.autograd.Function protocol
        return _attend(q, k, v, bias)

    @staticmethod
    def symbolic(g, q, k, v, bias, shapes):
        from torch.onnx.symbolic_helper import _optional_input_placeholder_tensor as none

        (b, s, heads, dim), length = shapes

        def reshape(t, shape):
            return g.op("Reshape", t, g.op("Constant", value_t=torch.tensor(shape, dtype=torch.int64)))

        q3 = reshape(q, [b, s, heads * dim])
        k3, v3 = reshape(k, [b, length, heads * dim]), reshape(v, [b, length, heads * dim])
        out = g.op("com.microsoft::MultiHeadAttention", q3, k3, v3, none(g), none(g), bias,
                   num_heads_i=heads, scale_f=dim**-0.5)
        out.setType(q3.type().with_sizes([b, s, heads * dim]))
        return out


class _ExportPatches:
    """Within the block, lerobot's SmolVLA layers use ``rope`` and ``attention`` (lerobot's own
    functions are restored after)."""

    def __init__(self, rope=rope_fused, attention=attention_fused) -> None:
        self._rope, self._attention = rope, attention

    def __enter__(self) -> None:
        from lerobot.policies.smolvla import smolvlm_with_expert as mod

        self._mod, self._orig = mod, (mod.apply_rope, mod.SmolVLMWithExpertModel.eager_attention_forward)
        mod.apply_rope = self._rope
        if self._attention is not None:
            mod.SmolVLMWithExpertModel.eager_attention_forward = self._attention

    def __exit__(self, *exc) -> None:
        self._mod.apply_rope, self._mod.SmolVLMWithExpertModel.eager_attention_forward = self._orig


def _export(module, args, path: Path, input_names, output_names, opset: int,
            fused_ops: bool = False) -> None:
    """``fused_ops``: SmolVLA's LLM stages, with RoPE and attention as ONNX Runtime
    (com.microsoft) nodes; otherwise standard ONNX ops only."""
    import warnings

    patches = _ExportPatches() if fused_ops else _ExportPatches(rope_without_scatter, None)
    with warnings.catch_warnings(), patches:
        warnings.simplefilter("ignore")
        # The TorchScript exporter: seconds instead of tens of seconds for the dynamo one, and
        # with the traps above worked around it produces clean graphs for fixed shapes.
        torch.onnx.export(module, args, str(path), input_names=input_names,
                          output_names=output_names, opset_version=opset, dynamo=False,
                          do_constant_folding=True,
                          custom_opsets={"com.microsoft": 1} if fused_ops else None)
