"""Offline builders of lerobot's ACT and SmolVLA (no hub, every from_pretrained local)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.train


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def test_act_config_has_project_features_and_no_pretrained_backbone():
    from edgevla.training.learn import policies

    cfg = policies.make_act_config(image_hw=(48, 64))
    assert cfg.pretrained_backbone_weights is None
    assert set(cfg.input_features) == {
        "observation.images.top", "observation.images.gripper", "observation.images.left", "observation.state"}
    assert cfg.input_features["observation.images.left"].shape == (3, 48, 64)
    assert cfg.input_features["observation.state"].shape == (12,)  # joints + servo goal
    assert cfg.output_features["action"].shape == (6,)
    assert cfg.chunk_size == 100  # the reference's ACT chunk
    old = policies.make_act_config(image_hw=(48, 64), state_dim=6)  # positions-only layout
    assert old.input_features["observation.state"].shape == (6,)


def test_act_builds_and_predicts_a_chunk():
    import torch

    from edgevla.training.learn import policies

    policy, pre, post = policies.make_act(image_hw=(32, 32), chunk_size=10, n_action_steps=10, dim_model=32,
                                          n_heads=2, dim_feedforward=64, n_encoder_layers=1, n_vae_encoder_layers=1)
    policy.eval()
    obs = policies.dummy_observation((32, 32))
    with torch.no_grad():
        chunk = policy.predict_action_chunk(pre(obs))
    assert tuple(chunk.shape) == (1, 10, 6)


def test_tiny_smolvlm_folder_loads_offline_with_image_tokens(tmp_path):
    from transformers import AutoConfig, AutoProcessor, AutoTokenizer

    from edgevla.training.learn import policies

    folder = policies.write_tiny_smolvlm(tmp_path / "vlm")
    tok = AutoTokenizer.from_pretrained(folder)
    assert tok.fake_image_token_id != tok.unk_token_id
    assert tok.global_image_token_id != tok.unk_token_id
    assert tok.fake_image_token_id != tok.global_image_token_id
    ids = tok("put the tea bag in the mug\n")["input_ids"]
    assert tok.unk_token_id not in ids and len(ids) == 7
    proc = AutoProcessor.from_pretrained(folder)
    assert proc.tokenizer.fake_image_token_id == tok.fake_image_token_id
    cfg = AutoConfig.from_pretrained(folder)
    assert cfg.model_type == "smolvlm" and cfg.text_config.num_hidden_layers == policies.SmolVLMSize().text_layers
    # Idempotent: a second call with the same size keeps the folder as it is.
    stamp = (folder / "config.json").stat().st_mtime_ns
    policies.write_tiny_smolvlm(folder)
    assert (folder / "config.json").stat().st_mtime_ns == stamp


def test_smolvla_builds_offline_and_predicts_a_chunk(tmp_path):
    import torch

    from edgevla.training.learn import policies

    policy, pre, post = policies.make_smolvla(tmp_path / "vlm", image_hw=(48, 64))
    assert policy.config.vlm_model_name == str((tmp_path / "vlm").resolve())
    assert policy.config.load_vlm_weights is False
    assert policy.config.chunk_size == 50  # the reference's SmolVLA chunk
    policy.eval()
    with torch.no_grad():
        chunk = post(policy.predict_action_chunk(pre(policies.dummy_observation((48, 64)))))
    assert tuple(chunk.shape) == (1, 50, 6)
    assert torch.isfinite(chunk).all()


def test_size_validation_names_the_field():
    from edgevla.training.learn import policies

    with pytest.raises(ValueError, match="n_action_steps"):
        policies.ActSize(chunk_size=10, n_action_steps=20)
    with pytest.raises(ValueError, match="scale_factor"):
        policies.SmolVLMSize(image_size=48, patch_size=16, scale_factor=2)
    with pytest.raises(ValueError, match="'act' or 'smolvla'"):
        policies.make_policy("pi0", ".")
