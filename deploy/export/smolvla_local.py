"""Offline policy builders for export tests and benchmarks: tiny ACT and SmolVLA with random weights.

SmolVLA's constructor calls ``AutoConfig/AutoProcessor.from_pretrained(vlm_model_name)``; with no
hub access that name must be a local folder holding a SmolVLM config, an image/video processor
and a tokenizer whose special tokens give ``fake_image_token_id`` and ``global_image_token_id``.
`write_tiny_smolvlm` generates such a folder (a WordLevel tokenizer is enough).

This is deploy's private helper: the training side owns the real builders
(``edgevla.training.learn.policies``); this module only exists so export can be tested and benchmarked
on configs that build in seconds. Everything here imports torch/lerobot lazily.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevla.deploy.bundle.cameras import CAMERAS, image_key
from edgevla.deploy.export.exporter import export_bundle, synthetic_samples
from edgevla.training.torch_setup import ensure_torchvision

# A small but non-trivial joint space: 5 arm joints + gripper (the project's convention).
ACTION_DIM = 6
STATE_DIM = 6
_SPECIAL = ["<pad>", "<unk>", "<fake_token_around_image>", "<global-img>", "<image>",
            "<end_of_utterance>", "<video>", "<row_1_col_1>"]
_WORDS = ["pick", "up", "the", "bag", "and", "place", "it", "in", "box", "grasp", "move",
          "to", "left", "right", "red", "blue", "green", "cube", "\n", "."]


@dataclass(frozen=True)
class SmolVLMSize:
    """Widths of the generated VLM (SmolVLM2-500M is 768 text / 768 vision, 12 vision layers)."""

    text_hidden: int = 64
    text_layers: int = 4
    text_heads: int = 4
    text_kv_heads: int = 2
    vision_hidden: int = 48
    vision_layers: int = 2
    vision_heads: int = 4
    image_size: int = 64
    patch_size: int = 16
    scale_factor: int = 2
    rope_theta: float = 100000.0  # SmolLM2's; lerobot's apply_rope ignores it (trap 4)


def write_tiny_smolvlm(folder: str | Path, size: SmolVLMSize = SmolVLMSize()) -> Path:
    """Write a SmolVLM config + processor + tokenizer folder usable with load_vlm_weights=False."""

    ensure_torchvision()
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, SmolVLMConfig, SmolVLMImageProcessor, SmolVLMProcessor
    from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {tok: i for i, tok in enumerate(_SPECIAL + _WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
        extra_special_tokens={"fake_image_token": "<fake_token_around_image>",
                              "global_image_token": "<global-img>", "image_token": "<image>",
                              "end_of_utterance_token": "<end_of_utterance>"},
    )
    fast.save_pretrained(folder)
    vocab_size = len(vocab)
    cfg = SmolVLMConfig(
        image_token_id=vocab["<image>"],
        pad_token_id=vocab["<pad>"],
        scale_factor=size.scale_factor,
        vision_config={"hidden_size": size.vision_hidden, "intermediate_size": size.vision_hidden * 2,
                       "num_hidden_layers": size.vision_layers,
                       "num_attention_heads": size.vision_heads, "image_size": size.image_size,
                       "patch_size": size.patch_size},
        text_config={"model_type": "llama", "hidden_size": size.text_hidden,
                     "intermediate_size": size.text_hidden * 2,
                     "num_hidden_layers": size.text_layers, "num_attention_heads": size.text_heads,
                     "num_key_value_heads": size.text_kv_heads,
                     "head_dim": size.text_hidden // size.text_heads,
                     "vocab_size": vocab_size, "rope_theta": size.rope_theta,
                     "max_position_embeddings": 1024, "pad_token_id": vocab["<pad>"]},
    )
    cfg.save_pretrained(folder)
    image_proc = SmolVLMImageProcessor(do_resize=False, do_image_splitting=False,
                                       max_image_size={"longest_edge": size.image_size},
                                       size={"longest_edge": size.image_size})
    video_proc = SmolVLMVideoProcessor()
    seq_len = (size.image_size // size.patch_size) ** 2 // size.scale_factor ** 2
    SmolVLMProcessor(image_proc, fast, video_proc, image_seq_len=seq_len).save_pretrained(folder)
    return folder


def _features(kind: str, image_hw: tuple[int, int], cameras: tuple[str, ...],
              state_dim: int = STATE_DIM) -> tuple[dict, dict]:
    from lerobot.configs.types import FeatureType, PolicyFeature

    inputs: dict[str, Any] = {
        image_key(c): PolicyFeature(type=FeatureType.VISUAL, shape=(3, *image_hw))
        for c in cameras
    }
    inputs["observation.state"] = PolicyFeature(type=FeatureType.STATE, shape=(state_dim,))
    outputs = {"action": PolicyFeature(type=FeatureType.ACTION, shape=(ACTION_DIM,))}
    return inputs, outputs


def make_tiny_act(image_hw: tuple[int, int] = (96, 96), cameras: tuple[str, ...] = CAMERAS,
                  chunk_size: int = 20, dim_model: int = 64, seed: int = 0,
                  state_dim: int = STATE_DIM, **overrides):
    """ACTPolicy in eval mode, random weights, resnet18 backbone (no download)."""
    import torch

    ensure_torchvision()
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy

    inputs, outputs = _features("act", image_hw, cameras, state_dim)
    kw = dict(input_features=inputs, output_features=outputs, pretrained_backbone_weights=None,
              chunk_size=chunk_size, n_action_steps=chunk_size, dim_model=dim_model, n_heads=4,
              dim_feedforward=dim_model * 4, n_encoder_layers=2, n_decoder_layers=1,
              n_vae_encoder_layers=1, device="cpu")
    kw.update(overrides)
    torch.manual_seed(seed)
    policy = ACTPolicy(ACTConfig(**kw))
    return policy.eval()


def make_tiny_smolvla(vlm_folder: str | Path, image_hw: tuple[int, int] = (64, 64),
                      cameras: tuple[str, ...] = CAMERAS, chunk_size: int = 10,
                      num_steps: int = 10, seed: int = 0, **overrides):
    """SmolVLAPolicy in eval mode with random weights built from a `write_tiny_smolvlm` folder."""
    import torch

    ensure_torchvision()
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    vlm_cfg = json.loads((Path(vlm_folder) / "config.json").read_text())
    vis_size = vlm_cfg["vision_config"]["image_size"]
    inputs, outputs = _features("smolvla", image_hw, cameras)
    kw = dict(input_features=inputs, output_features=outputs, vlm_model_name=str(vlm_folder),
              load_vlm_weights=False, chunk_size=chunk_size, n_action_steps=chunk_size,
              num_steps=num_steps, resize_imgs_with_padding=(vis_size, vis_size),
              num_vlm_layers=vlm_cfg["text_config"]["num_hidden_layers"],
              tokenizer_max_length=16, device="cpu")
    kw.update(overrides)
    torch.manual_seed(seed)
    policy = SmolVLAPolicy(SmolVLAConfig(**kw))
    # lerobot inits these in fp32 but random-init Linear weights make activations tiny; the
    # defaults are fine for parity, the model is eval-only.
    return policy.eval()


_TINY: dict[str, Any] = {}


def tiny_bundle(kind: str, **export_kw) -> tuple[Any, Path]:
    """(policy, bundle dir) for a tiny ACT or SmolVLA, built once per process (tests, quick bench).

    Bundles live in a temporary folder removed at interpreter exit.
    """
    import atexit
    import shutil
    import tempfile

    if kind in _TINY:
        return _TINY[kind]

    root = _TINY.get("_root")
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="edgevla-tiny-"))
        atexit.register(shutil.rmtree, root, True)
        _TINY["_root"] = root
    if kind == "act":
        policy = make_tiny_act(image_hw=(64, 64))
    elif kind == "act-goal":  # observation.state = joints + servo goal (deploy/bundle/state_layout.py)
        policy = make_tiny_act(image_hw=(64, 64), state_dim=2 * STATE_DIM)
    elif kind == "smolvla":
        policy = make_tiny_smolvla(write_tiny_smolvlm(root / "vlm"))
    else:
        raise ValueError(f"tiny_bundle: kind must be act, act-goal or smolvla, got {kind!r}")
    stats = tiny_stats(policy)
    # LiteRT variants where a test looks for them (the conversion takes ~20 s a bundle)
    export_kw.setdefault("litert", kind != "act-goal")
    export_kw.setdefault("rtc_vjp", kind == "smolvla")  # real-time chunking's full correction
    export_bundle(policy, root / kind, stats=stats, samples=synthetic_samples(policy, 4),
                  model_id=f"tiny-{kind}", **export_kw)
    _TINY[kind] = (policy, root / kind)
    return _TINY[kind]


def tiny_stats(policy) -> dict[str, dict[str, Any]]:
    """Plausible dataset statistics: joints within about +-1.5 rad, ImageNet image stats."""
    import numpy as np

    rng = np.random.default_rng(7)
    n = policy.config.robot_state_feature.shape[0]
    s = {"observation.state": {"mean": rng.uniform(-0.3, 0.3, n), "std": rng.uniform(0.2, 0.6, n),
                               "min": np.full(n, -1.5), "max": np.full(n, 1.5)},
         "action": {"mean": rng.uniform(-0.3, 0.3, ACTION_DIM), "std": rng.uniform(0.2, 0.6, ACTION_DIM),
                    "min": np.full(ACTION_DIM, -1.5), "max": np.full(ACTION_DIM, 1.5)}}
    for k in policy.config.image_features:
        # lerobot keeps image stats as (3, 1, 1) so they broadcast over H, W
        s[k] = {"mean": np.array([0.485, 0.456, 0.406]).reshape(3, 1, 1),
                "std": np.array([0.229, 0.224, 0.225]).reshape(3, 1, 1),
                "min": np.zeros((3, 1, 1)), "max": np.ones((3, 1, 1))}
    return s
