"""Write paired MR/HR tiles as WebDataset shards (through ``webdataset.TarWriter``).

On-disk layout of a shard folder (the contract every reader and writer of the kit follows)::

    ROOT/
      pairs-000000.tar     members <key>.mr.npy  int16 (C, h, w)       MR tile, reflectance x 10000
                                   <key>.hr.npy  int16 (C, s*h, s*w)   HR tile over the same ground
                                   <key>.json    {"key", "source", "scale", "mr_gsd", "hr_gsd", ...}
      pairs-000001.tar
      index.json           {"format": "crossscale-pairs/1", "bands": [...], "scale": s,
                            "mr_gsd": 10.0, "hr_gsd": 5.0, "num_samples": n,
                            "shards": [{"name": "pairs-000000.tar", "num_samples": k}, ...]}

Keys contain no dots (WebDataset splits member names at the first dot). Band order is the kit's:
``BANDS = ("blue", "green", "red", "nir")`` (Sentinel-2 B2 B3 B4 B8). Every shard is written to a
temporary name and renamed when complete, so an interrupted run never leaves a truncated shard under
a final name, and re-running a writer into the same folder replaces shards whole.
"""
from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import webdataset as wds

from kit.io import BANDS, write_json_atomic

FORMAT = "crossscale-pairs/1"
_KEY_RE = re.compile(r"^[A-Za-z0-9_\-]+$")


def validate_pair_shapes(mr_shape: tuple[int, ...], hr_shape: tuple[int, ...], bands: int | None = None) -> int:
    """Check that ``hr`` is exactly an integer multiple ``s`` of ``mr``; return ``s``.

    Args:
        mr_shape: ``(C, h, w)``.
        hr_shape: ``(C, s*h, s*w)``.
        bands: expected band count, or None to accept any equal count.

    Raises:
        ValueError naming both shapes and what to change.
    """
    if len(mr_shape) != 3 or len(hr_shape) != 3:
        raise ValueError(f"pairs must be (C, H, W) arrays, got MR {tuple(mr_shape)} and HR {tuple(hr_shape)}.")
    if mr_shape[0] != hr_shape[0]:
        raise ValueError(
            f"MR has {mr_shape[0]} bands but HR has {hr_shape[0]} (MR {tuple(mr_shape)}, HR {tuple(hr_shape)}); "
            "select the same bands for both sensors."
        )
    if bands is not None and mr_shape[0] != bands:
        raise ValueError(
            f"expected {bands} bands {BANDS[:bands] if bands <= len(BANDS) else ''} but the pair has "
            f"{mr_shape[0]} (MR {tuple(mr_shape)}); select the bands with --bands or set the reader's bands."
        )
    h, w = mr_shape[1:]
    H, W = hr_shape[1:]
    if h <= 0 or w <= 0 or H % h or W % w or H // h != W // w or H // h < 1:
        raise ValueError(
            f"HR {tuple(hr_shape)} is not an exact integer multiple s of MR {tuple(mr_shape)} in both axes; "
            "crop both tiles to the same ground footprint with HR size = s * MR size."
        )
    return H // h


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


class PairShardWriter:
    """Streams pairs into ``pairs-%06d.tar`` shards and writes ``index.json`` on close.

    Args:
        root: output folder (created).
        shard_size: pairs per shard.
        bands: band names of the stored arrays, in order.
        mr_gsd, hr_gsd: ground sample distances in metres; their ratio must be the pair's scale.
        prefix: shard file-name prefix.
        start_shard: number of the first shard (to append to a folder).

    Use as a context manager; ``write`` returns nothing and raises on an invalid pair before anything
    of that pair is written.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        shard_size: int = 256,
        *,
        bands: tuple[str, ...] = BANDS,
        mr_gsd: float = 10.0,
        hr_gsd: float = 5.0,
        prefix: str = "pairs",
        start_shard: int = 0,
    ) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}.")
        ratio = mr_gsd / hr_gsd
        if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
            raise ValueError(f"mr_gsd / hr_gsd = {mr_gsd}/{hr_gsd} is not an integer scale.")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.shard_size = shard_size
        self.bands = tuple(bands)
        self.mr_gsd, self.hr_gsd = float(mr_gsd), float(hr_gsd)
        self.scale = int(round(ratio))
        self.prefix = prefix
        self._shard_no = start_shard
        self._tar: wds.TarWriter | None = None
        self._tmp: Path | None = None
        self._count = 0
        self.shards: list[dict[str, Any]] = []
        self.num_samples = 0
        self._keys: set[str] = set()

    # -- writing ---------------------------------------------------------------------------------
    def _open(self) -> None:
        name = f"{self.prefix}-{self._shard_no:06d}.tar"
        self._tmp = self.root / f".{name}.tmp{os.getpid()}"
        self._tar = wds.TarWriter(str(self._tmp), encoder=False)  # payloads are encoded here, as bytes
        self._count = 0

    def _finish_shard(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        name = f"{self.prefix}-{self._shard_no:06d}.tar"
        os.replace(self._tmp, self.root / name)
        self.shards.append({"name": name, "num_samples": self._count})
        self._tar, self._tmp = None, None
        self._shard_no += 1

    def write(self, key: str, mr: np.ndarray, hr: np.ndarray, meta: dict[str, Any] | None = None) -> None:
        """Add one pair.

        Args:
            key: unique sample key of letters, digits, ``_`` and ``-`` (no dots).
            mr: ``(C, h, w)`` integer array (int16, reflectance x 10000).
            hr: ``(C, s*h, s*w)`` array of the same dtype kind.
            meta: extra JSON-serialisable fields (site, date, bounds, crs ...).
        """
        if not _KEY_RE.match(key):
            raise ValueError(f"sample key {key!r} may hold only letters, digits, '_' and '-' (no dots).")
        if key in self._keys:
            raise ValueError(f"duplicate sample key {key!r}; keys must be unique within a shard folder.")
        s = validate_pair_shapes(mr.shape, hr.shape, len(self.bands))
        if s != self.scale:
            raise ValueError(
                f"pair {key!r} has scale {s} but the writer was opened for {self.scale} "
                f"(mr_gsd {self.mr_gsd}, hr_gsd {self.hr_gsd})."
            )
        if self._tar is None:
            self._open()
        record = {"key": key, "scale": s, "mr_gsd": self.mr_gsd, "hr_gsd": self.hr_gsd, "bands": list(self.bands)}
        record.update(meta or {})
        self._tar.write({"__key__": key, "mr.npy": _npy(mr), "hr.npy": _npy(hr), "json": json.dumps(record).encode()})
        self._keys.add(key)
        self._count += 1
        self.num_samples += 1
        if self._count >= self.shard_size:
            self._finish_shard()

    def close(self) -> dict[str, Any]:
        """Finish the open shard, write ``index.json`` atomically and return it."""
        self._finish_shard()
        index = {
            "format": FORMAT,
            "bands": list(self.bands),
            "scale": self.scale,
            "mr_gsd": self.mr_gsd,
            "hr_gsd": self.hr_gsd,
            "num_samples": self.num_samples,
            "shards": self.shards,
        }
        write_json_atomic(self.root / "index.json", index)
        return index

    def abort(self) -> None:
        """Drop the shard in progress (its temporary file) without writing the index."""
        if self._tar is not None:
            self._tar.close()
            self._tmp.unlink(missing_ok=True)
            self._tar, self._tmp = None, None

    def __enter__(self) -> "PairShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
