"""The spatial-affinity add-on (the paper's contribution, Sec. III-A)."""
from __future__ import annotations

import gin
import torch
from einops import rearrange
from torch import nn

from crossscale_kit.downsamplers.base import Downsampler
from crossscale_kit.downsamplers.block import BlockMean
from crossscale_kit.frameworks.base import Framework, HostOutput
from crossscale_kit.frameworks.context import StepContext
from crossscale_kit.losses.gram import GramLoss
from crossscale_kit.samplers.base import PatchSampler
from crossscale_kit.samplers.correspondence import mr_to_hr_indices


def pair_scale(mr: torch.Tensor, hr: torch.Tensor) -> int:
    """Integer scale ``s`` with ``hr = (B, C, s*H, s*W)`` for ``mr = (B, C, H, W)``, or a ValueError."""
    if mr.dim() != 4 or hr.dim() != 4 or mr.shape[:2] != hr.shape[:2]:
        raise ValueError(f"MR {tuple(mr.shape)} and HR {tuple(hr.shape)} must be (B, C, H, W) with equal B and C.")
    h, w = mr.shape[-2:]
    hh, ww = hr.shape[-2:]
    if hh % h or ww % w or hh // h != ww // w:
        raise ValueError(
            f"HR {tuple(hr.shape)} is not an exact integer multiple of MR {tuple(mr.shape)}; the HR crop must be "
            "s times the MR crop (PairedRandomResizedCrop.hr_size = s * size)."
        )
    return hh // h


@gin.register
class SpatialAffinity(Framework):
    """Adds an HR teacher and a gram loss to any host framework.

    The HR teacher is a copy of the host's student feature path (encoder, plus the projection head
    for hosts that have one), initialised from the student and EMA-updated with the host's momentum.
    That is exactly the host's own EMA target when the host keeps one of the same path (LatentMIM's
    target encoder and head, I-JEPA's target encoder): by default (``share_host_ema``) the add-on then
    uses it as the teacher, running the same weights at the HR grid, instead of a second copy that
    would hold identical numbers at every step (one ViT of memory and one EMA update saved).
    For the MR patches the student encoded (or patches drawn by ``sampler``, encoded by the student in an
    extra pass), it encodes the ``s x s`` HR patches under each of them, the downsampler maps each block
    to one token, and ``total = host_loss + weight * gram(student_tokens, teacher_tokens)``.

    Args:
        host: the SSL framework (its ``view`` must be ``"mr"``).
        weight: gram-loss weight (paper: 1).
        downsampler: block downsampler (default ``BlockMean``, the authors' "bilinear") or a grid one
            (``GridInterpolate``), which makes the teacher encode the full HR image.
        sampler: None uses the host's student patches; a ``PatchSampler`` (its result's ``visible``) draws
            the SA patches itself (block-sampling ablation) and costs one extra student pass.
        teacher_full_image: the teacher encodes the whole HR image (attention over all HR patches) and
            the blocks under the chosen patches are gathered afterwards.
        gram: the ``GramLoss`` (default: per image, no negative removal).
        share_host_ema: use the host's EMA feature modules as the teacher when it has them; False keeps
            a separate copy (needed only if the teacher should follow another momentum schedule).
        frozen_teacher: a control, not the method: the teacher is a separate copy of the student at its
            initialisation (a random network) and is never updated, whatever ``share_host_ema`` says. With
            it the gram term still ties the student's affinities to the HR image's, but through fixed
            random features instead of a learning teacher: what SA gains this way is a regulariser's gain,
            not the teacher's knowledge.

    Shapes: batch ``{"mr": (B, C, H, W), "hr": (B, C, s*H, s*W)}``; student tokens ``(B, K, D)``;
    teacher HR tokens ``(B, K*s*s, D)`` -> ``(B, K, s, s, D)`` -> ``(B, K, D)``.
    """

    def __init__(
        self,
        host: Framework = gin.REQUIRED,
        weight: float = 1.0,
        downsampler: Downsampler | None = None,
        sampler: PatchSampler | None = None,
        teacher_full_image: bool = False,
        gram: nn.Module | None = None,
        share_host_ema: bool = True,
        frozen_teacher: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(host, Framework):
            raise TypeError(f"SpatialAffinity.host must be a Framework, got {type(host).__name__}.")
        if host.view != "mr":
            raise ValueError(
                f"SpatialAffinity needs a host whose student sees the MR image, got view={host.view!r}; "
                "set the host's view = 'mr'."
            )
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}.")
        self.host = host
        self.view = host.view
        self.weight = float(weight)
        self.downsampler = downsampler if downsampler is not None else BlockMean()
        self.sampler = sampler
        self.teacher_full_image = bool(teacher_full_image) or self.downsampler.full_grid
        self.gram = gram if gram is not None else GramLoss()
        self.ema_momentum = host.ema_momentum  # the teacher follows the host's schedule
        self.frozen_teacher = bool(frozen_teacher)
        shared = host.ema_feature_modules() if share_host_ema and not self.frozen_teacher else None
        if shared is None:
            self.add_ema(host.feature_modules(), "own_teacher")
        else:
            self.own_teacher = None

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """The host's EMA pairs and the add-on's own teacher, unless that is frozen (:attr:`frozen_teacher`)."""
        pairs = super().ema_pairs()
        if self.frozen_teacher:
            pairs = [(online, ema) for online, ema in pairs if ema is not self.own_teacher]
        return pairs

    # -- role: the add-on exports and compares the host's student ----------------------------------
    @property
    def student_encoder(self) -> nn.Module:
        return self.host.student_encoder

    def feature_modules(self) -> nn.ModuleDict:
        return self.host.feature_modules()

    @property
    def teacher(self) -> nn.ModuleDict:
        """The HR teacher's feature modules (``"encoder"``, and ``"head"`` for hosts with one)."""
        return self.own_teacher if self.own_teacher is not None else self.host.ema_feature_modules()

    def mask_samplers(self) -> list:
        """The host's samplers, then the add-on's own (block-sampling ablation) if it has one."""
        return self.host.mask_samplers() + ([self.sampler] if self.sampler is not None else [])

    # -- objective -------------------------------------------------------------------------------
    def teacher_tokens(self, hr: torch.Tensor, idx: torch.Tensor, mr_grid: tuple[int, int], scale: int) -> torch.Tensor:
        """Downsampled HR-teacher tokens ``(B, K, D)`` for MR patches ``idx`` ``(B, K)``.

        The teacher encodes without gradient; the downsampler runs with gradients enabled, so a learned
        one (``learnable``) is trained in both the block and the whole-grid path.
        """
        gh, gw = mr_grid
        with torch.no_grad():
            if self.downsampler.full_grid:
                tokens = Framework.features_from_modules(self.teacher, hr, None)  # (B, sH*sW, D)
            else:
                hr_idx = mr_to_hr_indices(idx, mr_grid, scale)  # (B, K*s*s)
                if self.teacher_full_image:
                    full = Framework.features_from_modules(self.teacher, hr, None)
                    tokens = torch.gather(full, 1, hr_idx[..., None].expand(-1, -1, full.shape[-1]))
                else:
                    tokens = Framework.features_from_modules(self.teacher, hr, hr_idx)
        if self.downsampler.full_grid:
            grid = rearrange(tokens, "b (h w) d -> b h w d", h=gh * scale, w=gw * scale)
            low = rearrange(self.downsampler(grid, scale), "b h w d -> b (h w) d")  # (B, H*W, D)
            return torch.gather(low, 1, idx[..., None].expand(-1, -1, low.shape[-1]))
        blocks = rearrange(tokens, "b (k i j) d -> b k i j d", i=scale, j=scale)  # (B, K, s, s, D)
        return self.downsampler(blocks, scale)

    @property
    def views(self) -> tuple[str, ...]:
        return ("mr", "hr")  # the host's MR student and the HR teacher

    def forward(self, batch: dict, ctx: StepContext | None = None) -> HostOutput:
        out = self.host(batch, ctx)
        mr, hr = batch["mr"], batch["hr"]
        scale = pair_scale(mr, hr)
        grid = out.grid or self.student_encoder.grid_size(mr.shape[-2], mr.shape[-1])
        if self.sampler is None:
            if out.student_idx is None or out.student_tokens is None:
                raise ValueError(f"{type(self.host).__name__} returned no student patches; give SpatialAffinity a sampler.")
            idx, student = out.student_idx, out.student_tokens
        else:
            idx = self.sample_patches(self.sampler, mr.shape[0], grid, ctx).visible.to(mr.device, non_blocking=True)
            student = self.host.student_features(mr, idx)
        teacher = self.teacher_tokens(hr, idx, grid, scale)
        gram = self.gram(student, teacher)
        loss = out.loss + self.weight * gram
        logs = dict(out.logs)
        logs.update({"loss/host": out.loss.detach(), "loss/gram": gram.detach(), "loss/total": loss.detach()})
        monitor = {**out.monitor, "teacher": teacher.detach()}  # the HR teacher's downsampled tokens
        return HostOutput(loss=loss, logs=logs, student_idx=idx, student_tokens=student, grid=grid, monitor=monitor)
