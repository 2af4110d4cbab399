"""ACT (lerobot 0.4.4) split into two exportable stages.

* ``vision``  – normalised images [N_cam, 3, H, W] -> ResNet layer4 features projected to the
  transformer width, one token per feature-map cell: [N_cam, h*w, D]. Runs once per camera frame,
  and can run per camera in parallel (cameras are folded into the batch, 4-D).
* ``decoder`` – camera tokens + normalised state -> normalised action chunk [1, chunk, action_dim]
  (latent token, 1-D and 2-D position embeddings, transformer encoder, decoder, action head).
  The 2-D sinusoidal position embedding only depends on the feature-map shape: computed at export.

The VAE encoder is training-only (inference uses a zero latent), so it is not exported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgevla.deploy.export.smolvla import _export, _specs


@dataclass(frozen=True)
class ACTLayout:
    n_cameras: int
    image_hw: tuple[int, int]
    feat_hw: tuple[int, int]
    dim_model: int
    chunk_size: int
    state_dim: int
    action_dim: int

    @property
    def tokens_per_camera(self) -> int:
        return self.feat_hw[0] * self.feat_hw[1]


def layout_of(policy) -> ACTLayout:
    cfg = policy.config
    cams = list(cfg.image_features)
    shape = cfg.image_features[cams[0]].shape
    with torch.no_grad():
        fmap = policy.model.backbone(torch.zeros(1, *shape))["feature_map"]
    return ACTLayout(n_cameras=len(cams), image_hw=tuple(shape[1:]), feat_hw=tuple(fmap.shape[2:]),
                     dim_model=cfg.dim_model, chunk_size=cfg.chunk_size,
                     state_dim=cfg.robot_state_feature.shape[0],
                     action_dim=cfg.action_feature.shape[0])


class VisionStage(nn.Module):
    """[N, 3, H, W] normalised images -> [N, h*w, D] camera tokens."""

    def __init__(self, policy) -> None:
        super().__init__()
        self.backbone = policy.model.backbone
        self.proj = policy.model.encoder_img_feat_input_proj

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        fmap = self.proj(self.backbone(images)["feature_map"])  # [N, D, h, w]
        return fmap.flatten(2).transpose(1, 2)


class DecoderStage(nn.Module):
    """camera tokens [N_cam, h*w, D] + state [1, S] -> actions [1, chunk, A] (normalised)."""

    def __init__(self, policy, layout: ACTLayout) -> None:
        super().__init__()
        m = policy.model
        self.m = m
        self.layout = layout
        with torch.no_grad():
            dummy = torch.zeros(1, layout.dim_model, *layout.feat_hw)
            cam_pos = m.encoder_cam_feat_pos_embed(dummy).flatten(2).permute(2, 0, 1)  # [hw, 1, D]
            one_d = m.encoder_1d_feature_pos_embed.weight.unsqueeze(1)  # [n1d, 1, D]
            pos = torch.cat([one_d] + [cam_pos] * layout.n_cameras, dim=0)
            latent = m.encoder_latent_input_proj(torch.zeros(1, m.config.latent_dim))  # [1, D]
        self.register_buffer("pos", pos.clone(), persistent=False)
        self.register_buffer("latent_token", latent.clone(), persistent=False)

    def forward(self, cam_tokens: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        m, lo = self.m, self.layout
        b = state.shape[0]
        tokens = [self.latent_token.expand(b, -1)[None], m.encoder_robot_state_input_proj(state)[None]]
        cams = cam_tokens.reshape(b, lo.n_cameras * lo.tokens_per_camera, lo.dim_model)
        enc_in = torch.cat(tokens + [cams.transpose(0, 1)], dim=0)  # [S, B, D]
        pos = self.pos.expand(-1, b, -1)
        enc_out = m.encoder(enc_in, pos_embed=pos)
        dec_in = torch.zeros(lo.chunk_size, b, lo.dim_model, dtype=enc_out.dtype)
        dec_out = m.decoder(dec_in, enc_out, encoder_pos_embed=pos,
                            decoder_pos_embed=m.decoder_pos_embed.weight.unsqueeze(1))
        return m.action_head(dec_out.transpose(0, 1))


def export_onnx(policy, out_dir: str | Path, opset: int = 17,
                progress=None) -> tuple[ACTLayout, dict[str, dict[str, Any]]]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if policy.config.env_state_feature is not None:
        raise ValueError("ACT export: observation.environment_state inputs are not supported "
                         "(the project's robots have cameras + joint state only)")
    lo = layout_of(policy)
    g = torch.Generator().manual_seed(0)
    vision, decoder = VisionStage(policy).eval(), DecoderStage(policy, lo).eval()
    stages: dict[str, dict[str, Any]] = {}
    with torch.no_grad():
        v_in = {"images": torch.randn(lo.n_cameras, 3, *lo.image_hw, generator=g)}
        d_in = {"cam_tokens": vision(**v_in), "state": torch.randn(1, lo.state_dim, generator=g)}
        for name, module, inputs, outputs in (("vision", vision, v_in, ["cam_tokens"]),
                                              ("decoder", decoder, d_in, ["actions"])):
            path = out_dir / f"{name}.onnx"
            _export(module, tuple(inputs.values()), path, list(inputs), outputs, opset)
            stages[name] = {"file": path.name, "inputs": _specs(inputs), "outputs": outputs}
            if progress:
                progress(name)
    return lo, stages
