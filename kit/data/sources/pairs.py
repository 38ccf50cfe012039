"""Helpers shared by the pair sources: skip reasons of a pair, nodata fraction, int16 storage, stale shards."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def check_pair(mr: np.ndarray, hr: np.ndarray, nod_mr: float, nod_hr: float, max_nodata: float, scale: int = 2) -> str | None:
    """Reason to skip a pair (``bad_shape``, ``nonfinite``, ``nodata``) or None when it is fine."""
    if mr.ndim != 3 or hr.ndim != 3 or mr.shape[0] != hr.shape[0] or hr.shape[1] != scale * mr.shape[1] \
            or hr.shape[2] != scale * mr.shape[2]:
        return "bad_shape"
    if not (np.isfinite(mr).all() and np.isfinite(hr).all()):
        return "nonfinite"
    frac = max(nodata_fraction(mr, nod_mr), nodata_fraction(hr, nod_hr))
    if frac > max_nodata:
        return "nodata"
    return None


def nodata_fraction(a: np.ndarray, nodata: float | None) -> float:
    """Fraction of pixels of ``(C, h, w)`` where any band equals ``nodata``."""
    if nodata is None:
        return 0.0
    return float((a == nodata).any(0).mean())


def to_int16(a: np.ndarray) -> np.ndarray:
    """Round and clip to int16 (reflectance x 10000)."""
    return np.clip(np.rint(a), -32768, 32767).astype(np.int16)


def remove_stale_shards(out: Path, prefix: str, index: dict) -> list[str]:
    """Delete ``<prefix>-*.tar`` shards (and leftover temporaries) the new ``index.json`` does not list."""
    keep = {s["name"] for s in index["shards"]}
    removed = []
    for p in list(out.glob(f"{prefix}-*.tar")) + list(out.glob(f".{prefix}-*.tar.tmp*")):
        if p.name not in keep:
            p.unlink()
            removed.append(p.name)
    return removed
