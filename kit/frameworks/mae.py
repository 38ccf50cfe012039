"""MAE host framework (He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022)."""
from __future__ import annotations

import gin
import torch
from torch import nn

from crossscale_kit.ema.schedules import Cosine
from crossscale_kit.frameworks.base import Framework, HostOutput
from crossscale_kit.frameworks.context import StepContext
from crossscale_kit.losses.pixel_mse import MaskedPixelMSE
from crossscale_kit.predictors.mae_decoder import MAEDecoder
from crossscale_kit.samplers.base import PatchSampler, SplitMasks
from crossscale_kit.samplers.random_split import RandomSplit


@gin.register
class MAE(Framework):
    """Masked autoencoder: encode a random 25 % of the patches, reconstruct the pixels of the rest.

    Per image, ``sampler`` splits the patch grid into visible and masked patches (MAE: 75 % masked at
    random). The encoder (the exported student) encodes only the visible patches; the light decoder
    sees them at their positions plus a mask token at every other position and predicts the pixels of
    the masked patches; the loss is the MSE to their per-patch normalised pixels.

    MAE keeps no EMA target. ``ema_momentum`` is used only by add-ons that keep their own EMA copy of
    the student (the spatial-affinity HR teacher); its default, cosine 0.996 -> 1, is I-JEPA's start
    with LatentMIM's cosine shape.

    Args:
        encoder: the ``ViTEncoder`` (the exported student).
        decoder: ``MAEDecoder`` (None builds MAE's width 512, depth 8, 16 heads for the encoder's patches).
        sampler: a sampler returning ``SplitMasks`` (None: ``RandomSplit(mask_ratio=0.75)``).
        loss: ``MaskedPixelMSE(norm_pix=True)`` by default.
        ema_momentum: momentum schedule ``f(step, total)`` for add-ons' EMA copies.
        view: ``"mr"`` or ``"hr"``: which image of the batch the student sees (MR-only / HR-only runs).

    Output: ``HostOutput`` whose ``student_idx`` are the visible indices ``(B, K)`` and
    ``student_tokens`` the encoder outputs there ``(B, K, D)``.
    """

    def __init__(
        self,
        encoder: nn.Module = gin.REQUIRED,
        decoder: nn.Module | None = None,
        sampler: PatchSampler | None = None,
        loss: nn.Module | None = None,
        ema_momentum=None,
        view: str = "mr",
    ) -> None:
        super().__init__()
        self._init_host(encoder, view, ema_momentum if ema_momentum is not None else Cosine(0.996, 1.0))
        pixels = encoder.patch_size**2 * encoder.in_chans
        self.decoder = decoder if decoder is not None else MAEDecoder(encoder.embed_dim, encoder.patch_size, encoder.in_chans)
        if getattr(self.decoder, "out_dim", pixels) != pixels:
            raise ValueError(
                f"MAE decoder predicts {self.decoder.out_dim} values per patch but a {encoder.patch_size} px patch of "
                f"{encoder.in_chans} bands has {pixels}; set MAEDecoder.patch_size and in_chans to the encoder's."
            )
        self.sampler = sampler if sampler is not None else RandomSplit(num_visible=None, mask_ratio=0.75)
        self.loss_fn = loss if loss is not None else MaskedPixelMSE()

    def forward(self, batch: dict, ctx: StepContext | None = None) -> HostOutput:
        x = batch[self.view]
        grid = self.encoder.grid_size(x.shape[-2], x.shape[-1])
        masks = self.sample_patches(self.sampler, x.shape[0], grid, ctx)
        if not isinstance(masks, SplitMasks):
            raise TypeError(f"MAE needs a sampler returning SplitMasks (e.g. RandomSplit), got {type(masks).__name__}.")
        masks = masks.to(x.device, non_blocking=True)
        vis, tgt = masks.visible, masks.targets
        z = self.encoder(x, vis)  # (B, K, D)
        pred = self.decoder(z, vis, tgt, grid)  # (B, M, p*p*C)
        pixels = self.encoder.patchify(x)  # (B, N, p*p*C)
        target = torch.gather(pixels, 1, tgt[..., None].expand(-1, -1, pixels.shape[-1]))
        loss = self.loss_fn(pred, target)
        logs = {"loss/host": loss.detach(), "mask/visible": float(vis.shape[1])}
        # MAE's target is pixels: only the student's features are watched
        return HostOutput(loss=loss, logs=logs, student_idx=vis, student_tokens=z, grid=grid, monitor={"student": z.detach()})
