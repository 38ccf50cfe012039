"""GEO-Bench segmentation tasks (v1.0) read straight from their HDF5 files with h5py.

On-disk layout of one task folder as released (e.g. ``ROOT/segmentation_v1.0/m-cashew-plant``)::

    task_specs.pkl            pickled geobench.task.TaskSpecifications (needs the geobench package; not read)
    default_partition.json    {"train": [sample names], "valid": [...], "test": [...]}
    <name>_partition.json     the few-shot partitions (0.01x_train ... 1.00x_train), same layout
    band_stats.json           {"02 - Blue": {"mean": m, "std": s, "min", "max", "median", "percentile_*"}, ..., "label": {...}}
    label_stats.json          {sample name: [pixel fraction of each class]} (its length is the class count)
    sample_<i>.hdf5           one 2-D dataset per band plus "label"; root attribute "pickle" (metadata)

Band datasets carry the band's date when it has one: every m-cashew-plant band is named like
``"02 - Blue_2019-11-15"`` with a date that differs per sample, m-SA-crop-type's are plain ``"02 - Blue"``,
``label`` never has a date. Bands are therefore resolved by name with or without a ``_<YYYY-MM-DD>``
suffix. Cashew bands are float32 and labels int64; SA crop type stores both as int16; 256 x 256 px.

Images are normalised per band with ``(x - mean) / std`` from ``band_stats.json``. As the paper's authors
ran it, both tasks are cut into 4 x 4 tiles of 64 px, and labels are used as stored: class 0 ("no data")
is scored like any other class (7 classes for cashew, 10 for SA crop type) and the ignore index is -1
(GEO-Bench's own baselines do the same). ``ignore_class0=True`` maps class 0 to -1 instead.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from crossscale_kit.eval.datasets import PRELOAD_GB, hold_split
from crossscale_kit.io import BANDS, CorruptSampleError

# kit band name -> GEO-Bench Sentinel-2 band dataset name (without its date suffix)
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
    "swir1": "11 - SWIR",
    "swir2": "12 - SWIR",
    "cloud": "Cloud Probability",
}
# task -> number of classes (class 0 = "no data" included)
TASKS = {"m-cashew-plant": 7, "m-SA-crop-type": 10}
TILES = 4  # the authors' tiles_per_img 16 for both tasks
SPLITS = {"train": "train", "val": "valid", "valid": "valid", "test": "test"}
_DATE = re.compile(r"_\d{4}-\d{2}-\d{2}(_[\w-]*)?$")


def band_datasets(keys, band_names: list[str], path: Path | str = "") -> list[str]:
    """HDF5 dataset names of ``band_names`` among ``keys``, matching with or without a date suffix.

    Raises:
        CorruptSampleError naming the missing bands (and what the file holds), or a band stored for
        several dates (a time series, which the segmentation tasks are not).
    """
    by_band: dict[str, list[str]] = {}
    for k in keys:
        by_band.setdefault(_DATE.sub("", k), []).append(k)
    out, missing = [], []
    for b in band_names:
        hits = by_band.get(b, [])
        if not hits:
            missing.append(b)
        elif len(hits) > 1:
            raise CorruptSampleError(f"{path} holds band {b!r} for several dates {sorted(hits)}; pick one sample per date.")
        else:
            out.append(hits[0])
    if missing:
        raise CorruptSampleError(f"{path} lacks bands {missing} (has {sorted(keys)}).")
    return out


class GeoBenchSegmentation(Dataset):
    """One split of a GEO-Bench segmentation task as ``(image, label)`` pairs.

    Args:
        root: the task folder (holding ``default_partition.json``) or its parent (then ``task`` picks it).
        split: ``train``, ``val`` (= ``valid``) or ``test``.
        task: task folder name; defaults to ``root``'s own name. A task folder of another known task is
            an error (its class count would be wrong).
        bands: kit band names in the order the encoder wants (default blue, green, red, NIR), or
            GEO-Bench band names like ``"02 - Blue"``.
        partition: partition file stem (``default`` -> ``default_partition.json``).
        tiles: tiles per side (default 4, the authors' protocol for both tasks; 1 keeps whole images).
        ignore_class0: map class 0 ("no data") to the ignore index -1 instead of scoring it.
        skip_corrupt: drop unreadable samples (counted in ``self.skipped``) instead of raising.

    Items:
        ``image`` ``(C, h, w)`` float32 normalised, ``label`` ``(h, w)`` int64 in ``[-1, num_classes)``
        with ``h = H / tiles``.
    """

    ignore_index = -1

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        task: str | None = None,
        bands: tuple[str, ...] | list[str] = BANDS,
        partition: str = "default",
        tiles: int = TILES,
        ignore_class0: bool = False,
        skip_corrupt: bool = False,
    ) -> None:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"GEO-Bench root {root} does not exist; pass the task folder, e.g. .../segmentation_v1.0/m-cashew-plant.")
        if task is not None and not (root / "default_partition.json").exists() and (root / task).is_dir():
            root = root / task
        self.root = root
        self.task = task or root.name
        if self.task not in TASKS:
            raise ValueError(f"unknown GEO-Bench task {self.task!r}; the kit reads {sorted(TASKS)}.")
        if root.name in TASKS and root.name != self.task:
            raise ValueError(f"{root} is the {root.name} task folder, not {self.task}; pass --dataset {root.name} "
                             f"or point --root at the {self.task} folder.")
        if split not in SPLITS:
            raise ValueError(f"split {split!r} is not one of {sorted(SPLITS)}.")
        if tiles < 1:
            raise ValueError(f"tiles must be >= 1, got {tiles}.")
        self.split, self.tiles, self.ignore_class0 = split, tiles, ignore_class0
        self.num_classes = TASKS[self.task]
        self.class_names = [str(c) for c in range(self.num_classes)]
        self.names = self._partition(partition, SPLITS[split])
        self._check_class_count()
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
        self._held: list[tuple[np.ndarray, np.ndarray]] | None = None  # every sample, after preload()

    def preload(self, max_gb: float = PRELOAD_GB) -> bool:
        """Hold the split in memory (:func:`crossscale_kit.eval.datasets.hold_split`): tiles asked for in random order
        (the faithful probe) then cost a slice instead of an HDF5 read of their whole sample each, 16x fewer
        reads. False (samples read per item, as before) when it would take more than ``max_gb`` GiB."""
        if self._held is None:
            self._held = hold_split(self.names, self._read, max_gb)
        return self._held is not None

    def _partition(self, partition: str, key: str) -> list[str]:
        part_file = self.root / f"{partition}_partition.json"
        if not part_file.is_file():
            found = sorted(p.name for p in self.root.glob("*_partition.json"))
            raise FileNotFoundError(
                f"{part_file} is missing (found {found or 'no partition files'}); point --root at a GEO-Bench task folder "
                "or choose an existing partition."
            )
        parts = json.loads(part_file.read_text())
        if key not in parts:
            raise ValueError(f"{part_file} has no {key!r} split (keys {sorted(parts)}).")
        return list(parts[key])

    def _check_class_count(self) -> None:
        """``label_stats.json`` lists one pixel fraction per class: it must agree with the task's count."""
        path = self.root / "label_stats.json"
        if not path.is_file():
            return
        counts = {len(v) for v in json.loads(path.read_text()).values() if isinstance(v, list)}
        if counts and counts != {self.num_classes}:
            raise ValueError(f"{path} describes {sorted(counts)} classes but {self.task} has {self.num_classes}; "
                             "is --root the folder of another task?")

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
                keys = band_datasets(list(f.keys()), self.band_names, path)
                if "label" not in f:
                    raise CorruptSampleError(f"{path} has no 'label' dataset (has {sorted(f.keys())}).")
                image = np.stack([np.asarray(f[k], dtype=np.float32) for k in keys])
                label = np.asarray(f["label"]).astype(np.int64)
        except OSError as e:  # h5py raises OSError for files that are not HDF5
            raise CorruptSampleError(f"{path} is not a readable HDF5 file ({e}); re-download it or pass skip_corrupt.") from e
        if label.ndim == 3 and label.shape[0] == 1:
            label = label[0]
        if image.shape[1:] != label.shape:
            raise CorruptSampleError(f"{path}: image {image.shape} and label {label.shape} sizes differ.")
        if label.min() < 0 or label.max() >= self.num_classes:
            raise CorruptSampleError(f"{path}: labels span [{label.min()}, {label.max()}], outside [0, {self.num_classes}) "
                                     f"of {self.task}; is this the right task?")
        if self.ignore_class0:
            label[label == 0] = self.ignore_index
        image = (image - self.mean) / self.std
        image = np.nan_to_num(image, nan=0.0, posinf=0.0, neginf=0.0)
        return image, label

    def __len__(self) -> int:
        return len(self.names) * self.tiles * self.tiles

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        t2 = self.tiles * self.tiles
        name, tile = self.names[i // t2], i % t2
        if self._held is not None:
            image, label = self._held[i // t2]
        else:
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
        # always copies: the caller may change the item in place, never the held or cached sample
        return torch.from_numpy(np.array(image, order="C")), torch.from_numpy(np.array(label, np.int64, order="C"))
