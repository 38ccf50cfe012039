"""I-JEPA host framework (Assran et al., CVPR 2023)."""
from __future__ import annotations

import gin
import torch
import torch.nn.functional as F
from torch import nn

from crossscale_kit.ema.schedules import Linear
from crossscale_kit.frameworks.base import Framework, HostOutput
from crossscale_kit.frameworks.context import StepContext
from crossscale_kit.losses.smooth_l1 import SmoothL1Latent
from crossscale_kit.predictors.ijepa_predictor import IJEPAPredictor
from crossscale_kit.samplers.base import MultiBlockMasks, PatchSampler
from crossscale_kit.samplers.multiblock import MultiBlock


@gin.register
class IJEPA(Framework):
    """Joint-embedding predictive architecture with multiblock masks and an EMA target encoder.

    Per batch, ``sampler`` draws one context and ``M`` target blocks per image. The context encoder
    (the exported student) encodes only the context patches; the predictor maps them, with positioned
    mask tokens, to each target block; the EMA target encoder encodes the FULL image without gradient;
    the loss is smooth L1 between predictions and the layer-normed target tokens at the target indices.

    Args:
        encoder: the context ``ViTEncoder`` (the exported student).
        predictor: ``IJEPAPredictor`` (None builds width 384, depth 12, 6 heads).
        sampler: a sampler returning ``MultiBlockMasks`` (context ``(B, Kc)``, targets ``(B, M, Kt)``)
            (None: ``MultiBlock()`` with I-JEPA's released settings, faithful mode).
        loss: ``SmoothL1Latent(beta=1)`` by default.
        ema_momentum: momentum schedule ``f(step, total)``; I-JEPA: linear 0.996 -> 1.
        view: ``"mr"`` or ``"hr"``: which image of the batch the student sees (MR-only / HR-only runs).

    Output: ``HostOutput`` whose ``student_idx`` are the context indices ``(B, Kc)`` and
    ``student_tokens`` the context-encoder outputs there ``(B, Kc, D)`` (after its final LayerNorm),
    the features the spatial-affinity add-on compares.
    """

    def __init__(
        self,
        encoder: nn.Module = gin.REQUIRED,
        predictor: nn.Module | None = None,
        sampler: PatchSampler | None = None,
        loss: nn.Module | None = None,
        ema_momentum=None,
        view: str = "mr",
    ) -> None:
        super().__init__()
        self._init_host(encoder, view, ema_momentum if ema_momentum is not None else Linear(0.996, 1.0))
        self.predictor = predictor if predictor is not None else IJEPAPredictor(encoder.embed_dim)
        self.sampler = sampler if sampler is not None else MultiBlock()
        self.loss_fn = loss if loss is not None else SmoothL1Latent()
        self.add_ema(self.encoder, "target_encoder")

    # -- objective -------------------------------------------------------------------------------
    def forward(self, batch: dict, ctx: StepContext | None = None) -> HostOutput:
        x = batch[self.view]
        grid = self.encoder.grid_size(x.shape[-2], x.shape[-1])
        masks = self.sample_patches(self.sampler, x.shape[0], grid, ctx)  # global-batch consistent under DDP
        if not isinstance(masks, MultiBlockMasks):
            raise TypeError(f"IJEPA needs a sampler returning MultiBlockMasks (e.g. MultiBlock), got {type(masks).__name__}.")
        masks = masks.to(x.device, non_blocking=True)
        ctx, tgt = masks.context, masks.targets
        with torch.no_grad():
            full = self.target_encoder(x, None)  # (B, N, D)
        z = self.encoder(x, ctx)  # (B, Kc, D)
        pred = self.predictor(z, ctx, tgt, grid)  # (B, M, Kt, D)
        loss = self.loss_fn(pred, full, tgt)
        logs = {"loss/host": loss.detach(), "mask/context": float(ctx.shape[1]), "mask/target": float(tgt.shape[-1])}
        # what the predictor regresses onto (layer-normed as in the loss); computed only when read
        monitor = {"student": z.detach(), "target": lambda: F.layer_norm(full, full.shape[-1:])}
        return HostOutput(loss=loss, logs=logs, student_idx=ctx, student_tokens=z, grid=grid, monitor=monitor)
