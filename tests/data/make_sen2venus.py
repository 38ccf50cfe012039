"""Write tiny fake Sen2Venus releases in their on-disk formats.

v1: ``ROOT/v1/<site>/index.csv`` (TAB-separated; columns ``date``, ``tensor_10m_b2b3b4b8``,
``tensor_05m_b2b3b4b8``, ``tensor_20m_b5b6b7b8a``, ``tensor_05m_b5b6b7b8a``, ``nb_patches``) whose cells
name ``.pt`` stacks ``[N, 4, h, h]`` / ``[N, 4, 2h, 2h]`` int16 with file names unlike the column
names (``<site>_<date>_S2_rgbnir.pt``). MR is the 2 x 2 block mean of HR. Site ``SITE-A``'s second
acquisition has one patch with a nodata (-10000) corner and is stored as float32 with one NaN patch;
site ``SITE-B`` has one acquisition whose .pt files are garbage (corrupt).

v2 (release 2.0.0): ``ROOT/v2/SITE-C.zip`` holds ``SITE-C/index.csv`` and one inner zip per acquisition,
band group and resolution, ``SITE-C/SITE-C_<date>_<tile>_<group>_<res>.zip``, whose members are one int16
GeoTIFF per patch, ``<group>/<res>/SITE-C_<pid>_<date>_<tile>_<group>_<res>.tif`` (nodata -10000). index.csv
is TAB-separated: the patch id first, then ``b2b3b4b8_10m``, ``b2b3b4b8_05m``, ``b5b6b7b8a_20m``,
``b5b6b7b8a_05m``, ``b11b12_20m``, each cell ``<inner>.zip/<member>.tif`` relative to the site folder. The 10 m
and 5 m files of a patch sit in different inner zips. Rows: good patches over two acquisitions, one
all-nodata patch, one with a 1/4 nodata corner, one corrupt 10 m member, one whose 5 m member is missing.

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


def _tif_bytes(arr: np.ndarray, gsd: float, descriptions: tuple[str, ...] | None = None) -> bytes:
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin

    with MemoryFile() as mf:
        with mf.open(driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0], dtype="int16",
                     crs="EPSG:32631", transform=from_origin(500000, 4800000, gsd, gsd), nodata=-10000) as ds:
            ds.write(arr)
            if descriptions:
                ds.descriptions = descriptions
        return mf.read()


V2_COLUMNS = ["b2b3b4b8_10m", "b2b3b4b8_05m", "b5b6b7b8a_20m", "b5b6b7b8a_05m", "b11b12_20m"]


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def make_v2(zdir: Path, rng: np.random.Generator, h: int, site: str = "SITE-C") -> dict:
    """Write ``zdir/<site>.zip`` in the v2.0.0 layout; return the pairs a run must write and its skip counts."""
    zdir.mkdir(parents=True, exist_ok=True)
    acquisitions = [("2018-02-14", "32ULU", 4), ("2018-03-01", "32ULU", 3)]
    inner: dict[str, dict[str, bytes]] = {}
    rows, pairs, pid = [], {}, 0
    kinds = {1: "nodata", 3: "partial", 4: "corrupt", 6: "missing_hr"}
    for date, tile, n in acquisitions:
        for _ in range(n):
            cells = []
            for col in V2_COLUMNS:
                group, res = col.split("_")
                zname = f"{site}_{date}_{tile}_{group}_{res}.zip"
                member = f"{group}/{res}/{site}_{pid}_{date}_{tile}_{group}_{res}.tif"
                cells.append(f"{zname}/{member}")
                inner.setdefault(zname, {})
            mr, hr = (a[0] for a in make_pair_stack(rng, 1, h))
            kind = kinds.get(pid)
            if kind == "nodata":
                mr[:], hr[:] = -10000, -10000
            if kind == "partial":
                hr[:, : h, : h] = -10000  # a quarter of the HR pixels
            z10, m10 = cells[0].split(".zip/")
            z05, m05 = cells[1].split(".zip/")
            inner[z10 + ".zip"][m10] = b"II*\x00 corrupt tiff member" if kind == "corrupt" else _tif_bytes(mr, 10.0)
            if kind != "missing_hr":
                inner[z05 + ".zip"][m05] = _tif_bytes(hr, 5.0)
            for cell in cells[2:]:  # red-edge / SWIR groups: tiny placeholders of the right kind
                zname, member = cell.split(".zip/")
                bands = 2 if "b11b12" in cell else 4
                inner[zname + ".zip"][member] = _tif_bytes(np.zeros((bands, 2, 2), np.int16), 20.0)
            if kind is None:
                pairs[pid] = (mr, hr)
            rows.append("\t".join([str(pid), *cells]))
            pid += 1
    index = "\t".join(["", *V2_COLUMNS]) + "\n" + "\n".join(rows) + "\n"
    with zipfile.ZipFile(zdir / f"{site}.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{site}/index.csv", index)
        for zname, members in inner.items():
            z.writestr(f"{site}/{zname}", _zip_bytes(members))
    return {"v2_written": len(pairs), "v2_pairs": pairs,
            "v2_skipped": {"nodata": 2, "unreadable": 1, "missing_file": 1}}


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
    expected.update(make_v2(root / "v2", rng, h))
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
