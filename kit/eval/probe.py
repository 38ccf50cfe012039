"""Linear-probe semantic segmentation on a frozen encoder, as the paper's authors ran it.

Frozen encoder -> patch tokens ``(B, N, D)`` -> ``Linear(D, classes)`` (no BN) -> logits on the patch grid
``(B, C, gh, gw)`` -> bilinear upsampling to the label size -> cross-entropy with ignore index -1. AdamW,
lr 1e-3 held constant for all 100 epochs, weight decay 0, batch 64, inputs 224 px; the head with the best
validation mIoU (torchmetrics ``MulticlassJaccardIndex``, see :mod:`crossscale_kit.eval.miou`) is evaluated on test;
repeated per seed, reported as mean and std (ddof 1).

Modes (``ProbeConfig.mode``):

- ``faithful`` (default, the authors' protocol): every epoch each training tile gets a fresh random-resized
  crop (scale 0.3-1, ratio 3/4-4/3; mask nearest) resized to the input size and is encoded again. Val/test
  use a plain resize; their features are computed once and cached (:mod:`crossscale_kit.eval.features`).
- ``cached`` (fast): training features are computed once without augmentation and reused by every epoch
  and seed. Not the paper's protocol; rows say so.

``schedule="cosine"`` (linear warm-up, then cosine to 0) and the reader's ``ignore_class0`` are options
for those who want them; every row records the mode and settings that produced it. Val/test labels are
scored at their stored resolution (logits upsampled to it) rather than resized to 224 px.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crossscale_kit.eval.crops import random_resized_crop
from crossscale_kit.eval.datasets import PRELOAD_GB
from crossscale_kit.eval.miou import jaccard, per_class_iou

log = logging.getLogger(__name__)

MODES = ("faithful", "cached")
SCHEDULES = ("constant", "cosine")


@dataclass
class ProbeConfig:
    """Hyper-parameters of the probe (defaults: the authors')."""

    epochs: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    img_size: int | None = 224
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    mode: str = "faithful"
    schedule: str = "constant"
    warmup_epochs: int = 10
    crop_scale: tuple[float, float] = (0.3, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    device: str = "cpu"
    num_workers: int = 0
    progress: bool = True
    preload_gb: float = PRELOAD_GB  # faithful mode: hold the training split in memory when it fits (0: never)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}.")
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {MODES}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule {self.schedule!r} is not one of {SCHEDULES}.")
        if self.schedule == "cosine" and not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(f"warmup_epochs {self.warmup_epochs} must lie in [0, epochs={self.epochs}].")
        if self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"batch_size ({self.batch_size}) and lr ({self.lr}) must be positive.")
        if self.mode == "faithful" and self.img_size is None:
            raise ValueError("the faithful mode resizes crops to img_size; give one (the paper's is 224).")
        if not self.seeds:
            raise ValueError("give at least one seed.")
        if not self.preload_gb >= 0:
            raise ValueError(f"preload_gb must be >= 0 (0: never hold the split in memory), got {self.preload_gb}.")

    def departures(self) -> list[str]:
        """How this configuration departs from the authors' probe protocol (empty: it follows it)."""
        paper = ProbeConfig()
        out = [f"{k}={getattr(self, k)!r} (paper {getattr(paper, k)!r})"
               for k in ("epochs", "lr", "weight_decay", "batch_size", "img_size", "mode", "schedule")
               if getattr(self, k) != getattr(paper, k)]
        if (tuple(self.crop_scale), tuple(self.crop_ratio)) != (paper.crop_scale, paper.crop_ratio):
            out.append(f"crop scale {self.crop_scale} ratio {self.crop_ratio}")
        return out


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float, schedule: str = "cosine") -> float:
    """``constant``: ``base_lr``. ``cosine``: linear warm-up to ``base_lr``, then cosine to 0 at ``total_steps``."""
    if schedule == "constant":
        return base_lr
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(1.0, t)))


class LinearSegHead(nn.Module):
    """``Linear(D, C)`` on each patch token, logits upsampled bilinearly to the label size.

    Shapes:
        ``forward(tokens (B, gh*gw, D), grid (gh, gw), size (H, W)) -> (B, C, H, W)``.
    """

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, num_classes)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
        B = tokens.shape[0]
        logits = self.linear(tokens).transpose(1, 2).reshape(B, -1, *grid)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


class CachedTrain:
    """Training batches from cached features ``(N, gh*gw, D)`` and labels ``(N, H, W)`` (the fast mode)."""

    def __init__(self, feats, labels, grid: tuple[int, int], device: str) -> None:
        self.feats, self.labels, self.grid, self.device = feats, labels, grid, device
        self.dim = feats.shape[-1]

    def __len__(self) -> int:
        return len(self.feats)

    def batches(self, generator: torch.Generator, batch_size: int):
        order = torch.randperm(len(self.feats), generator=generator).numpy()
        for s in range(0, len(order), batch_size):
            idx = np.sort(order[s:s + batch_size])
            x = torch.from_numpy(np.asarray(self.feats[idx], dtype=np.float32)).to(self.device)
            y = torch.from_numpy(np.asarray(self.labels[idx], dtype=np.int64)).to(self.device)
            yield x, self.grid, y


class CroppedTrain:
    """Training batches encoded afresh each epoch from random-resized crops of the tiles (the faithful mode).

    Args:
        encode: ``images (B, C, s, s) -> tokens (B, gh, gw, D)`` of the frozen encoder.
        dataset: yields ``(image (C, h, w), label (h, w))``.
        cfg: crop size, scale, ratio, device and loader workers.
    """

    def __init__(self, encode, dataset, cfg: ProbeConfig, dim: int) -> None:
        self.encode, self.dataset, self.cfg, self.dim = encode, dataset, cfg, dim
        preload = getattr(dataset, "preload", None)  # a reader that can hold its split reads each sample once
        if preload is not None and cfg.preload_gb > 0:
            preload(cfg.preload_gb)

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, generator: torch.Generator, batch_size: int):
        from torch.utils.data import DataLoader, Subset

        order = torch.randperm(len(self.dataset), generator=generator).tolist()
        loader = DataLoader(Subset(self.dataset, order), batch_size=batch_size, shuffle=False,
                            num_workers=self.cfg.num_workers)
        for images, labels in loader:
            images, labels, _ = random_resized_crop(images, labels, self.cfg.img_size, generator,
                                                    self.cfg.crop_scale, self.cfg.crop_ratio)
            with torch.no_grad():
                tokens = self.encode(images.to(self.cfg.device))
            yield tokens.reshape(tokens.shape[0], -1, tokens.shape[-1]), tuple(tokens.shape[1:3]), labels.to(self.cfg.device)


@torch.no_grad()
def evaluate(head: LinearSegHead, feats, labels, grid, num_classes: int, ignore_index: int, batch_size: int = 64,
             device: str = "cpu"):
    """The torchmetrics Jaccard index of the head's argmax predictions over a whole (cached) split."""
    head.eval()
    metric = jaccard(num_classes, ignore_index, device)
    for s in range(0, len(feats), batch_size):
        x = torch.from_numpy(np.asarray(feats[s:s + batch_size], dtype=np.float32)).to(device)
        y = torch.from_numpy(np.asarray(labels[s:s + batch_size], dtype=np.int64)).to(device)
        metric.update(head(x, grid, tuple(y.shape[-2:])).argmax(1), y)
    return metric


def train_probe(train, val, test, *, grid, num_classes: int, ignore_index: int, cfg: ProbeConfig, seed: int,
                state_path: str | os.PathLike | None = None) -> dict:
    """Train one head and evaluate its best-validation checkpoint on test.

    Args:
        train: :class:`CachedTrain` or :class:`CroppedTrain` (gives ``(tokens, grid, labels)`` batches).
        val, test: ``(features (N, gh*gw, D), labels (N, H, W))`` arrays (memmaps are fine).
        grid: ``(gh, gw)`` of the val/test features.
        num_classes, ignore_index: from the dataset reader.
        cfg: hyper-parameters. seed: seeds the head, the batch order and the crops.
        state_path: resumable run: the head, optimizer, step and best checkpoint are saved there (atomically)
            after every epoch, and a run that finds a state of the same seed, settings and training-set size
            continues after its last epoch with the same result as an unbroken run (each epoch's order and
            crops come from a generator seeded by seed and epoch). Removed when the seed finishes.

    Returns:
        ``{"seed", "val_miou", "test_miou", "best_epoch", "per_class_iou" (None where a class never occurs)}``.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    head = LinearSegHead(train.dim, num_classes).to(cfg.device)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total, warm = cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch
    best = (-1.0, -1, None)
    step, start = 0, 0
    key = {"seed": seed, "config": config_dict(cfg), "num_train": len(train), "num_classes": num_classes}
    if state_path is not None and Path(state_path).is_file():
        st = torch.load(state_path, map_location=cfg.device, weights_only=True)
        if json.loads(st["key"]) == json.loads(json.dumps(key)):
            head.load_state_dict(st["head"])
            opt.load_state_dict(st["opt"])
            step, start = int(st["step"]), int(st["epoch"]) + 1
            best = (float(st["best_miou"]), int(st["best_epoch"]), st["best_head"] or None)
            log.info("probe seed %d: resuming after epoch %d of %d (%s)", seed, start, cfg.epochs, state_path)
        else:
            log.warning("probe seed %d: %s belongs to other settings; starting this seed afresh", seed, state_path)
    bar = tqdm(range(start, cfg.epochs), desc=f"probe seed {seed}", disable=not cfg.progress, leave=False,
               initial=start, total=cfg.epochs)
    for epoch in bar:
        head.train()
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)  # fixes this epoch's order and crops
        for x, g, y in train.batches(gen, cfg.batch_size):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, warm, cfg.lr, cfg.schedule)
            step += 1
            if not (y != ignore_index).any():
                continue
            loss = F.cross_entropy(head(x, g, tuple(y.shape[-2:])), y, ignore_index=ignore_index)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        miou = float(evaluate(head, *val, grid, num_classes, ignore_index, cfg.batch_size, cfg.device).compute())
        if not math.isnan(miou) and miou > best[0]:
            best = (miou, epoch, copy.deepcopy(head.state_dict()))
        bar.set_postfix(val_miou=f"{miou:.3f}")
        log.info("probe seed %d: epoch %d/%d, val mIoU %.4f (best %.4f at epoch %d)", seed, epoch + 1, cfg.epochs,
                 miou, best[0], best[1] + 1)
        if state_path is not None:
            _save_state(state_path, {"key": json.dumps(key), "epoch": epoch, "step": step, "head": head.state_dict(),
                                     "opt": opt.state_dict(), "best_miou": best[0], "best_epoch": best[1],
                                     "best_head": best[2] or {}})
    if best[2] is not None:
        head.load_state_dict(best[2])
    metric = evaluate(head, *test, grid, num_classes, ignore_index, cfg.batch_size, cfg.device)
    if state_path is not None:
        Path(state_path).unlink(missing_ok=True)
    return {"seed": seed, "val_miou": best[0], "test_miou": float(metric.compute()), "best_epoch": best[1],
            "per_class_iou": per_class_iou(metric)}


def _save_state(path, state: dict) -> None:
    """``torch.save`` to a temp file beside ``path``, then rename: a kill leaves the old state or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def config_dict(cfg: ProbeConfig) -> dict:
    """The settings a row records (JSON-friendly)."""
    skip = ("progress", "seeds", "preload_gb")  # none of these changes a result
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items() if k not in skip}
