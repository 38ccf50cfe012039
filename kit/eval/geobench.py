"""GEO-Bench segmentation tasks (v1.0) read straight from their HDF5 files with h5py.

On-disk layout of one task folder (e.g. ``ROOT/m-cashew-plant``)::

    task_specs.pkl            pickled task description (needs the geobench package; not read here)
    default_partition.json    {"train": [sample names], "valid": [...], "test": [...]}
    <name>_partition.json     other partitions, same layout
    band_stats.json           {"02 - Blue": {"mean": m, "std": s, ...}, ..., "label": {...}}
    label_stats.json          per-sample label counts (not needed for reading)
    sample_<i>.hdf5           one 2-D dataset per band ("02 - Blue", "03 - Green", "04 - Red", "08 - NIR",
                              ...) plus "label"; raw Sentinel-2 DN, 256 x 256

Images are normalised per band with ``(x - mean) / std`` from ``band_stats.json``. m-cashew-plant is cut
into 4 x 4 tiles (64 x 64 at the native size), as the paper does; m-SA-crop-type is used whole. Label 0
is "no data" in both tasks and is the ignore index (the class count keeps it: 7 and 10).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from kit.io import BANDS

# kit band name -> GEO-Bench Sentinel-2 band dataset name
BAND_NAMES = {
    "coastal": "01 - Coastal aerosol",
    "blue": "02 - Blue",
    "green": "03 - Green",
    "red": "04 - Red",
    "rededge1": "05 - Vegetation Red Edge",
    "rededge2": "06 - Vegetation Red Edge",
    "rededge3": "07 - Vegetation Red Edge",
    "nir": "08 - NIR",
    "nir_narrow": "08A - Vegetation Red Edge",
    "water_vapour": "09 - Water vapour",
    "cirrus": "10 - SWIR - Cirrus",
    "swir1": "11 - SWIR",
    "swir2": "12 - SWIR",
}
# task -> (number of classes incl. the no-data class 0, tiles per side)
TASKS = {"m-cashew-plant": (7, 4), "m-SA-crop-type": (10, 1)}
SPLITS = {"train": "train", "val": "valid", "valid": "valid", "test": "test"}


class CorruptSampleError(ValueError):
    """A sample file exists but cannot be read as the format promises."""


class GeoBenchSegmentation(Dataset):
    """One split of a GEO-Bench segmentation task as ``(image, label)`` pairs.

    Args:
        root: the task folder (holding ``default_partition.json``) or its parent (then ``task`` picks it).
        split: ``train``, ``val`` (= ``valid``) or ``test``.
        task: task folder name; defaults to ``root``'s own name.
        bands: kit band names in the order the encoder wants (default blue, green, red, NIR), or
            GEO-Bench dataset names like ``"02 - Blue"``.
        partition: partition file stem (``default`` -> ``default_partition.json``).
        tiles: tiles per side (``None``: 4 for m-cashew-plant, 1 otherwise).
        num_classes: overrides the task's class count.
        skip_corrupt: drop unreadable samples (counted in ``self.skipped``) instead of raising.

    Items:
        ``image`` ``(C, h, w)`` float32 normalised, ``label`` ``(h, w)`` int64 with ``h = H / tiles``.
    """

    ignore_index = 0

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        task: str | None = None,
        bands: tuple[str, ...] | list[str] = BANDS,
        partition: str = "default",
        tiles: int | None = None,
        num_classes: int | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"GEO-Bench root {root} does not exist; pass the task folder, e.g. .../segmentation_v1.0/m-cashew-plant.")
        if task is not None and not (root / "default_partition.json").exists() and (root / task).is_dir():
            root = root / task
        self.root = root
        self.task = task or root.name
        if split not in SPLITS:
            raise ValueError(f"split {split!r} is not one of {sorted(SPLITS)}.")
        self.split = split
        part_file = root / f"{partition}_partition.json"
        if not part_file.is_file():
            found = sorted(p.name for p in root.glob("*_partition.json"))
            raise FileNotFoundError(
                f"{part_file} is missing (found {found or 'no partition files'}); point --root at a GEO-Bench task folder "
                "or choose an existing partition."
            )
        parts = json.loads(part_file.read_text())
        key = SPLITS[split]
        if key not in parts:
            raise ValueError(f"{part_file} has no {key!r} split (keys {sorted(parts)}).")
        self.names = list(parts[key])
        stats_file = root / "band_stats.json"
        if not stats_file.is_file():
            raise FileNotFoundError(f"{stats_file} is missing; it holds the per-band mean/std used for normalisation.")
        stats = json.loads(stats_file.read_text())
        self.band_names = [BAND_NAMES.get(b, b) for b in bands]
        missing = [b for b in self.band_names if b not in stats]
        if missing:
            have = sorted(k for k in stats if k != "label")
            raise ValueError(
                f"bands {missing} are not in {stats_file} (it has {have}); use kit names {sorted(BAND_NAMES)} "
                "or the exact GEO-Bench band names."
            )
        self.mean = np.array([stats[b]["mean"] for b in self.band_names], np.float32)[:, None, None]
        self.std = np.array([stats[b]["std"] for b in self.band_names], np.float32)[:, None, None]
        default_classes, default_tiles = TASKS.get(self.task, (None, 1))
        self.num_classes = num_classes or default_classes
        if self.num_classes is None:
            raise ValueError(f"unknown task {self.task!r}: pass num_classes (known tasks: {sorted(TASKS)}).")
        self.tiles = tiles or default_tiles
        self.class_names = [str(c) for c in range(self.num_classes)]
        self.skipped: dict[str, int] = {}
        if skip_corrupt:
            good = []
            for n in self.names:
                try:
                    self._read(n)
                    good.append(n)
                except (CorruptSampleError, FileNotFoundError):
                    self.skipped["corrupt"] = self.skipped.get("corrupt", 0) + 1
            self.names = good
        self._cache: tuple[str, np.ndarray, np.ndarray] | None = None

    def _path(self, name: str) -> Path:
        return self.root / (name if name.endswith(".hdf5") else f"{name}.hdf5")

    def _read(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Read one whole sample: ``(C, H, W)`` float32 normalised and ``(H, W)`` int64 label."""
        import h5py

        path = self._path(name)
        if not path.is_file():
            raise FileNotFoundError(f"sample {path} listed in the partition is missing; re-extract the task archive.")
        try:
            with h5py.File(path, "r") as f:
                missing = [b for b in self.band_names if b not in f]
                if missing or "label" not in f:
                    raise CorruptSampleError(
                        f"{path} lacks datasets {missing + ([] if 'label' in f else ['label'])} (has {sorted(f.keys())})."
                    )
                image = np.stack([np.asarray(f[b], dtype=np.float32) for b in self.band_names])
                label = np.asarray(f["label"]).astype(np.int64)
        except OSError as e:  # h5py raises OSError for files that are not HDF5
            raise CorruptSampleError(f"{path} is not a readable HDF5 file ({e}); re-download it or pass skip_corrupt.") from e
        if label.ndim == 3 and label.shape[0] == 1:
            label = label[0]
        if image.shape[1:] != label.shape:
            raise CorruptSampleError(f"{path}: image {image.shape} and label {label.shape} sizes differ.")
        if label.min() < 0 or label.max() >= self.num_classes:
            raise CorruptSampleError(f"{path}: labels span [{label.min()}, {label.max()}], outside [0, {self.num_classes}).")
        image = (image - self.mean) / self.std
        image = np.nan_to_num(image, nan=0.0, posinf=0.0, neginf=0.0)
        return image, label

    def __len__(self) -> int:
        return len(self.names) * self.tiles * self.tiles

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        t2 = self.tiles * self.tiles
        name, tile = self.names[i // t2], i % t2
        if self._cache is None or self._cache[0] != name:
            self._cache = (name, *self._read(name))
        _, image, label = self._cache
        if self.tiles > 1:
            H, W = label.shape
            if H % self.tiles or W % self.tiles:
                raise ValueError(f"sample {name} of size {H}x{W} does not split into {self.tiles}x{self.tiles} tiles.")
            h, w = H // self.tiles, W // self.tiles
            r, c = divmod(tile, self.tiles)
            image = image[:, r * h:(r + 1) * h, c * w:(c + 1) * w]
            label = label[r * h:(r + 1) * h, c * w:(c + 1) * w]
        return torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(np.ascontiguousarray(label))
