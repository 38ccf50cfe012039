"""Write tiny fake MR/HR GeoTIFF pairs of different CRS, GSD and extent, plus broken variants.

All rasters cover ground near 45.1 N, 6 E (the UTM 31/32 boundary). A 96 x 96 "truth" HR field at 5 m
(EPSG:32631) is built so that its 2 x 2 block means are integers; ``mr.tif`` (48 x 48 at 10 m, 6 bands
described B1 B2 B3 B4 B8 B11, nodata -10000) holds exactly those block means in bands B2 B3 B4 B8.

- ``hr.tif``: the truth cropped at odd HR offsets (rows 5..75, cols 7..81: its origin sits mid MR pixel),
  4 undescribed bands, nodata -10000 with a nodata square (some tiles must be skipped).
- ``hr_utm32.tif``: the truth reprojected to EPSG:32632 at 5 m (other CRS and extent).
- ``hr_4m.tif``: 4 m pixels (GSD ratio 2.5). ``hr_far.tif``: 50 km away (disjoint footprint).
- ``hr_3band.tif``: bands described B2 B3 B4 only (NIR missing). ``hr_nodata.tif``: all nodata.
- ``corrupt.tif``: garbage bytes.

``make`` returns the paths and the truth arrays. ``python tests/data/make_geotiff_pair.py ROOT``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

CRS = "EPSG:32631"
X0, Y0 = 730000.0, 5000000.0
HR_OFF = (5, 7)  # rows, cols of hr.tif inside the truth grid
HR_SIZE = (70, 74)


def _write(path: Path, arr: np.ndarray, transform, crs=CRS, descriptions=None, nodata=-10000) -> Path:
    import rasterio

    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                       dtype=arr.dtype, crs=crs, transform=transform, nodata=nodata) as ds:
        ds.write(arr)
        if descriptions:
            ds.descriptions = tuple(descriptions)
    return path


def truth(seed: int = 0, n_mr: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """``(4, n, n)`` MR int16 (smooth) and ``(4, 2n, 2n)`` HR int16 whose 2 x 2 block means equal MR."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n_mr, 0:n_mr].astype(np.float64)
    mr = np.stack([
        1500 + 800 * np.sin(xx / (5 + b) + rng.uniform(0, 6)) * np.cos(yy / (7 + b) + rng.uniform(0, 6))
        + 300 * np.sin((xx + yy) / 11.0 + b) for b in range(4)
    ])
    mr = np.rint(mr).astype(np.int64)
    a = rng.integers(-40, 40, size=mr.shape)
    b = rng.integers(-40, 40, size=mr.shape)
    hr = np.repeat(np.repeat(mr, 2, -1), 2, -2)
    hr[:, 0::2, 0::2] += a
    hr[:, 0::2, 1::2] -= a
    hr[:, 1::2, 0::2] += b
    hr[:, 1::2, 1::2] -= b
    return mr.astype(np.int16), hr.astype(np.int16)


def make(root, seed: int = 0) -> dict:
    """Write the rasters into ``root``; return ``{"mr": path, "hr": path, ..., "truth_mr", "truth_hr"}``."""
    from rasterio.transform import from_origin
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1)
    mr, hr_truth = truth(seed)
    extra = rng.integers(100, 3000, size=(2, *mr.shape[1:])).astype(np.int16)
    mr6 = np.stack([extra[0], mr[0], mr[1], mr[2], mr[3], extra[1]])
    out = {"truth_mr": mr, "truth_hr": hr_truth}
    out["mr"] = _write(root / "mr.tif", mr6, from_origin(X0, Y0, 10, 10), descriptions=["B1", "B2", "B3", "B4", "B8", "B11"])
    r, c = HR_OFF
    hr = hr_truth[:, r:r + HR_SIZE[0], c:c + HR_SIZE[1]].copy()
    hr[:, 40:58, 44:62] = -10000
    out["hr"] = _write(root / "hr.tif", hr, from_origin(X0 + c * 5, Y0 - r * 5, 5, 5))
    # other CRS: reproject the whole truth to UTM 32N at 5 m
    src_t = from_origin(X0, Y0, 5, 5)
    h, w = hr_truth.shape[1:]
    t32, w32, h32 = calculate_default_transform(CRS, "EPSG:32632", w, h, X0, Y0 - h * 5, X0 + w * 5, Y0, resolution=5)
    dst = np.full((4, h32, w32), -10000, np.int16)
    reproject(hr_truth, dst, src_transform=src_t, src_crs=CRS, dst_transform=t32, dst_crs="EPSG:32632",
              resampling=Resampling.bilinear, src_nodata=-10000, dst_nodata=-10000)
    out["hr_utm32"] = _write(root / "hr_utm32.tif", dst, t32, crs="EPSG:32632", descriptions=["Blue", "Green", "Red", "NIR"])
    out["hr_4m"] = _write(root / "hr_4m.tif", hr_truth[:, :80, :80].copy(), from_origin(X0, Y0, 4, 4))
    out["hr_far"] = _write(root / "hr_far.tif", hr, from_origin(X0 + 50000, Y0, 5, 5))
    out["hr_3band"] = _write(root / "hr_3band.tif", hr[:3].copy(), from_origin(X0 + c * 5, Y0 - r * 5, 5, 5),
                             descriptions=["B2", "B3", "B4"])
    out["hr_nodata"] = _write(root / "hr_nodata.tif", np.full_like(hr, -10000), from_origin(X0 + c * 5, Y0 - r * 5, 5, 5))
    out["corrupt"] = root / "corrupt.tif"
    out["corrupt"].write_bytes(b"II*\x00" + bytes(rng.integers(0, 255, 200, dtype=np.uint8)))
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("root")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print({k: str(v) for k, v in make(a.root, a.seed).items() if not k.startswith("truth")})
