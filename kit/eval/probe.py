"""Linear-probe semantic segmentation on a frozen encoder (the paper's protocol).

Frozen encoder -> patch tokens ``(B, N, D)`` -> ``Linear(D, classes)`` -> logits on the patch grid
``(B, C, gh, gw)`` -> bilinear upsampling to the label size -> cross-entropy with the dataset's ignore
index. AdamW (lr 1e-3, weight decay 0), learning rate linear warm-up over the first 10 epochs then
cosine to 0, 100 epochs, batch 64, inputs resized to 224 px. The head with the best validation mIoU is
evaluated on test; this is repeated for each seed and reported as mean and std (ddof 1) over seeds.
Because the encoder is frozen its features are computed once per split and cached
(:mod:`kit.eval.features`), and reused across epochs and seeds.
"""
from __future__ import annotations

import copy
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kit.eval.miou import confusion_matrix, iou_per_class, mean_iou


@dataclass
class ProbeConfig:
    """Hyper-parameters of the probe (defaults: the paper's)."""

    epochs: int = 100
    warmup_epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    img_size: int | None = 224
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}.")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(f"warmup_epochs {self.warmup_epochs} must lie in [0, epochs={self.epochs}].")
        if self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"batch_size ({self.batch_size}) and lr ({self.lr}) must be positive.")
        if not self.seeds:
            raise ValueError("give at least one seed.")


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Linear warm-up from ``base_lr / warmup_steps`` to ``base_lr``, then cosine to 0 at ``total_steps``."""
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


def _batch(feats: np.ndarray, labels: np.ndarray, idx: np.ndarray, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    idx = np.sort(idx)
    x = torch.from_numpy(np.asarray(feats[idx], dtype=np.float32)).to(device)
    y = torch.from_numpy(np.asarray(labels[idx], dtype=np.int64)).to(device)
    return x, y


@torch.no_grad()
def evaluate(head: LinearSegHead, feats, labels, grid, num_classes: int, ignore_index: int, batch_size: int = 64,
             device: str = "cpu") -> torch.Tensor:
    """Confusion matrix ``(C, C)`` of the head's argmax predictions over a whole split."""
    head.eval()
    conf = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for s in range(0, len(feats), batch_size):
        x, y = _batch(feats, labels, np.arange(s, min(s + batch_size, len(feats))), device)
        pred = head(x, grid, tuple(y.shape[-2:])).argmax(1)
        conf += confusion_matrix(pred.cpu(), y.cpu(), num_classes, ignore_index)
    return conf


def train_probe(train, val, test, *, grid, num_classes: int, ignore_index: int, cfg: ProbeConfig, seed: int) -> dict:
    """Train one head and evaluate its best-validation checkpoint on test.

    Args:
        train, val, test: ``(features (N, gh*gw, D), labels (N, H, W))`` arrays (memmaps are fine).
        grid: ``(gh, gw)``.
        num_classes, ignore_index: from the dataset reader.
        cfg: hyper-parameters.
        seed: seeds the head initialisation and the batch order.

    Returns:
        ``{"seed", "val_miou", "test_miou", "best_epoch", "per_class_iou" (list, NaN -> None)}``.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    feats, labels = train
    dim = feats.shape[-1]
    head = LinearSegHead(dim, num_classes).to(cfg.device)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(feats)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total, warm = cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch
    best = (-1.0, -1, None)
    step = 0
    bar = tqdm(range(cfg.epochs), desc=f"probe seed {seed}", disable=not cfg.progress, leave=False)
    for epoch in bar:
        head.train()
        order = rng.permutation(n)
        for s in range(0, n, cfg.batch_size):
            x, y = _batch(feats, labels, order[s:s + cfg.batch_size], cfg.device)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, warm, cfg.lr)
            logits = head(x, grid, tuple(y.shape[-2:]))
            if (y != ignore_index).any():
                loss = F.cross_entropy(logits, y, ignore_index=ignore_index)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            step += 1
        conf = evaluate(head, *val, grid, num_classes, ignore_index, cfg.batch_size, cfg.device)
        miou = mean_iou(conf, ignore_index)
        if not math.isnan(miou) and miou > best[0]:
            best = (miou, epoch, copy.deepcopy(head.state_dict()))
        bar.set_postfix(val_miou=f"{miou:.3f}")
    if best[2] is not None:
        head.load_state_dict(best[2])
    conf = evaluate(head, *test, grid, num_classes, ignore_index, cfg.batch_size, cfg.device)
    iou = iou_per_class(conf)
    return {
        "seed": seed,
        "val_miou": best[0],
        "test_miou": mean_iou(conf, ignore_index),
        "best_epoch": best[1],
        "per_class_iou": [None if math.isnan(v) else float(v) for v in iou],
    }


def run_probe(
    export_dir: str | os.PathLike,
    dataset: str,
    root: str | os.PathLike,
    *,
    cfg: ProbeConfig,
    cache_dir: str | os.PathLike,
    label: str | None = None,
    skip_corrupt: bool = False,
    dataset_kwargs: dict | None = None,
) -> tuple[list[dict], dict]:
    """Probe one exported encoder on one dataset over ``cfg.seeds``.

    Returns:
        ``(rows, summary)``: one row per seed (encoder, recipe, label, dataset, seed, val/test mIoU in
        [0, 1], per-class IoU, settings) and ``{"test_miou_mean", "test_miou_std", ...}``.
    """
    from kit.io import BANDS
    from kit.encoders.export import load_exported_encoder
    from kit.eval.datasets import build_dataset
    from kit.eval.features import cached_features, encoder_hash

    model, meta = load_exported_encoder(export_dir, device=cfg.device)
    for p in model.parameters():
        p.requires_grad_(False)
    bands = list(meta.get("bands") or BANDS)
    ehash = encoder_hash(export_dir)
    splits, readers = {}, {}
    for split in ("train", "val", "test"):
        ds = build_dataset(dataset, root, split, bands=bands, skip_corrupt=skip_corrupt, **(dataset_kwargs or {}))
        readers[split] = ds
        key = {"encoder": ehash, "dataset": dataset, "split": split, "img_size": cfg.img_size, "bands": bands,
               "root": str(Path(root).resolve()), "reader": {k: str(v) for k, v in (dataset_kwargs or {}).items()},
               "skip_corrupt": skip_corrupt}
        feats, labels, grid = cached_features(model, ds, cache_dir, key=key, img_size=cfg.img_size,
                                              batch_size=cfg.batch_size, device=cfg.device, progress=cfg.progress)
        splits[split] = (feats, labels)
    ds = readers["train"]
    recipe = meta.get("recipe")
    if isinstance(recipe, (list, tuple)):
        recipe = recipe[0] if recipe else None
    base = {
        "encoder": str(export_dir),
        "encoder_hash": ehash,
        "recipe": recipe,
        "label": label,
        "dataset": dataset,
    }
    rows = []
    for seed in cfg.seeds:
        res = train_probe(splits["train"], splits["val"], splits["test"], grid=grid, num_classes=ds.num_classes,
                          ignore_index=ds.ignore_index, cfg=cfg, seed=seed)
        rows.append({**base, **res, "epochs": cfg.epochs, "img_size": cfg.img_size, "lr": cfg.lr,
                     "num_train": len(splits["train"][0]), "class_names": list(ds.class_names)})
    test = np.array([r["test_miou"] for r in rows], dtype=np.float64)
    val = np.array([r["val_miou"] for r in rows], dtype=np.float64)
    summary = {
        **base,
        "seeds": list(cfg.seeds),
        "test_miou_mean": float(test.mean()),
        "test_miou_std": float(test.std(ddof=1)) if len(test) > 1 else 0.0,
        "val_miou_mean": float(val.mean()),
        "skipped": {s: getattr(r, "skipped", {}) for s, r in readers.items()},
        "config": {k: v for k, v in asdict(cfg).items() if k != "progress"},
    }
    return rows, summary
