"""Name -> reader for the probe benchmarks (m-cashew-plant, m-SA-crop-type, MADOS)."""
from __future__ import annotations

import os
from typing import Callable, Hashable, Sequence

import numpy as np
from torch.utils.data import Dataset

DATASETS = ("m-cashew-plant", "m-SA-crop-type", "mados")
PRELOAD_GB = 8.0  # memory a split may take when held for the faithful probe (GiB)


def hold_split(keys: Sequence[Hashable], read: Callable[[Hashable], tuple[np.ndarray, np.ndarray]],
               max_gb: float = PRELOAD_GB) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Every sample of a split read once and kept: ``[(image float32, label int16), ...]`` in ``keys`` order.

    The faithful probe asks for every training item each epoch in a fresh random order; a reader that holds
    its split (``preload``) answers from memory instead of reading its files again. The DataLoader's workers,
    started afterwards, share the arrays (fork, copy-on-write; they only read).

    Args:
        keys: what ``read`` takes, one per sample.
        read: ``key -> (image (C, H, W) float32, label (H, W) integer in [-1, 2**15))``.
        max_gb: GiB the split may take, judged from the first sample.

    Returns:
        the held samples, or None (nothing read beyond the first sample) when they would not fit.
    """
    if not keys:
        return None
    image, label = read(keys[0])
    if (image.nbytes + label.size * 2) * len(keys) > max_gb * 2**30:
        return None
    held = [(image, label.astype(np.int16))]
    for key in keys[1:]:
        image, label = read(key)
        held.append((image, label.astype(np.int16)))  # class indices and the ignore index -1
    return held


def build_dataset(name: str, root: str | os.PathLike, split: str, *, bands, skip_corrupt: bool = False, **kwargs) -> Dataset:
    """Build one split of a benchmark.

    Args:
        name: one of :data:`DATASETS`.
        root: the dataset folder (GEO-Bench task folder or its parent; the MADOS folder).
        split: ``train``, ``val`` or ``test``.
        bands: kit band names in the encoder's order.
        skip_corrupt: count and drop unreadable samples instead of raising.
        **kwargs: passed to the reader (``tiles``, ``partition``, ``stats`` ...).

    Returns:
        a map-style dataset of ``(image (C, h, w) float32, label (h, w) int64)`` with attributes
        ``num_classes``, ``ignore_index`` and ``class_names``.
    """
    if name in ("m-cashew-plant", "m-SA-crop-type"):
        from crossscale_kit.eval.geobench import GeoBenchSegmentation

        return GeoBenchSegmentation(root, split, task=name, bands=bands, skip_corrupt=skip_corrupt, **kwargs)
    if name == "mados":
        from crossscale_kit.eval.mados import MADOS

        return MADOS(root, split, bands=bands, skip_corrupt=skip_corrupt, **kwargs)
    raise ValueError(f"unknown dataset {name!r}; choose one of {list(DATASETS)}.")
