"""Write a tiny fake MADOS tree in the real on-disk format.

Per crop, as released: ``ROOT/Scene_<n>/10/Scene_<n>_L2R_rhorc_<wl>_<crop>.tif`` for 492, 559/560, 665 and
833 nm (240 x 240, float32 reflectance, NaN holes) and the labels ``Scene_<n>_L2R_cl_<crop>.tif`` (uint8,
0 unlabelled, 1..15); ``Scene_<n>/20/`` holds the 20 m bands 704, 739/740, 780/783, 864/865, 1610/1614 and
2186/2202 nm (120 x 120), ``Scene_<n>/60/`` the 60 m band 442/443 (40 x 40). Scene 1 uses Sentinel-2B's
spellings (559, 739, 780, ...), the others Sentinel-2A's. ``splits/{train,val,test}_X.txt`` list the crops; a
corrupt crop ``Scene_99_1`` (garbage bytes as a .tif) is listed only in ``splits/corrupt_X.txt``. Each class
has its own spectrum in every band; the 20 m and 60 m bands are block means of a 10 m field.

``python tests/data/make_mados.py ROOT``.
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np


def _write(path: Path, arr: np.ndarray) -> None:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.transform import from_origin

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", height=arr.shape[0], width=arr.shape[1], count=1, dtype=arr.dtype,
                           crs="EPSG:32634", transform=from_origin(600000, 4200000, 10, 10)) as ds:
            ds.write(arr, 1)


# (folder, Sentinel-2A name, Sentinel-2B name) of the 11 MADOS bands, B1..B12 without B9/B10
BANDS = [("60", 443, 442), ("10", 492, 492), ("10", 560, 559), ("10", 665, 665), ("20", 704, 704), ("20", 740, 739),
         ("20", 783, 780), ("10", 833, 833), ("20", 865, 864), ("20", 1614, 1610), ("20", 2202, 2186)]
FACTOR = {"10": 1, "20": 2, "60": 6}


def make(root, n_scenes: int = 3, crops_per_scene: int = 4, size: int = 240, block: int = 24, seed: int = 0,
         classes: tuple[int, ...] = (1, 5, 7, 10)) -> Path:
    """Write the MADOS tree and return ``root``."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    spectra = {c: rng.uniform(0.01, 0.25, size=len(BANDS)) for c in (0, *classes)}
    entries = []
    for s in range(n_scenes):
        scene = f"Scene_{s}"
        for crop in range(1, crops_per_scene + 1):
            g = size // block
            blocks = rng.choice(np.array(classes), size=(g, g))
            blocks[rng.random((g, g)) < 0.1] = 0
            label = np.kron(blocks, np.ones((block, block), dtype=np.int64)).astype(np.uint8)
            lut = np.stack([spectra[c] if c in spectra else spectra[0] for c in range(int(label.max()) + 1)])
            img = (np.moveaxis(lut[label], -1, 0) + rng.normal(0, 0.005, size=(len(BANDS), size, size))).astype(np.float32)
            hole = rng.integers(0, size - 12)
            img[:, hole:hole + 12, :12] = np.nan
            for b, (folder, wl_a, wl_b) in enumerate(BANDS):
                f = FACTOR[folder]
                band = img[b].reshape(size // f, f, size // f, f).mean((1, 3)).astype(np.float32)
                _write(root / scene / folder / f"{scene}_L2R_rhorc_{wl_b if s == 1 else wl_a}_{crop}.tif", band)
            _write(root / scene / "10" / f"{scene}_L2R_cl_{crop}.tif", label)
            entries.append(f"{scene}_{crop}")
    order = rng.permutation(len(entries))
    n = len(entries)
    n_val = max(1, n // 4)
    splits = {"train": order[: n - 2 * n_val], "val": order[n - 2 * n_val: n - n_val], "test": order[n - n_val:]}
    (root / "splits").mkdir(parents=True, exist_ok=True)
    for name, idx in splits.items():
        (root / "splits" / f"{name}_X.txt").write_text("\n".join(entries[i] for i in sorted(idx)) + "\n")
    bad = root / "Scene_99" / "10"
    bad.mkdir(parents=True, exist_ok=True)
    for wl in (492, 560, 665, 833):
        (bad / f"Scene_99_L2R_rhorc_{wl}_1.tif").write_bytes(b"II*\x00garbage, not a tiff" * 4)
    (bad / "Scene_99_L2R_cl_1.tif").write_bytes(b"not a tiff")
    (root / "splits" / "corrupt_X.txt").write_text("Scene_99_1\n" + entries[0] + "\n")
    return root


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("root")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(make(a.root, seed=a.seed))
