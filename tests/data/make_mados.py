"""Write a tiny fake MADOS tree in the real on-disk format.

``ROOT/Scene_<n>/10/Scene_<n>_L2R_rhorc_<wl>_<crop>.tif`` (float32 reflectance, NaN holes; scene 1 uses
Sentinel-2A's 559 nm name for green, the others 560), ``Scene_<n>_L2R_cl_<crop>.tif`` (uint8, 0 unlabelled,
1..15), a 20 m band in ``Scene_<n>/20/``, ``splits/{train,val,test}_X.txt`` and a corrupt crop
``Scene_99_1`` (garbage bytes as a .tif) listed only in ``splits/corrupt_X.txt``.

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


def make(root, n_scenes: int = 3, crops_per_scene: int = 4, size: int = 48, block: int = 8, seed: int = 0,
         classes: tuple[int, ...] = (1, 5, 7, 10)) -> Path:
    """Write the MADOS tree and return ``root``."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    spectra = {c: rng.uniform(0.01, 0.25, size=4) for c in classes}
    entries = []
    for s in range(n_scenes):
        scene = f"Scene_{s}"
        wls = [492, 559 if s == 1 else 560, 665, 833]
        for crop in range(1, crops_per_scene + 1):
            g = size // block
            blocks = rng.choice(np.array(classes), size=(g, g))
            blocks[rng.random((g, g)) < 0.1] = 0
            label = np.kron(blocks, np.ones((block, block), dtype=np.int64)).astype(np.uint8)
            base = np.stack([np.vectorize(lambda c, b=b: spectra[c][b] if c else 0.05)(label) for b in range(4)])
            img = (base + rng.normal(0, 0.005, size=base.shape)).astype(np.float32)
            hole = rng.integers(0, size - 4)
            img[:, hole:hole + 4, :4] = np.nan
            for b, wl in enumerate(wls):
                _write(root / scene / "10" / f"{scene}_L2R_rhorc_{wl}_{crop}.tif", img[b])
            _write(root / scene / "20" / f"{scene}_L2R_rhorc_704_{crop}.tif", img[2, ::2, ::2].copy())
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
