"""SmolVLA at its published size, offline: ``lerobot/smolvla_base``'s architecture from facts.

A user who fine-tuned ``smolvla_base`` brings a checkpoint whose ``vlm_model_name`` is
``HuggingFaceTB/SmolVLM2-500M-Video-Instruct``; lerobot builds the backbone from that repo's
config, processor and tokenizer, which needs the hub. ``configs/smolvla_base.json`` holds the
sizes (SigLIP vision tower 768 wide x 12 layers at 512 px, patch 16, pixel shuffle 4 -> 64 tokens
an image; SmolLM2 text 960 wide, 15 heads, 5 KV heads, of which SmolVLA keeps the first 16 of 32
layers; vocabulary 49,280; an action expert at 0.75 of the text width; chunk 50, 10 steps), and
`write_base_smolvlm` writes a backbone folder from them: the real config and processor, and a
stand-in tokenizer of the real vocabulary size (a WordLevel vocabulary padded with filler
tokens; the special tokens SmolVLA looks up at their published ids where known).

The stand-in tokenizer gives the model its real embedding table but not the real token ids: a
bundle exported with it bakes the task in stand-in ids. `resolve_vlm_folder` therefore prefers
the real files when the Hugging Face cache has them (a user who fine-tuned has them) and falls
back to the stand-in only for random-weight models (benchmarks) or when told to.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgevla.deploy.bundle.cameras import CAMERAS, image_key
from edgevla.deploy.export.user_cache import user_cache_dir
from edgevla.training.torch_setup import ensure_torchvision

CONFIG_FILE = Path(__file__).resolve().parent / "configs" / "smolvla_base.json"
HUB_NAME = "HuggingFaceTB/SmolVLM2-500M-Video-Instruct"
# The special tokens SmolVLA and the SmolVLM processor look up, at SmolVLM2's ids where the
# published config gives them (image 49190, end of utterance = eos 49279, pad 2).
_SPECIAL_IDS = {"<|im_start|>": 1, "<|endoftext|>": 0, "<pad>": 2, "<unk>": 3,
                "<fake_token_around_image>": 49189, "<image>": 49190, "<global-img>": 49152,
                "<end_of_utterance>": 49279, "<row_1_col_1>": 49153, "<video>": 49191}
_WORDS = ["pick", "up", "the", "bag", "and", "place", "it", "in", "box", "put", "tea", "mug",
          "grasp", "move", "to", "left", "right", "a", "\n", "."]


def base_config() -> dict[str, Any]:
    return json.loads(CONFIG_FILE.read_text())


def write_base_smolvlm(folder: str | Path) -> Path:
    """A SmolVLM2-500M-shaped backbone folder (config, processor, stand-in tokenizer); idempotent."""
    ensure_torchvision()
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, SmolVLMConfig, SmolVLMImageProcessor, SmolVLMProcessor
    from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

    folder = Path(folder)
    cfg = base_config()
    stamp = folder / "edgevla_smolvla_base.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == cfg:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    vlm = cfg["vlm"]
    vocab_size = int(vlm["text_config"]["vocab_size"])
    vocab: dict[str, int] = dict(_SPECIAL_IDS)
    free = (i for i in range(vocab_size) if i not in set(_SPECIAL_IDS.values()))
    for word in _WORDS:
        vocab[word] = next(free)
    for i in free:  # the rest of the real vocabulary's rows, as filler tokens
        vocab[f"<tok{i}>"] = i
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split("\n", behavior="isolated"), pre_tokenizers.WhitespaceSplit()])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        extra_special_tokens={"fake_image_token": "<fake_token_around_image>",
                              "global_image_token": "<global-img>", "image_token": "<image>",
                              "end_of_utterance_token": "<end_of_utterance>"},
    )
    fast.save_pretrained(folder)
    SmolVLMConfig(image_token_id=vlm["image_token_id"], pad_token_id=_SPECIAL_IDS["<pad>"],
                  scale_factor=vlm["scale_factor"], vision_config=dict(vlm["vision_config"]),
                  text_config={**vlm["text_config"], "pad_token_id": _SPECIAL_IDS["<pad>"]},
                  ).save_pretrained(folder)
    side = vlm["vision_config"]["image_size"]
    image_proc = SmolVLMImageProcessor(do_resize=False, do_image_splitting=False,
                                       max_image_size={"longest_edge": side},
                                       size={"longest_edge": side})
    SmolVLMProcessor(image_proc, fast, SmolVLMVideoProcessor(),
                     image_seq_len=vlm["image_seq_len"]).save_pretrained(folder)
    stamp.write_text(json.dumps(cfg))
    return folder


def stand_in_folder() -> Path:
    """Where the stand-in backbone is written: the user's cache, never the checkpoint's folder."""
    return user_cache_dir() / "smolvlm2-500m-stand-in"


def cached_hub_vlm(name: str = HUB_NAME) -> Path | None:
    """The real backbone files from the local Hugging Face cache, if they are there (no network)."""
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(name, local_files_only=True,
                                      allow_patterns=["*.json", "*.txt", "*.model", "*.jinja"]))
    except Exception:  # noqa: BLE001 - not cached (or no hub library): the caller decides
        return None
    return path if (path / "config.json").is_file() and (path / "tokenizer.json").is_file() else None


def make_base_smolvla(vlm_folder: str | Path, cameras: tuple[str, ...] = CAMERAS,
                      image_hw: tuple[int, int] = (480, 640), state_dim: int = 6,
                      action_dim: int = 6, seed: int = 0, **overrides):
    """SmolVLAPolicy with smolvla_base's architecture and random weights, eval mode."""
    import torch

    ensure_torchvision()
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    inputs: dict[str, Any] = {image_key(c): PolicyFeature(type=FeatureType.VISUAL, shape=(3, *image_hw))
                              for c in cameras}
    inputs["observation.state"] = PolicyFeature(type=FeatureType.STATE, shape=(state_dim,))
    outputs = {"action": PolicyFeature(type=FeatureType.ACTION, shape=(action_dim,))}
    pol = dict(base_config()["policy"])
    pol["resize_imgs_with_padding"] = tuple(pol["resize_imgs_with_padding"])
    kw = dict(input_features=inputs, output_features=outputs, vlm_model_name=str(vlm_folder),
              load_vlm_weights=False, device="cpu", **pol)
    kw.update(overrides)
    torch.manual_seed(seed)
    return SmolVLAPolicy(SmolVLAConfig(**kw)).eval()
