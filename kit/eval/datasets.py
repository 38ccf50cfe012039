"""Name -> reader for the probe benchmarks (m-cashew-plant, m-SA-crop-type, MADOS)."""
from __future__ import annotations

import os

from torch.utils.data import Dataset

DATASETS = ("m-cashew-plant", "m-SA-crop-type", "mados")


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
        from kit.eval.geobench import GeoBenchSegmentation

        return GeoBenchSegmentation(root, split, task=name, bands=bands, skip_corrupt=skip_corrupt, **kwargs)
    if name == "mados":
        from kit.eval.mados import MADOS

        return MADOS(root, split, bands=bands, skip_corrupt=skip_corrupt, **kwargs)
    raise ValueError(f"unknown dataset {name!r}; choose one of {list(DATASETS)}.")
