"""Helpers shared by the pair sources: shape/finite checks of a pair, int16 storage with the kit's nodata.

Nodata is the writer's business (:class:`crossscale_kit.data.writer.PairShardWriter` counts it per pair, skips pairs
above ``max_nodata_fraction`` and records the rule for the reader): a source only maps its raster's own
nodata value to the kit's -10000 when it stores the pair (:func:`to_int16`).
"""
from __future__ import annotations

import numpy as np

from crossscale_kit.data.writer import NODATA


def check_pair(mr: np.ndarray, hr: np.ndarray, scale: int = 2) -> str | None:
    """Reason to skip a pair before the writer sees it (``bad_shape``, ``nonfinite``), or None."""
    if mr.ndim != 3 or hr.ndim != 3 or mr.shape[0] != hr.shape[0] or hr.shape[1] != scale * mr.shape[1] \
            or hr.shape[2] != scale * mr.shape[2]:
        return "bad_shape"
    if not (np.isfinite(mr).all() and np.isfinite(hr).all()):
        return "nonfinite"
    return None


def to_int16(a: np.ndarray, nodata: float | None = None, scale: float = 1.0) -> np.ndarray:
    """``a * scale`` rounded and clipped to int16 (reflectance x 10000); pixels equal to ``nodata`` become -10000."""
    out = np.clip(np.rint(a * scale), -32768, 32767).astype(np.int16)
    if nodata is not None and not np.isnan(nodata):
        out[a == nodata] = NODATA
    return out
