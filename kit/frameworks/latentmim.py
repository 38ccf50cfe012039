"""LatentMIM host framework (Wei, Gupta, Morgado, ECCV 2024)."""
from __future__ import annotations

import gin
import torch
from torch import nn

from crossscale_kit.ema.schedules import Cosine
from crossscale_kit.encoders.projection_head import ProjectionHead
from crossscale_kit.frameworks.base import Framework, HostOutput
from crossscale_kit.frameworks.context import StepContext
from crossscale_kit.losses.infonce import PatchInfoNCE
from crossscale_kit.predictors.latentmim_decoder import CrossAttentionDecoder
from crossscale_kit.samplers.base import PatchSampler
from crossscale_kit.samplers.random_split import RandomSplit


@gin.register
class LatentMIM(Framework):
    """Latent masked image modelling with an EMA target encoder.

    Per image, ``sampler`` splits the patch grid into visible and target patches. The online encoder
    encodes the visible patches, the projection head maps them; the decoder predicts the target
    latents; the EMA target encoder (with its EMA head) encodes only the target patches; the loss is
    the per-image patch InfoNCE between predictions and targets. With an encoder CLS token (the
    released model) the CLS output also goes through the head and joins the decoder's keys/values; the
    target encoder's CLS joins its pass and is dropped.

    Args:
        encoder: the online ``ViTEncoder`` (the exported student).
        head: projection head (None builds LatentMIM's 3-layer MLP, hidden 4096).
        decoder: cross-attention decoder (None builds width 512, depth 3, 16 heads).
        sampler: visible/target split (None: ``RandomSplit(20)``).
        loss: ``PatchInfoNCE(tau=0.2)`` by default.
        ema_momentum: momentum schedule ``f(step, total)``; LatentMIM: cosine 0.99 -> 1.
        view: ``"mr"`` or ``"hr"``: which image of the batch the student sees (MR-only / HR-only runs).

    Output: ``HostOutput`` whose ``student_tokens`` are the projection-head outputs of the visible
    patches ``(B, K, D)`` and ``student_idx`` their indices ``(B, K)``.
    """

    def __init__(
        self,
        encoder: nn.Module = gin.REQUIRED,
        head: nn.Module | None = None,
        decoder: nn.Module | None = None,
        sampler: PatchSampler | None = None,
        loss: nn.Module | None = None,
        ema_momentum=None,
        view: str = "mr",
    ) -> None:
        super().__init__()
        self._init_host(encoder, view, ema_momentum if ema_momentum is not None else Cosine(0.99, 1.0))
        d = encoder.embed_dim
        self.head = head if head is not None else ProjectionHead(d)
        self.decoder = decoder if decoder is not None else CrossAttentionDecoder(d)
        self.sampler = sampler if sampler is not None else RandomSplit(20)
        self.loss_fn = loss if loss is not None else PatchInfoNCE()
        self.add_ema(self.encoder, "target_encoder")
        self.add_ema(self.head, "target_head")

    # -- objective -------------------------------------------------------------------------------
    def forward(self, batch: dict, ctx: StepContext | None = None) -> HostOutput:
        x = batch[self.view]
        grid = self.encoder.grid_size(x.shape[-2], x.shape[-1])
        masks = self.sample_patches(self.sampler, x.shape[0], grid, ctx).to(x.device, non_blocking=True)
        vis, tgt = masks.visible, masks.targets
        p = self.encoder.num_prefix_tokens  # the CLS token (as released) goes through the head to the decoder
        z_all = self.head(self.encoder(x, vis, keep_prefix=True))  # (B, P + K, D)
        z = z_all[:, p:]  # (B, K, D)
        pred = self.decoder(z, vis, tgt, grid, prefix=z_all[:, :p] if p else None)  # (B, M, D)
        with torch.no_grad():
            target = self.target_head(self.target_encoder(x, tgt))  # (B, M, D)
        loss = self.loss_fn(pred, target)
        return HostOutput(loss=loss, logs={"loss/host": loss.detach()}, student_idx=vis, student_tokens=z, grid=grid,
                          monitor={"student": z.detach(), "target": target})
