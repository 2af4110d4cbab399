"""Build lerobot 0.4.4's ACT and SmolVLA policies offline, sized for a 2-core CPU.

Everything here returns lerobot's own classes (`ACTConfig`/`ACTPolicy`,
`SmolVLAConfig`/`SmolVLAPolicy`); nothing is forked. Two things make them build with no
network: ACT gets `pretrained_backbone_weights=None`, and SmolVLA gets a locally generated tiny
SmolVLM folder (config + image/video processor + WordLevel tokenizer) as `vlm_model_name` with
`load_vlm_weights=False`, so every `from_pretrained` lerobot/transformers makes points at disk.

Feature layout (the project's dataset contract, see docs/ARCHITECTURE.md):
three cameras `observation.images.{top,gripper,left}`, `observation.state` (12: 6 joint
positions + 6 servo goal positions, `deploy/bundle/state_layout.py`; 6-value models still load) and
`action` (6), joints in servo-shaft radians.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgevla.deploy.bundle.cameras import CAMERAS, image_key
from edgevla.deploy.bundle.state_layout import DEFAULT_DIM as DEFAULT_STATE_DIM
from edgevla.training.torch_setup import ensure_torchvision

STATE_DIM = DEFAULT_STATE_DIM  # joint positions + servo goal (deploy/bundle/state_layout.py)
ACTION_DIM = 6
DEFAULT_IMAGE_HW: tuple[int, int] = (96, 128)  # (height, width) of the recorder's default
TASK = "put the tea bag in the mug"

# Words the tiny tokenizer knows; anything else maps to [UNK]. Task strings in this project are
# short English instructions, so a small closed vocabulary keeps the embedding table tiny.
_VOCAB_WORDS = (
    "put the tea bag in mug into pick up place a cup grab drop release move arm gripper left "
    "right top on table and to from of it"
).split()
# Special tokens SmolVLA needs (fake image / global image markers) and SmolVLMProcessor expects.
_SPECIAL_TOKENS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "bos_token": "<|im_start|>",
    "eos_token": "<end_of_utterance>",
}
_EXTRA_SPECIAL = {
    "fake_image_token": "<fake_token_around_image>",
    "image_token": "<image>",
    "global_image_token": "<global-img>",
    "end_of_utterance_token": "<end_of_utterance>",
    "video_token": "<video>",
}


def _ensure_lerobot_importable() -> None:
    # lerobot imports torchvision at import time; this registers its missing ops first.

    ensure_torchvision()


def _features(image_hw: tuple[int, int], cameras: tuple[str, ...] = CAMERAS,
              state_dim: int = STATE_DIM):
    from lerobot.configs.types import FeatureType, PolicyFeature

    h, w = image_hw
    inputs = {
        image_key(cam): PolicyFeature(type=FeatureType.VISUAL, shape=(3, h, w))
        for cam in cameras
    }
    inputs["observation.state"] = PolicyFeature(type=FeatureType.STATE, shape=(state_dim,))
    outputs = {"action": PolicyFeature(type=FeatureType.ACTION, shape=(ACTION_DIM,))}
    return inputs, outputs


# --------------------------------------------------------------------------------------- ACT


@dataclass
class ActSize:
    """Model dimensions for ACT. Defaults: small enough to train on 2 CPU cores in an hour.

    The reference used lerobot's defaults (dim_model 512, 4 encoder layers, resnet18 pretrained,
    chunk 100); `chunk_size` stays at the reference's 100.
    """

    chunk_size: int = 100
    n_action_steps: int = 100
    dim_model: int = 128
    n_heads: int = 4
    dim_feedforward: int = 512
    n_encoder_layers: int = 2
    n_decoder_layers: int = 1
    n_vae_encoder_layers: int = 2
    latent_dim: int = 16
    use_vae: bool = True
    kl_weight: float = 10.0
    dropout: float = 0.1
    vision_backbone: str = "resnet18"
    optimizer_lr: float = 1e-4
    optimizer_lr_backbone: float = 1e-4

    def __post_init__(self) -> None:
        if self.n_action_steps > self.chunk_size:
            raise ValueError(
                f"ActSize.n_action_steps must be <= chunk_size ({self.chunk_size}), got {self.n_action_steps}"
            )
        if self.dim_model % self.n_heads:
            raise ValueError(
                f"ActSize.dim_model ({self.dim_model}) must be divisible by n_heads ({self.n_heads})"
            )


def make_act_config(
    image_hw: tuple[int, int] = DEFAULT_IMAGE_HW,
    size: ActSize | None = None,
    cameras: tuple[str, ...] = CAMERAS,
    device: str = "cpu",
    state_dim: int = STATE_DIM,
    **overrides: Any,
):
    """lerobot `ACTConfig` for the project's 3 cameras, state and 6-D action, offline backbone."""
    _ensure_lerobot_importable()
    from lerobot.policies.act.configuration_act import ACTConfig

    size = size or ActSize()
    inputs, outputs = _features(image_hw, cameras, state_dim)
    kwargs = asdict(size)
    kwargs.update(overrides)
    return ACTConfig(
        input_features=inputs,
        output_features=outputs,
        pretrained_backbone_weights=None,  # no torchvision weight download
        device=device,
        push_to_hub=False,
        **kwargs,
    )


def make_act(config=None, dataset_stats: dict | None = None, **config_kwargs: Any):
    """Return `(policy, preprocessor, postprocessor)` for ACT (lerobot classes)."""
    _ensure_lerobot_importable()
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    config = config or make_act_config(**config_kwargs)
    policy = ACTPolicy(config)
    pre, post = make_pre_post_processors(config, dataset_stats=dataset_stats)
    return policy, pre, post


# ----------------------------------------------------------------------------------- SmolVLA


@dataclass
class SmolVLMSize:
    """Dimensions of the locally generated SmolVLM backbone (random init, no weights).

    The real SmolVLM2-500M: vision 768 wide x 12 layers at 512 px, text 960 wide x 32 layers.
    Same architecture, shrunk so a training step takes a fraction of a second on 2 cores.
    """

    image_size: int = 64  # vision tower input (SmolVLA pads/resizes every camera to this)
    patch_size: int = 16
    vision_hidden: int = 64
    vision_layers: int = 2
    vision_heads: int = 4
    text_hidden: int = 64
    text_layers: int = 4
    text_heads: int = 4
    text_kv_heads: int = 2
    scale_factor: int = 2  # pixel-shuffle in the connector: (64/16)^2 / 2^2 = 4 tokens per image

    def __post_init__(self) -> None:
        side = self.image_size // self.patch_size
        if self.image_size % self.patch_size or side % self.scale_factor:
            raise ValueError(
                "SmolVLMSize: image_size/patch_size must be an integer divisible by scale_factor, "
                f"got image_size={self.image_size}, patch_size={self.patch_size}, scale_factor={self.scale_factor}"
            )
        if self.text_hidden % self.text_heads or self.text_heads % self.text_kv_heads:
            raise ValueError(
                "SmolVLMSize: text_hidden must divide by text_heads and text_heads by text_kv_heads, got "
                f"{self.text_hidden}/{self.text_heads}/{self.text_kv_heads}"
            )


def write_tiny_smolvlm(folder: str | Path, size: SmolVLMSize | None = None) -> Path:
    """Write a SmolVLM config, processor and tokenizer to `folder` (idempotent) and return it.

    This is the offline stand-in for `HuggingFaceTB/SmolVLM2-500M-Video-Instruct`: the same
    model classes, random weights, a closed-vocabulary WordLevel tokenizer whose special tokens
    give SmolVLA its `fake_image_token_id` / `global_image_token_id`.
    """
    _ensure_lerobot_importable()

    size = size or SmolVLMSize()
    folder = Path(folder)
    stamp = folder / "edgevla_tiny_smolvlm.json"
    if stamp.exists() and json.loads(stamp.read_text()) == asdict(size):
        return folder
    folder.mkdir(parents=True, exist_ok=True)

    tokenizer = _tiny_tokenizer()
    _tiny_smolvlm_config(size, tokenizer).save_pretrained(folder)
    _tiny_smolvlm_processor(size, tokenizer).save_pretrained(folder)
    stamp.write_text(json.dumps(asdict(size)))
    return folder


def _tiny_tokenizer():
    """A WordLevel tokenizer over `_VOCAB_WORDS` with the special tokens SmolVLA looks up."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = list(dict.fromkeys([*_SPECIAL_TOKENS.values(), *_EXTRA_SPECIAL.values()]))
    vocab = {tok: i for i, tok in enumerate(specials + list(dict.fromkeys(_VOCAB_WORDS)) + ["\n"])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=_SPECIAL_TOKENS["unk_token"]))
    # Split on whitespace but keep "\n" (SmolVLA appends one to every task) as its own token.
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split("\n", behavior="isolated"), pre_tokenizers.WhitespaceSplit()]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        model_max_length=512,
        extra_special_tokens=_EXTRA_SPECIAL,
        **_SPECIAL_TOKENS,
    )
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [t for t in _EXTRA_SPECIAL.values() if t != _SPECIAL_TOKENS["eos_token"]]}
    )
    return tokenizer


def _tiny_smolvlm_config(size: SmolVLMSize, tokenizer):
    from transformers import SmolVLMConfig

    vision_config = {
        "hidden_size": size.vision_hidden,
        "intermediate_size": size.vision_hidden * 4,
        "num_hidden_layers": size.vision_layers,
        "num_attention_heads": size.vision_heads,
        "image_size": size.image_size,
        "patch_size": size.patch_size,
    }
    text_config = {
        "model_type": "llama",
        "hidden_size": size.text_hidden,
        "intermediate_size": size.text_hidden * 4,
        "num_hidden_layers": size.text_layers,
        "num_attention_heads": size.text_heads,
        "num_key_value_heads": size.text_kv_heads,
        "head_dim": size.text_hidden // size.text_heads,
        "vocab_size": len(tokenizer),
        "max_position_embeddings": 1024,
        "rope_theta": 100000.0,
        "rms_norm_eps": 1e-5,
        "pad_token_id": tokenizer.pad_token_id,
    }
    return SmolVLMConfig(
        vision_config=vision_config,
        text_config=text_config,
        scale_factor=size.scale_factor,
        image_token_id=tokenizer.convert_tokens_to_ids(_EXTRA_SPECIAL["image_token"]),
        pad_token_id=tokenizer.pad_token_id,
    )


def _tiny_smolvlm_processor(size: SmolVLMSize, tokenizer):
    from transformers import SmolVLMImageProcessor, SmolVLMProcessor
    from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

    image_processor = SmolVLMImageProcessor(
        do_resize=True,
        size={"longest_edge": size.image_size},
        max_image_size={"longest_edge": size.image_size},
        do_image_splitting=False,
    )
    video_processor = SmolVLMVideoProcessor(
        size={"longest_edge": size.image_size}, max_image_size={"longest_edge": size.image_size}
    )
    image_seq_len = (size.image_size // size.patch_size) ** 2 // size.scale_factor**2
    return SmolVLMProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        image_seq_len=image_seq_len,
    )


@dataclass
class SmolVLASize:
    """SmolVLA head dimensions. chunk_size 50 as in the reference."""

    chunk_size: int = 50
    n_action_steps: int = 50
    num_steps: int = 10  # flow-matching Euler steps at inference
    expert_width_multiplier: float = 0.75
    self_attn_every_n_layers: int = 2
    tokenizer_max_length: int = 16
    optimizer_lr: float = 1e-4
    scheduler_warmup_steps: int = 100
    scheduler_decay_steps: int = 30_000
    vlm: SmolVLMSize = field(default_factory=SmolVLMSize)


def make_smolvla_config(
    vlm_folder: str | Path,
    image_hw: tuple[int, int] = DEFAULT_IMAGE_HW,
    size: SmolVLASize | None = None,
    cameras: tuple[str, ...] = CAMERAS,
    device: str = "cpu",
    state_dim: int = STATE_DIM,
    **overrides: Any,
):
    """lerobot `SmolVLAConfig` pointing at a local tiny SmolVLM folder (written if missing)."""
    _ensure_lerobot_importable()
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

    size = size or SmolVLASize()
    folder = write_tiny_smolvlm(vlm_folder, size.vlm)
    inputs, outputs = _features(image_hw, cameras, state_dim)
    kwargs = {k: v for k, v in asdict(size).items() if k != "vlm"}
    kwargs.update(overrides)
    return SmolVLAConfig(
        input_features=inputs,
        output_features=outputs,
        vlm_model_name=str(Path(folder).resolve()),
        load_vlm_weights=False,
        resize_imgs_with_padding=(size.vlm.image_size, size.vlm.image_size),
        num_vlm_layers=size.vlm.text_layers,
        # The VLM is random here (no pretrained weights to preserve), so train all of it.
        train_expert_only=False,
        freeze_vision_encoder=False,
        device=device,
        push_to_hub=False,
        **kwargs,
    )


def make_smolvla(
    vlm_folder: str | Path | None = None,
    config=None,
    dataset_stats: dict | None = None,
    **config_kwargs: Any,
):
    """Return `(policy, preprocessor, postprocessor)` for SmolVLA (lerobot classes).

    `vlm_folder` receives the tiny SmolVLM (config/processor/tokenizer) when no `config` is given.
    """
    _ensure_lerobot_importable()
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    if config is None:
        if vlm_folder is None:
            raise ValueError("make_smolvla needs vlm_folder (where to write the tiny SmolVLM) or a config")
        config = make_smolvla_config(vlm_folder, **config_kwargs)
    policy = SmolVLAPolicy(config)
    pre, post = make_pre_post_processors(config, dataset_stats=dataset_stats)
    return policy, pre, post


def make_policy(kind: str, workdir: str | Path, dataset_stats: dict | None = None, **kwargs: Any):
    """`kind` in {"act", "smolvla"} -> (policy, pre, post). SmolVLA's VLM goes to workdir/vlm."""
    if kind == "act":
        return make_act(dataset_stats=dataset_stats, **kwargs)
    if kind == "smolvla":
        return make_smolvla(Path(workdir) / "vlm", dataset_stats=dataset_stats, **kwargs)
    raise ValueError(f"policy must be 'act' or 'smolvla', got {kind!r}")


def dummy_observation(image_hw: tuple[int, int] = DEFAULT_IMAGE_HW, batch: int = 1, seed: int = 0):
    """A random observation batch in the dataset's layout (float images in [0,1], CHW)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    h, w = image_hw
    obs: dict[str, Any] = {
        image_key(cam): torch.rand(batch, 3, h, w, generator=g) for cam in CAMERAS
    }
    obs["observation.state"] = torch.randn(batch, STATE_DIM, generator=g) * 0.3
    obs["task"] = [TASK] * batch
    return obs
