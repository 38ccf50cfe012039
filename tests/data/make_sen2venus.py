"""Write tiny fake Sen2Venus releases in their on-disk formats.

v1: ``ROOT/v1/<site>/index.csv`` (TAB-separated; columns ``date``, ``tensor_10m_b2b3b4b8``,
``tensor_05m_b2b3b4b8``, ``tensor_20m_b5b6b7b8a``, ``tensor_05m_b5b6b7b8a``, ``nb_patches``) whose cells
name ``.pt`` stacks ``[N, 4, h, h]`` / ``[N, 4, 2h, 2h]`` int16 with file names unlike the column
names (``<site>_<date>_S2_rgbnir.pt``). MR is the 2 x 2 block mean of HR. Site ``SITE-A``'s second
acquisition has one patch with a nodata (-10000) corner and is stored as float32 with one NaN patch;
site ``SITE-B`` has one acquisition whose .pt files are garbage (corrupt).

v2: ``ROOT/v2/SITE-C.zip`` holding ``SITE-C/<id>_10m.tif`` and ``SITE-C/<id>_05m.tif`` (int16, 4 bands,
nodata -10000): good patches, one all-nodata patch, one corrupt member, one MR without its HR.

``make`` returns the expected counts. ``python tests/data/make_sen2venus.py ROOT``.
"""
from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np

COLUMNS = ["date", "tensor_10m_b2b3b4b8", "tensor_05m_b2b3b4b8", "tensor_20m_b5b6b7b8a", "tensor_05m_b5b6b7b8a", "nb_patches"]


def make_pair_stack(rng: np.random.Generator, n: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """``[n, 4, h, h]`` MR and ``[n, 4, 2h, 2h]`` HR int16 where MR is exactly the 2 x 2 block mean of HR."""
    mr = rng.integers(200, 4000, size=(n, 4, h, h)).astype(np.int64)
    a = rng.integers(-100, 100, size=(n, 4, h, h))
    b = rng.integers(-100, 100, size=(n, 4, h, h))
    hr = np.repeat(np.repeat(mr, 2, -1), 2, -2)
    hr[..., 0::2, 0::2] += a
    hr[..., 0::2, 1::2] -= a
    hr[..., 1::2, 0::2] += b
    hr[..., 1::2, 1::2] -= b
    return mr.astype(np.int16), hr.astype(np.int16)


def _tif_bytes(arr: np.ndarray, gsd: float) -> bytes:
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin

    with MemoryFile() as mf:
        with mf.open(driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0], dtype="int16",
                     crs="EPSG:32631", transform=from_origin(500000, 4800000, gsd, gsd), nodata=-10000) as ds:
            ds.write(arr)
            ds.descriptions = ("B2", "B3", "B4", "B8")
        return mf.read()


def make(root, h: int = 8, n_patches: int = 3, seed: int = 0) -> dict:
    """Write ``ROOT/v1`` and ``ROOT/v2``; return paths and the counts a full run must report."""
    import torch

    rng = np.random.default_rng(seed)
    root = Path(root)
    expected = {"v1_written": 0, "v1_skipped": {}, "v2_written": 0, "v2_skipped": {}, "stacks": {}}
    for site, dates in (("SITE-A", ["2018-08-01", "2018-09-12"]), ("SITE-B", ["2019-03-03", "2019-05-05"])):
        folder = root / "v1" / site
        folder.mkdir(parents=True, exist_ok=True)
        lines = ["\t".join(COLUMNS)]
        for k, date in enumerate(dates):
            mr_name, hr_name = f"{site}_{date}_S2_rgbnir.pt", f"{site}_{date}_VENUS_rgbnir.pt"
            mr, hr = make_pair_stack(rng, n_patches, h)
            if site == "SITE-B" and k == 1:  # corrupt acquisition
                (folder / mr_name).write_bytes(b"PK\x03\x04 definitely not a torch file")
                (folder / hr_name).write_bytes(b"garbage")
                expected["v1_skipped"]["unreadable"] = n_patches
            else:
                if site == "SITE-A" and k == 1:
                    hr[0, :, :4, :4] = -10000  # nodata corner in patch 0
                    mr_f = mr.astype(np.float32)
                    mr_f[1, 2, 3, 3] = np.nan  # non-finite patch 1
                    torch.save(torch.from_numpy(mr_f), folder / mr_name)
                    torch.save(torch.from_numpy(hr), folder / hr_name)
                    expected["v1_skipped"]["nodata"] = 1
                    expected["v1_skipped"]["nonfinite"] = 1
                    expected["v1_written"] += n_patches - 2
                else:
                    torch.save(torch.from_numpy(mr), folder / mr_name)
                    torch.save(torch.from_numpy(hr), folder / hr_name)
                    expected["v1_written"] += n_patches
                expected["stacks"][f"{site}/{mr_name}"] = (mr, hr)
            re_names = (f"{site}_{date}_S2_rededge.pt", f"{site}_{date}_VENUS_rededge.pt")
            lines.append("\t".join([date, mr_name, hr_name, *re_names, str(n_patches)]))
        (folder / "index.csv").write_text("\n".join(lines) + "\n")
    zdir = root / "v2"
    zdir.mkdir(parents=True, exist_ok=True)
    pairs = {}
    with zipfile.ZipFile(zdir / "SITE-C.zip", "w") as z:
        for i in range(4):
            mr, hr = make_pair_stack(rng, 1, h)
            mr, hr = mr[0], hr[0]
            if i == 3:
                mr[:] = -10000
                hr[:] = -10000
            z.writestr(f"SITE-C/{i:04d}_10m.tif", _tif_bytes(mr, 10.0))
            z.writestr(f"SITE-C/{i:04d}_05m.tif", _tif_bytes(hr, 5.0))
            if i < 3:
                pairs[f"{i:04d}"] = (mr, hr)
        z.writestr("SITE-C/0004_10m.tif", b"II*\x00 corrupt tiff member")
        z.writestr("SITE-C/0004_05m.tif", _tif_bytes(make_pair_stack(rng, 1, h)[1][0], 5.0))
        z.writestr("SITE-C/0005_10m.tif", _tif_bytes(make_pair_stack(rng, 1, h)[0][0], 10.0))  # no HR member
        buf = io.StringIO("README: fake Sen2Venus v2 site")
        z.writestr("SITE-C/README.txt", buf.getvalue())
    expected["v2_written"] = 3
    expected["v2_skipped"] = {"nodata": 1, "unreadable": 1, "missing_hr": 1}
    expected["v2_pairs"] = pairs
    expected["v1"] = root / "v1"
    expected["v2"] = root / "v2"
    return expected


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("root")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    e = make(a.root, seed=a.seed)
    print({k: v for k, v in e.items() if k not in ("stacks", "v2_pairs")})
