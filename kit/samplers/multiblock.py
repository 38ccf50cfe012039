"""I-JEPA multiblock masks (Assran et al., CVPR 2023), faithful to the release or corrected."""
from __future__ import annotations

import math
from dataclasses import dataclass

import gin
import torch

from crossscale_kit.samplers.base import MultiBlockMasks, PatchSampler

MODES = ("faithful", "corrected")


@dataclass(frozen=True)
class BlockSizes:
    """Block shapes drawn once per batch: ``(rows, cols)`` of every target block and of the context block."""

    target: tuple[int, int]
    context: tuple[int, int]


def _check_range(name: str, value, low: float, high: float | None = None) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (min, max) pair, got {value!r}.") from None
    if not (low <= a <= b) or (high is not None and b > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must satisfy min <= max within {bound}, got {value!r}; fix the pair.")
    return a, b


@gin.register
class MultiBlock(PatchSampler):
    """I-JEPA's multiblock masker: one context block minus ``num_targets`` target blocks.

    Per batch, one target-block shape and one context-block shape are drawn. Per image, ``num_targets``
    target rectangles of that shape are placed at random (they may overlap each other), then a context
    rectangle is placed and every target patch removed from it. The context keeps at least ``min_keep``
    patches. Finally all context masks (and all target masks) are truncated to the shortest one of the
    batch so that they stack. Released I-JEPA recipes: 4 targets of scale (0.15, 0.2), aspect
    (0.75, 1.5); context scale (0.85, 1.0), aspect 1; min_keep 10.

    Two modes:

    * ``"faithful"`` reproduces the released collator, quirks included: one uniform draw ``u`` sets both
      the scale and the aspect ratio of a block (``scale = lo + u (hi - lo)``, ``aspect`` likewise);
      ``h = round(sqrt(int(N * scale) * aspect))``, ``w = round(sqrt(int(N * scale) / aspect))``, then
      lowered until ``h < gh`` and ``w < gw``; the top-left corner is drawn from ``[0, gh - h)`` x
      ``[0, gw - w)``, so the last row and the last column are never covered (and a context block of
      ``gh - 1`` rows always starts at row 0); a context with ``<= min_keep`` patches is redrawn, and
      after every ``max_tries`` failures the last remaining target constraint is dropped (the context may
      then overlap the dropped targets; :attr:`last_relaxed` says for which images); truncation keeps the
      first patches in row-major order (drops the bottom of the context).
    * ``"corrected"``: scale and aspect come from two independent draws; blocks may be as large as the
      grid and their corner is drawn from ``[0, gh - h]`` x ``[0, gw - w]``, so every patch can be
      covered; a context with ``< min_keep`` patches is redrawn, and after ``max_tries`` failures the
      targets are redrawn too, so context and targets are always disjoint (a ValueError after
      ``max_tries`` target redraws); truncation drops randomly chosen patches, not the bottom rows.

    The released collator also draws the block corners from the global RNG; here every draw comes from
    the ``generator`` passed to :meth:`sample`, so a step's masks depend only on its seed.

    Args:
        num_targets: target blocks per image (I-JEPA: 4).
        target_scale: ``(min, max)`` fraction of the grid covered by one target block.
        target_aspect: ``(min, max)`` height / width of a target block.
        context_scale: ``(min, max)`` fraction of the grid covered by the context block.
        context_aspect: ``(min, max)`` height / width of the context block (I-JEPA: 1).
        min_keep: least number of context patches (faithful: strictly more than ``min_keep``, as released).
            In faithful mode a target block must also hold more than ``min_keep`` patches.
        mode: ``"faithful"`` or ``"corrected"``.
        max_tries: placements per relaxation step (faithful; released: 20) or per target draw (corrected).

    Returns from ``sample``: :class:`MultiBlockMasks` with ``context`` ``(B, Kc)`` and ``targets``
    ``(B, num_targets, Kt)`` long, row-major over the grid, each row sorted; its ``visible`` is the context
    (what the student encodes, for the spatial-affinity add-on). ``targets`` is one stacked tensor, not a list:
    every target block of a batch has the same shape, so ``Kt = h * w`` with no truncation needed.
    """

    def __init__(
        self,
        num_targets: int = 4,
        target_scale: tuple[float, float] = (0.15, 0.2),
        target_aspect: tuple[float, float] = (0.75, 1.5),
        context_scale: tuple[float, float] = (0.85, 1.0),
        context_aspect: tuple[float, float] = (1.0, 1.0),
        min_keep: int = 10,
        mode: str = "faithful",
        max_tries: int = 20,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"MultiBlock.mode must be one of {MODES}, got {mode!r}.")
        if int(num_targets) < 1:
            raise ValueError(f"num_targets must be >= 1, got {num_targets}.")
        if int(min_keep) < 0:
            raise ValueError(f"min_keep must be >= 0, got {min_keep}.")
        if int(max_tries) < 1:
            raise ValueError(f"max_tries must be >= 1, got {max_tries}.")
        self.target_scale = _check_range("target_scale", target_scale, 0.0, 1.0)
        self.context_scale = _check_range("context_scale", context_scale, 0.0, 1.0)
        self.target_aspect = _check_range("target_aspect", target_aspect, 1e-6)
        self.context_aspect = _check_range("context_aspect", context_aspect, 1e-6)
        self.num_targets, self.min_keep, self.mode, self.max_tries = int(num_targets), int(min_keep), mode, int(max_tries)
        #: ``(B,)`` bool of the last ``sample`` call: images whose context dropped a target constraint
        self.last_relaxed: torch.Tensor | None = None
        self._checked: set[tuple[int, int]] = set()

    def __repr__(self) -> str:
        return (
            f"MultiBlock(mode={self.mode!r}, num_targets={self.num_targets}, target_scale={self.target_scale}, "
            f"target_aspect={self.target_aspect}, context_scale={self.context_scale}, "
            f"context_aspect={self.context_aspect}, min_keep={self.min_keep})"
        )

    # -- block shapes ----------------------------------------------------------------------------
    def block_shape(self, u_scale: float, u_aspect: float, scale, aspect, grid: tuple[int, int]) -> tuple[int, int]:
        """``(h, w)`` of a block from uniform draws in ``[0, 1)`` (faithful mode passes the same draw twice)."""
        gh, gw = grid
        s = scale[0] + u_scale * (scale[1] - scale[0])
        a = aspect[0] + u_aspect * (aspect[1] - aspect[0])
        area = int(gh * gw * s)
        h = int(round(math.sqrt(area * a)))
        w = int(round(math.sqrt(area / a)))
        if self.mode == "faithful":
            h, w = min(h, gh - 1), min(w, gw - 1)  # the release lowers until h < gh, w < gw
        else:
            h, w = min(max(h, 1), gh), min(max(w, 1), gw)
        return h, w

    def draw_sizes(self, grid: tuple[int, int], generator: torch.Generator | None = None) -> BlockSizes:
        """Draw the batch's target and context block shapes (the first draws :meth:`sample` makes)."""
        shapes = []
        for scale, aspect in ((self.target_scale, self.target_aspect), (self.context_scale, self.context_aspect)):
            if self.mode == "faithful":
                u = float(torch.rand(1, generator=generator))
                shapes.append(self.block_shape(u, u, scale, aspect, grid))
            else:
                u = torch.rand(2, generator=generator).tolist()
                shapes.append(self.block_shape(u[0], u[1], scale, aspect, grid))
        return BlockSizes(target=shapes[0], context=shapes[1])

    def smallest_sizes(self, grid: tuple[int, int], steps: int = 257) -> BlockSizes:
        """The smallest target and context blocks any draw can give on ``grid`` (checked before sampling,
        so a configuration that could fail is refused at step 0 rather than at a random later step)."""
        us = torch.linspace(0.0, 1.0 - 1e-9, steps).tolist()
        out = []
        for scale, aspect in ((self.target_scale, self.target_aspect), (self.context_scale, self.context_aspect)):
            pairs = [(u, u) for u in us] if self.mode == "faithful" else [(u, v) for u in us[::8] for v in us[::8]]
            out.append(min((self.block_shape(u, v, scale, aspect, grid) for u, v in pairs), key=lambda hw: hw[0] * hw[1]))
        return BlockSizes(target=out[0], context=out[1])

    def _check_sizes(self, sizes: BlockSizes, grid: tuple[int, int]) -> None:
        (th, tw), (ch, cw) = sizes.target, sizes.context
        if min(th, tw, ch, cw) < 1:
            raise ValueError(
                f"MultiBlock drew an empty block on the {grid[0]}x{grid[1]} patch grid (target {th}x{tw}, context "
                f"{ch}x{cw}); raise the block scales or the image size (faithful blocks are at most (gh-1)x(gw-1))."
            )
        need = self.min_keep + 1 if self.mode == "faithful" else self.min_keep
        if ch * cw < need or (self.mode == "faithful" and th * tw < need):
            raise ValueError(
                f"MultiBlock.min_keep = {self.min_keep} cannot be met on the {grid[0]}x{grid[1]} patch grid (target "
                f"block {th}x{tw}, context block {ch}x{cw}; {self.mode} mode needs {need}); lower min_keep "
                "or raise the image size."
            )

    # -- placement -------------------------------------------------------------------------------
    def _place(self, h: int, w: int, grid: tuple[int, int], generator) -> torch.Tensor:
        """A ``(gh, gw)`` bool mask with one ``h x w`` rectangle at a random corner."""
        gh, gw = grid
        extra = 0 if self.mode == "faithful" else 1  # faithful: corner in [0, g - h), never touching the last row
        top = int(torch.randint(0, gh - h + extra, (1,), generator=generator))
        left = int(torch.randint(0, gw - w + extra, (1,), generator=generator))
        mask = torch.zeros(gh, gw, dtype=torch.bool)
        mask[top : top + h, left : left + w] = True
        return mask

    def _one_image_faithful(self, sizes: BlockSizes, grid, generator):
        targets = [self._place(*sizes.target, grid, generator) for _ in range(self.num_targets)]
        tries, timeout = 0, self.max_tries
        while True:
            ctx = self._place(*sizes.context, grid, generator)
            for t in targets[: max(self.num_targets - tries, 0)]:
                ctx &= ~t
            if int(ctx.sum()) > self.min_keep:
                return ctx, targets, tries > 0
            timeout -= 1
            if timeout == 0:
                tries, timeout = tries + 1, self.max_tries

    def _one_image_corrected(self, sizes: BlockSizes, grid, generator):
        for _ in range(self.max_tries):
            targets = [self._place(*sizes.target, grid, generator) for _ in range(self.num_targets)]
            covered = torch.stack(targets).any(dim=0)
            for _ in range(self.max_tries):
                ctx = self._place(*sizes.context, grid, generator) & ~covered
                if int(ctx.sum()) >= self.min_keep and bool(ctx.any()):
                    return ctx, targets, False
        raise ValueError(
            f"MultiBlock could not keep {self.min_keep} context patches outside {self.num_targets} target blocks of "
            f"{sizes.target[0]}x{sizes.target[1]} on a {grid[0]}x{grid[1]} grid after {self.max_tries}^2 draws; "
            "lower min_keep, num_targets or target_scale."
        )

    def sample(self, batch_size: int, grid: tuple[int, int], generator: torch.Generator | None = None) -> MultiBlockMasks:
        """Draw the masks of a batch.

        Args:
            batch_size: ``B``.
            grid: patch grid ``(gh, gw)``.
            generator: CPU generator for every draw.

        Returns:
            ``MultiBlockMasks(context (B, Kc), targets (B, num_targets, Kt))`` long indices.
        """
        gh, gw = int(grid[0]), int(grid[1])
        if gh < 1 or gw < 1 or batch_size < 1:
            raise ValueError(f"MultiBlock needs batch_size >= 1 and a non-empty grid, got {batch_size}, {grid}.")
        if (gh, gw) not in self._checked:
            self._check_sizes(self.smallest_sizes((gh, gw)), (gh, gw))
            self._checked.add((gh, gw))
        sizes = self.draw_sizes((gh, gw), generator)
        self._check_sizes(sizes, (gh, gw))
        one = self._one_image_faithful if self.mode == "faithful" else self._one_image_corrected
        ctx_masks, tgt_masks, relaxed = [], [], []
        for _ in range(batch_size):
            ctx, targets, r = one(sizes, (gh, gw), generator)
            ctx_masks.append(ctx.flatten())
            tgt_masks.append(torch.stack(targets).flatten(1))
            relaxed.append(r)
        self.last_relaxed = torch.tensor(relaxed, dtype=torch.bool)
        ctx_masks = torch.stack(ctx_masks)  # (B, N)
        tgt_masks = torch.stack(tgt_masks)  # (B, M, N)
        k_ctx = int(ctx_masks.sum(dim=1).min())
        k_tgt = int(tgt_masks.sum(dim=2).min())  # every target block has h * w patches
        context = self._truncate(ctx_masks, k_ctx, generator)
        targets = self._truncate(tgt_masks.flatten(0, 1), k_tgt, generator).reshape(batch_size, self.num_targets, k_tgt)
        return MultiBlockMasks(context, targets, num_patches=gh * gw)

    def _truncate(self, masks: torch.Tensor, k: int, generator) -> torch.Tensor:
        """``(R, N)`` bool masks -> ``(R, k)`` sorted indices: the first ``k`` (faithful) or ``k`` random ones."""
        if self.mode == "faithful":
            key = torch.arange(masks.shape[1], dtype=torch.float32).expand_as(masks)
        else:
            key = torch.rand(masks.shape, generator=generator)
        key = torch.where(masks, key, torch.full_like(key, float("inf")))
        chosen = key.argsort(dim=1, stable=True)[:, :k]
        return chosen.sort(dim=1).values
