"""SmolVLA at smolvla_base's published size, offline: built from the shipped sizes, and a
fine-tuned smolvla_base checkpoint (its config names the hub backbone) loads with no hub access."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.train, pytest.mark.slow, pytest.mark.timeout(900)]

pytest.importorskip("lerobot")


@pytest.fixture(scope="module")
def base_policy(tmp_path_factory):
    from edgevla.deploy.export import smolvla_base as sb

    vlm = sb.write_base_smolvlm(tmp_path_factory.mktemp("vlm") / "smolvlm2-500m")
    return vlm, sb.make_base_smolvla(vlm)


def test_the_shipped_sizes_build_smolvla_base(base_policy):
    import torch

    from edgevla.deploy.export.smolvla_base import base_config

    vlm_dir, policy = base_policy
    cfg = base_config()
    vlm = policy.model.vlm_with_expert.get_vlm_model()
    params = {n: sum(p.numel() for p in m.parameters()) for n, m in
              (("vision", vlm.vision_model), ("text", vlm.text_model),
               ("expert", policy.model.vlm_with_expert.lm_expert))}
    total = sum(p.numel() for p in policy.parameters())
    # lerobot/smolvla_base is "450M": SigLIP-B/16 at 512 px 86M, 16 SmolLM2 layers + embeddings
    # 205M, the action expert 98M, connector and projections the rest
    assert 440e6 < total < 460e6, total
    assert 85e6 < params["vision"] < 88e6 and 200e6 < params["text"] < 210e6, params
    assert len(vlm.text_model.layers) == cfg["policy"]["num_vlm_layers"] == 16
    assert vlm.text_model.embed_tokens.num_embeddings == 49280
    assert policy.model.vlm_with_expert.lm_expert.config.hidden_size == 720  # 0.75 x 960
    tok = json.loads((vlm_dir / "tokenizer.json").read_text())["model"]["vocab"]
    assert len(tok) == 49280 and tok["<image>"] == 49190
    # 64 tokens an image: 1024 patches, pixel shuffle 4
    with torch.no_grad():
        feats = policy.model.vlm_with_expert.embed_image(torch.zeros(1, 3, 512, 512))
    assert tuple(feats.shape) == (1, 64, 960)


def test_a_fine_tuned_smolvla_base_checkpoint_loads_without_the_hub(base_policy, tmp_path,
                                                                   monkeypatch):
    from edgevla.deploy.export import exporter, smolvla_base

    _, policy = base_policy
    ckpt = tmp_path / "pretrained_model"
    policy.save_pretrained(ckpt)
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["vlm_model_name"] = smolvla_base.HUB_NAME  # what a smolvla_base fine-tune says
    (ckpt / "config.json").write_text(json.dumps(cfg))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))  # nothing cached
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="--vlm DIR.*--stand-in-tokenizer"):
        exporter.load_policy(ckpt)
    loaded, _ = exporter.load_policy(ckpt, stand_in_tokenizer=True)
    a = dict(policy.named_parameters())
    b = dict(loaded.named_parameters())
    assert a.keys() == b.keys()
    for name in ("model.vlm_with_expert.lm_expert.layers.0.mlp.up_proj.weight",
                 "model.action_out_proj.weight"):
        assert (a[name] == b[name]).all()
    assert (tmp_path / "cache" / "edgevla" / "smolvlm2-500m-stand-in" / "config.json").is_file()
