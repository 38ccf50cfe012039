"""Write a tiny fake GEO-Bench segmentation task exactly in the released v1.0 on-disk format.

``ROOT/<task>/`` gets what the release holds (checked against GEO-Bench's own writer,
``geobench/dataset.py:write_sample_hdf5``):

- ``sample_<i>.hdf5``: one 2-D dataset per band, the 13 band names of the release (Sentinel-2 less
  cirrus, plus ``"Cloud Probability"``). m-cashew-plant: every band dataset is named
  ``"<band>_<YYYY-MM-DD>"`` with a date that differs per sample (e.g. ``"02 - Blue_2019-11-15"``), float32
  bands, int64 ``label``. m-SA-crop-type: undated names, int16 bands and int16 ``label``. ``label`` never
  has a date. The root attribute ``pickle`` is ``str(pickle.dumps(attrs))`` with ``attrs["bands_order"]``
  and one dict per dataset; its band infos are objects of GeoBench classes (``geobench.dataset.Sentinel2``),
  so it unpickles only with the ``geobench`` package, as the real files do.
- ``default_partition.json`` plus the few-shot partitions ``0.01x_train`` ... ``1.00x_train``
  (``{"train": [...], "valid": [...], "test": [...]}``), ``band_stats.json`` (per undated band name and
  ``label``: min, max, mean, std, median, percentiles), ``label_stats.json`` (per sample: the pixel
  fraction of each class), ``task_specs.pkl`` (a pickled ``geobench.task.TaskSpecifications``).
- a corrupt ``sample_corrupt.hdf5`` listed only in ``corrupt_partition.json`` (not in the release).

Labels are 16 x 16 px blocks of one class, class 0 ("no data") included as a real class; every class has
its own spectrum, so a frozen random ViT's patch features separate them.

``python tests/data/make_geobench.py ROOT [--task m-cashew-plant]``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import pickle
import sys
import types
from pathlib import Path

import numpy as np

BANDS = [
    "01 - Coastal aerosol", "02 - Blue", "03 - Green", "04 - Red", "05 - Vegetation Red Edge",
    "06 - Vegetation Red Edge", "07 - Vegetation Red Edge", "08 - NIR", "08A - Vegetation Red Edge",
    "09 - Water vapour", "11 - SWIR", "12 - SWIR", "Cloud Probability",
]
CLASSES = {"m-cashew-plant": 7, "m-SA-crop-type": 10}
PARTITIONS = ["0.01x_train", "0.02x_train", "0.05x_train", "0.10x_train", "0.20x_train", "0.50x_train", "1.00x_train"]
FIRST_DATE = datetime.date(2019, 11, 5)


def _geobench_classes() -> dict:
    """Stand-ins for the GeoBench classes whose objects the real pickles hold (pickled by reference)."""
    mods = {}
    for modname, names in (("geobench.dataset", ("Sentinel2", "CloudProbability", "SegmentationClasses")),
                           ("geobench.task", ("TaskSpecifications",))):
        mod = types.ModuleType(modname)
        for name in names:
            setattr(mod, name, type(name, (), {"__module__": modname}))
        mods[modname] = mod
    return mods


def _pickle_as_geobench(obj_builder) -> bytes:
    """Pickle what ``obj_builder(classes)`` returns with the stand-in classes importable under GeoBench's names."""
    mods = _geobench_classes()
    saved = {k: sys.modules.get(k) for k in ("geobench", *mods)}
    sys.modules["geobench"] = types.ModuleType("geobench")
    sys.modules.update(mods)
    try:
        classes = {n: getattr(m, n) for m in mods.values() for n in dir(m) if not n.startswith("_")}
        return pickle.dumps(obj_builder(classes))
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def _info(cls, **state):
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj


def class_spectra(num_classes: int, n_bands: int, rng: np.random.Generator) -> np.ndarray:
    """``(num_classes, n_bands)`` DN means, pairwise far apart."""
    while True:
        s = rng.uniform(300, 3500, size=(num_classes, n_bands))
        d = np.linalg.norm(s[:, None] - s[None], axis=-1) + np.eye(num_classes) * 1e9
        if d.min() > 900:
            return s


def _write_sample(path: Path, img: np.ndarray, label: np.ndarray, date: datetime.date | None) -> None:
    import h5py

    keys = [b if date is None else f"{b}_{date:%Y-%m-%d}" for b in BANDS] + ["label"]

    def attrs(c):
        out = {"bands_order": keys}
        for b, k in zip(BANDS, keys):
            cls = c["CloudProbability"] if b == "Cloud Probability" else c["Sentinel2"]
            out[k] = {"date": date, "date_id": date, "spatial_resolution": 10.0,
                      "band_info": _info(cls, name=b, alt_names=(), spatial_resolution=10), "meta_info": None,
                      "transform": None, "crs": None}
        out["label"] = {"date": None, "date_id": None, "spatial_resolution": 10.0, "meta_info": None,
                        "band_info": _info(c["SegmentationClasses"], name="label", n_classes=int(label.max()) + 1),
                        "transform": None, "crs": None}
        return out

    with h5py.File(path, "w") as f:
        for b, k in enumerate(keys[:-1]):
            f.create_dataset(k, data=img[b])
        f.create_dataset("label", data=label)
        f.attrs["pickle"] = str(_pickle_as_geobench(attrs))


def _stats(v: np.ndarray) -> dict:
    q = np.percentile(v, [0.1, 1, 5, 50, 95, 99, 99.9])
    return {"max": float(v.max()), "mean": float(v.mean()), "median": float(q[3]), "min": float(v.min()),
            "percentile_0_1": float(q[0]), "percentile_1": float(q[1]), "percentile_5": float(q[2]),
            "percentile_95": float(q[4]), "percentile_99": float(q[5]), "percentile_99_9": float(q[6]),
            "std": float(v.std())}


def make(root, task: str = "m-cashew-plant", n_train: int = 6, n_valid: int = 3, n_test: int = 3, size: int = 256,
         block: int = 16, seed: int = 0, noise: float = 60.0) -> Path:
    """Write the task folder and return its path."""
    rng = np.random.default_rng(seed)
    C = CLASSES[task]
    cashew = task == "m-cashew-plant"
    folder = Path(root) / task
    folder.mkdir(parents=True, exist_ok=True)
    spectra = class_spectra(C, len(BANDS), rng)
    names = {"train": [], "valid": [], "test": []}
    values = {b: [] for b in BANDS}
    labels, label_stats = [], {}
    i = 0
    for split, n in (("train", n_train), ("valid", n_valid), ("test", n_test)):
        for _ in range(n):
            g = size // block
            blocks = rng.integers(0, C, size=(g, g))
            label = np.kron(blocks, np.ones((block, block), dtype=np.int64))
            img = np.moveaxis(spectra[label] + rng.normal(0, noise, size=(size, size, len(BANDS))), -1, 0)
            img[-1] = rng.uniform(0, 30, size=(size, size))  # cloud probability in percent
            img = np.clip(img, 0, 10000)
            img = img.astype(np.float32) if cashew else np.rint(img).astype(np.int16)
            label = label.astype(np.int64 if cashew else np.int16)
            date = FIRST_DATE + datetime.timedelta(days=5 * int(rng.integers(0, 70))) if cashew else None
            name = f"sample_{i}"
            _write_sample(folder / f"{name}.hdf5", img, label, date)
            for b, band in enumerate(BANDS):
                values[band].append(rng.choice(img[b].ravel(), 1000, replace=False))
            labels.append(rng.choice(label.ravel(), 1000, replace=False))
            label_stats[name] = (np.bincount(label.ravel(), minlength=C) / label.size).tolist()
            names[split].append(name)
            i += 1
    stats = {b: _stats(np.concatenate(v).astype(np.float64)) for b, v in values.items()}
    stats["label"] = _stats(np.concatenate(labels).astype(np.float64))
    (folder / "band_stats.json").write_text(json.dumps(stats, indent=4, sort_keys=True))
    (folder / "label_stats.json").write_text(json.dumps(label_stats, indent=4))
    (folder / "default_partition.json").write_text(json.dumps(names, indent=2))
    for p in PARTITIONS:
        k = max(1, round(float(p.split("x")[0]) * len(names["train"])))
        (folder / f"{p}_partition.json").write_text(json.dumps({**names, "train": names["train"][:k]}, indent=2))
    specs = _pickle_as_geobench(lambda c: _info(
        c["TaskSpecifications"], dataset_name=task, benchmark_name="segmentation_v1.0", patch_size=(size, size),
        n_time_steps=1, bands_info=[_info(c["Sentinel2"], name=b) for b in BANDS], spatial_resolution=10.0,
        label_type=_info(c["SegmentationClasses"], name="label", n_classes=C)))
    (folder / "task_specs.pkl").write_bytes(specs)
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
