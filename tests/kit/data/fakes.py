"""Tiny seeded shard folders in the real on-disk format, including bad samples."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from crossscale_kit.data.synthetic import SyntheticScenes, write_synthetic_shards


def synthetic_root(root: Path, *, num_pairs: int = 24, mr_size: int = 16, shard_size: int = 4, seed: int = 0) -> Path:
    """Synthetic pairs written with the kit's writer."""
    cfg = SyntheticScenes(mr_size=mr_size, scale=2, num_pairs=num_pairs, seed=seed, shard_size=shard_size)
    write_synthetic_shards(cfg, root, progress=False)
    return root


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def write_raw_shard(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> Path:
    """A tar of arbitrary members ``<key>.<suffix>`` (bypasses the writer's validation)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tf:
        for key, members in samples:
            for suffix, payload in members.items():
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
    return path


def good_pair(rng: np.random.Generator, h: int = 16, s: int = 2, bands: int = 4, dtype=np.int16):
    mr = rng.integers(100, 3000, size=(bands, h, h)).astype(dtype)
    hr = rng.integers(100, 3000, size=(bands, s * h, s * h)).astype(dtype)
    return mr, hr


def pair_members(mr: np.ndarray, hr: np.ndarray) -> dict[str, bytes]:
    return {"mr.npy": npy_bytes(mr), "hr.npy": npy_bytes(hr), "json": b"{}"}
