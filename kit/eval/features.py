"""Frozen-encoder patch features, computed once per (encoder, dataset, split) and cached on disk.

A cache entry is a folder ``CACHE/<encoder hash>/<dataset>-<split>-<options hash>/`` holding
``features.npy`` ``(N, gh*gw, D)`` float16, ``labels.npy`` ``(N, h, w)`` int16 and ``meta.json``; it is
written under a temporary name and renamed when complete, so an interrupted run is recomputed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from crossscale_kit.io import write_json_atomic


def encoder_hash(export_dir: str | os.PathLike) -> str:
    """First 16 hex digits of sha256 over ``encoder.safetensors`` and ``meta.json``."""
    h = hashlib.sha256()
    for name in ("encoder.safetensors", "meta.json"):
        with open(Path(export_dir) / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


@torch.no_grad()
def patch_features(model: torch.nn.Module, images: torch.Tensor, img_size: int | None) -> torch.Tensor:
    """Patch tokens of a timm ViT as a grid.

    Args:
        model: timm ``VisionTransformer`` (``dynamic_img_size=True``), frozen.
        images: ``(B, C, H, W)`` normalised.
        img_size: resize (bilinear) to ``img_size x img_size`` first; ``None`` keeps the size.

    Returns:
        ``(B, gh, gw, D)`` float32 with ``gh = img_size / patch``.
    """
    if img_size is not None and tuple(images.shape[-2:]) != (img_size, img_size):
        images = F.interpolate(images, size=(img_size, img_size), mode="bilinear", align_corners=False)
    p = model.patch_embed.patch_size
    p = p[0] if isinstance(p, (tuple, list)) else p
    H, W = images.shape[-2:]
    if H % p or W % p:
        raise ValueError(f"input {H}x{W} is not divisible by the encoder's patch size {p}; pick an img_size that is.")
    tokens = model.forward_features(images)
    tokens = tokens[:, getattr(model, "num_prefix_tokens", 0):]
    return tokens.reshape(images.shape[0], H // p, W // p, -1).float()


def cached_features(
    model: torch.nn.Module,
    dataset: Dataset,
    cache_dir: str | os.PathLike,
    *,
    key: dict,
    img_size: int | None,
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Features and labels of a whole split, from the cache or computed and stored.

    Args:
        model: frozen timm ViT.
        dataset: yields ``(image (C, h, w), label (h', w'))``.
        cache_dir: cache root.
        key: identifies the entry: must hold ``encoder`` (its hash), ``dataset`` and ``split``; every
            other item (img_size, bands, tiles ...) enters the options hash.
        img_size: model input side.

    Returns:
        ``features`` memmap ``(N, gh*gw, D)`` float16, ``labels`` ``(N, h', w')`` int16, ``(gh, gw)``.
    """
    from tqdm.auto import tqdm

    opts = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:10]
    entry = Path(cache_dir) / key["encoder"] / f"{key['dataset']}-{key['split']}-{opts}"
    if (entry / "meta.json").is_file():
        meta = json.loads((entry / "meta.json").read_text())
        feats = np.load(entry / "features.npy", mmap_mode="r")
        return feats, np.load(entry / "labels.npy"), tuple(meta["grid"])
    n = len(dataset)
    if n == 0:
        raise ValueError(f"{key['dataset']} split {key['split']} has no samples; check the partition/split file.")
    tmp = entry.with_name(f".{entry.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    feats = labels = None
    grid = None
    i = 0
    model = model.to(device).eval()
    for images, labs in tqdm(loader, desc=f"features {key['dataset']}/{key['split']}", disable=not progress, leave=False):
        f = patch_features(model, images.to(device), img_size).cpu()
        if feats is None:
            grid = tuple(f.shape[1:3])
            feats = np.lib.format.open_memmap(tmp / "features.npy", mode="w+", dtype=np.float16,
                                              shape=(n, grid[0] * grid[1], f.shape[-1]))
            labels = np.lib.format.open_memmap(tmp / "labels.npy", mode="w+", dtype=np.int16, shape=(n, *labs.shape[1:]))
        b = f.shape[0]
        feats[i:i + b] = f.reshape(b, -1, f.shape[-1]).numpy().astype(np.float16)
        labels[i:i + b] = labs.numpy().astype(np.int16)
        i += b
    feats.flush()
    labels.flush()
    del feats, labels
    write_json_atomic(tmp / "meta.json", {"key": key, "grid": list(grid), "num_samples": n})
    if entry.exists():
        shutil.rmtree(entry)
    os.replace(tmp, entry)
    return np.load(entry / "features.npy", mmap_mode="r"), np.load(entry / "labels.npy"), grid
