"""Write a tiny fake GEO-Bench segmentation task in the real on-disk format.

``ROOT/<task>/`` gets ``task_specs.pkl`` (a pickled dict), ``default_partition.json``,
``band_stats.json``, ``label_stats.json`` and ``sample_<i>.hdf5`` (one 2-D uint16 dataset per
Sentinel-2 band named like ``"02 - Blue"`` plus ``label``), and a corrupt ``sample_corrupt.hdf5``
listed only in ``corrupt_partition.json``. Labels are 8 x 8 px blocks of one class (0 = no data, rare);
every class has its own spectrum, so a frozen random ViT's patch features separate them.

``python tests/data/make_geobench.py ROOT [--task m-cashew-plant]``.
"""
from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import numpy as np

ALL_BANDS = ["01 - Coastal aerosol", "02 - Blue", "03 - Green", "04 - Red", "05 - Vegetation Red Edge", "08 - NIR", "11 - SWIR"]
CLASSES = {"m-cashew-plant": 7, "m-SA-crop-type": 10}


def class_spectra(num_classes: int, n_bands: int, rng: np.random.Generator) -> np.ndarray:
    """``(num_classes, n_bands)`` DN means, pairwise far apart."""
    while True:
        s = rng.uniform(300, 3500, size=(num_classes, n_bands))
        d = np.linalg.norm(s[:, None] - s[None], axis=-1) + np.eye(num_classes) * 1e9
        if d.min() > 900:
            return s


def make(root, task: str = "m-cashew-plant", n_train: int = 8, n_valid: int = 4, n_test: int = 4, size: int = 64,
         block: int = 8, seed: int = 0, noise: float = 60.0) -> Path:
    """Write the task folder and return its path."""
    import h5py

    rng = np.random.default_rng(seed)
    C = CLASSES.get(task, 7)
    folder = Path(root) / task
    folder.mkdir(parents=True, exist_ok=True)
    spectra = class_spectra(C, len(ALL_BANDS), rng)
    names = {"train": [], "valid": [], "test": []}
    values = {b: [] for b in ALL_BANDS}
    counts = {}
    i = 0
    for split, n in (("train", n_train), ("valid", n_valid), ("test", n_test)):
        for _ in range(n):
            g = size // block
            blocks = rng.integers(1, C, size=(g, g))
            blocks[rng.random((g, g)) < 0.05] = 0
            label = np.kron(blocks, np.ones((block, block), dtype=np.int64)).astype(np.uint8)
            img = spectra[label] + rng.normal(0, noise, size=(size, size, len(ALL_BANDS)))
            img = np.clip(img, 0, 10000).astype(np.uint16)
            name = f"sample_{i}"
            with h5py.File(folder / f"{name}.hdf5", "w") as f:
                for b, band in enumerate(ALL_BANDS):
                    f.create_dataset(band, data=img[..., b])
                    values[band].append(img[..., b].ravel())
                f.create_dataset("label", data=label)
                f.attrs["pickle"] = str(pickle.dumps({"bands_order": ALL_BANDS + ["label"]}))
            counts[name] = np.bincount(label.ravel(), minlength=C).tolist()
            names[split].append(name)
            i += 1
    stats = {}
    for band, vals in values.items():
        v = np.concatenate(vals).astype(np.float64)
        stats[band] = {"min": float(v.min()), "max": float(v.max()), "mean": float(v.mean()), "std": float(v.std()),
                       "median": float(np.median(v))}
    stats["label"] = {"min": 0.0, "max": float(C - 1), "mean": 0.0, "std": 1.0}
    (folder / "band_stats.json").write_text(json.dumps(stats, indent=2))
    (folder / "label_stats.json").write_text(json.dumps(counts))
    (folder / "default_partition.json").write_text(json.dumps(names))
    with open(folder / "task_specs.pkl", "wb") as f:
        pickle.dump({"dataset_name": task, "patch_size": (size, size), "n_classes": C, "bands": ALL_BANDS}, f)
    (folder / "sample_corrupt.hdf5").write_bytes(b"this is not an HDF5 file\x00" * 8)
    corrupt = {"train": names["train"] + ["sample_corrupt"], "valid": names["valid"], "test": names["test"]}
    (folder / "corrupt_partition.json").write_text(json.dumps(corrupt))
    return folder


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("root")
    ap.add_argument("--task", default="m-cashew-plant", choices=sorted(CLASSES))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(make(a.root, a.task, seed=a.seed))
