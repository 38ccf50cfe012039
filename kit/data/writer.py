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
``BANDS = ("blue", "green", "red", "nir")`` (Sentinel-2 B2 B3 B4 B8).

A shard set is written whole: into a temporary sibling folder ``.ROOT.tmp-PID``, ``index.json`` last,
then renamed into place. An interrupted or failed run leaves an existing set untouched (its temporary
folder is removed, or, after a kill, by the next writer); a set never mixes shards of two runs, and the
reader refuses a folder whose shards are not all in its index.

``root`` may also be an object-store URL (``s3://``, ``gs://``, any fsspec URL but ``http(s)://`` and
``pipe:``, which cannot be written): shards are streamed to the temporary prefix ``ROOT/.tmp-PID-TOKEN/``,
and ``close`` moves them under ``ROOT/`` and publishes ``index.json`` last (an old set's index is removed
first, so a reader sees the old set, no set, or the new one, never a mix). No lock guards two writers of one
URL (object stores have none): give each writer its own ``--out``. Tiles whose nodata fraction exceeds
``max_nodata_fraction`` are skipped and counted; the index records the nodata rule so the reader applies
the same one.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import webdataset as wds

from crossscale_kit.data import location
from crossscale_kit.io import BANDS, pid_alive, write_json_atomic

log = logging.getLogger(__name__)

FORMAT = "crossscale-pairs/1"
NODATA = -10000  # the Sen2Venus / kit convention, always treated as nodata
MIN_MR_SIDE = 8  # smallest MR tile side the reader accepts
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


def check_tile_size(mr_side: int, scale: int = 1) -> None:
    """Refuse up front an MR tile side the reader would reject (before any tile is written)."""
    if int(mr_side) < MIN_MR_SIDE:
        raise ValueError(f"MR tiles of {mr_side} px (HR {mr_side * scale} px) are below the reader's minimum of "
                         f"{MIN_MR_SIDE} px; choose a tile side >= {MIN_MR_SIDE} (e.g. --tile 64).")


def nodata_fraction(a: np.ndarray, nodata: float | None = None) -> float:
    """Fraction of pixels of ``a (C, H, W)`` where any band is nodata: -10000, ``nodata``, or NaN."""
    mask = a == NODATA
    if nodata is not None and nodata != NODATA and not np.isnan(nodata):
        mask |= a == nodata
    if a.dtype.kind == "f":
        mask |= np.isnan(a)
    return float(mask.any(axis=0).mean())


class _HashingFile:
    """A write-only file that hashes (sha256) and counts what passes through it to the real file."""

    def __init__(self, f) -> None:
        self._f = f  # a fresh file in the writer's own staging folder (or prefix)
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class PairShardWriter:
    """Streams pairs into ``pairs-%06d.tar`` shards of a new set; ``close`` writes ``index.json`` and renames it in.

    Args:
        root: output folder of the set.
        shard_size: pairs per shard.
        bands: band names of the stored arrays, in order.
        mr_gsd, hr_gsd: ground sample distances in metres; their ratio must be the pair's scale.
        prefix: shard file-name prefix.
        replace: a non-empty ``root`` is replaced by the new set once it is complete (True), or refused at
            once (False; the CLI's default without ``--replace``).
        nodata: the source's declared nodata value (besides -10000 and NaN, which always count).
        max_nodata_fraction: largest fraction of nodata pixels (in MR or HR) of a written pair; pairs above
            it are skipped and counted in ``skipped["nodata"]``, and the reader uses the pairs below it (their
            nodata pixels filled with the band mean). None: pairs are written as given, those holding nodata
            counted in ``nodata_pairs`` (the reader will skip them) and a warning logged on close.

    Use as a context manager (an exception drops the new set and keeps the old one); ``write`` returns
    whether the pair was written and raises on an invalid pair before anything of it is written.
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
        replace: bool = True,
        nodata: float | None = None,
        max_nodata_fraction: float | None = None,
        storage_options: dict | None = None,
    ) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}.")
        ratio = mr_gsd / hr_gsd
        if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
            raise ValueError(f"mr_gsd / hr_gsd = {mr_gsd}/{hr_gsd} is not an integer scale.")
        if max_nodata_fraction is not None and not 0.0 <= max_nodata_fraction <= 1.0:
            raise ValueError(f"max_nodata_fraction must be in [0, 1], got {max_nodata_fraction}.")
        if not isinstance(prefix, str) or not _KEY_RE.match(prefix):
            raise ValueError(f"--prefix {prefix!r}: a shard name prefix may hold only letters, digits, '_' and '-' "
                             "(no '/', '.' or '..': shards are written inside --out only); e.g. --prefix pairs.")
        self.remote = not location.is_local(root)
        self.storage_options = storage_options
        if self.remote:
            self._init_remote(os.fspath(root), replace)
        else:
            self._init_local(root, replace)
        self.shard_size = shard_size
        self.bands = tuple(bands)
        self.mr_gsd, self.hr_gsd = float(mr_gsd), float(hr_gsd)
        self.scale = int(round(ratio))
        self.prefix = prefix
        self.nodata = None if nodata is None else float(nodata)
        self.max_nodata_fraction = None if max_nodata_fraction is None else float(max_nodata_fraction)
        self.nodata_pairs = 0
        self._shard_no = 0
        self._tar: wds.TarWriter | None = None
        self._count = 0
        self.shards: list[dict[str, Any]] = []
        self.num_samples = 0
        self.skipped: Counter = Counter()
        self._keys: set[str] = set()

    def _init_remote(self, url: str, replace: bool) -> None:
        s = location.scheme(url)
        if s in ("pipe", "http", "https"):
            raise ValueError(f"--out {url}: a {s}: destination cannot be written; write to a local folder, s3:// or "
                             f"gs:// (and serve that).")
        location.check_root(url)
        self.root = url.rstrip("/")
        index = location.join(self.root, "index.json")
        if not replace and location.exists(index, self.storage_options):
            raise ValueError(f"{self.root} already holds a shard set (index.json); pass --replace (replace=True) to "
                             f"replace it once the new one is complete, or choose another --out.")
        self._fs, _ = location._fs(self.root, self.storage_options)
        self.staging = f"{self.root}/.tmp-{os.getpid()}-{os.urandom(4).hex()}"
        self._lock_fd = None

    def _init_local(self, root, replace: bool) -> None:
        self.root = Path(location.local_path(root))
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"{self.root} exists and is not a folder; choose another output folder.")
        if not replace and self.root.is_dir() and any(self.root.iterdir()):
            raise ValueError(f"{self.root} is not empty; pass --replace (replace=True) to replace its shard set once "
                             f"the new one is complete, or choose an empty output folder.")
        self._lock_fd = self._lock_output()
        self._remove_stale_temporaries()
        self.staging = self.root.parent / f".{self.root.name}.tmp-{os.getpid()}"
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)

    def _lock_output(self) -> int:
        """An exclusive lock on ``.ROOT.lock`` beside the set, held until close/abort (then removed): two
        writers of one output folder cannot both run (the second is refused at once, before any work)."""
        import fcntl

        self.root.parent.mkdir(parents=True, exist_ok=True)
        path = self.root.parent / f".{self.root.name}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise ValueError(f"{path} cannot be opened as the output lock ({exc.strerror}); remove it if it is a "
                             "link or not a file, and run again.") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if not os.path.samestat(os.fstat(fd), os.lstat(path)):  # removed by its holder meanwhile
                raise BlockingIOError
        except (BlockingIOError, FileNotFoundError):
            os.close(fd)
            raise ValueError(f"another process is writing a shard set to {self.root} (it holds {path}); wait for "
                             "it to finish, or choose another --out.") from None
        return fd

    def _unlock_output(self) -> None:
        """Remove the lock file while still holding it (a later writer checks it locked the file in place)."""
        if getattr(self, "_lock_fd", None) is not None:
            (self.root.parent / f".{self.root.name}.lock").unlink(missing_ok=True)
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    def _remove_stale_temporaries(self) -> None:
        """Temporary sets of killed writers (their process is gone) next to ``root``."""
        for p in self.root.parent.glob(f".{self.root.name}.tmp-*"):
            pid = p.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(p, ignore_errors=True)

    # -- writing ---------------------------------------------------------------------------------
    def _open(self) -> None:
        name = f"{self.prefix}-{self._shard_no:06d}.tar"
        # payloads are encoded here, as bytes; a whole-second mtime keeps the members plain ustar headers
        # (a float mtime costs every member an extra pax header, which the reader then has to parse)
        if self.remote:
            self._file = _HashingFile(self._fs.open(location.join(self.staging, name), "wb"))
        else:
            self._file = _HashingFile(open(self.staging / name, "xb"))
        self._tar = wds.TarWriter(self._file, encoder=False, mtime=int(time.time()))
        self._count = 0

    def _finish_shard(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        self._file.close()
        # size and content hash: the index (whose own hash identifies the set) then names the shards' content
        self.shards.append({"name": f"{self.prefix}-{self._shard_no:06d}.tar", "num_samples": self._count,
                            "size": self._file.size, "sha256": self._file.sha256.hexdigest()})
        self._tar = None
        self._shard_no += 1

    def write(self, key: str, mr: np.ndarray, hr: np.ndarray, meta: dict[str, Any] | None = None) -> bool:
        """Add one pair; return False when it was skipped for nodata.

        Args:
            key: unique sample key of letters, digits, ``_`` and ``-`` (no dots).
            mr: ``(C, h, w)`` integer array (int16, reflectance x 10000).
            hr: ``(C, s*h, s*w)`` array of the same dtype kind.
            meta: extra JSON-serialisable fields (site, date, bounds, crs ...).

        Raises:
            ValueError: a bad key, shape, band count or scale, or a tile smaller than the reader accepts.
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
        check_tile_size(min(mr.shape[1:]), s)
        frac = max(nodata_fraction(mr, self.nodata), nodata_fraction(hr, self.nodata))
        if self.max_nodata_fraction is not None and frac > self.max_nodata_fraction:
            self.skipped["nodata"] += 1
            return False
        self.nodata_pairs += frac > 0
        if self._tar is None:
            self._open()
        record = {"key": key, "scale": s, "mr_gsd": self.mr_gsd, "hr_gsd": self.hr_gsd, "bands": list(self.bands)}
        if frac > 0:
            record["nodata_fraction"] = round(frac, 6)
        record.update(meta or {})
        self._tar.write({"__key__": key, "mr.npy": _npy(mr), "hr.npy": _npy(hr), "json": json.dumps(record).encode()})
        self._keys.add(key)
        self._count += 1
        self.num_samples += 1
        if self._count >= self.shard_size:
            self._finish_shard()
        return True

    def close(self) -> dict[str, Any]:
        """Finish the last shard, write ``index.json`` (last), put the set in place whole and return the index."""
        self._finish_shard()
        index = {
            "format": FORMAT,
            "bands": list(self.bands),
            "scale": self.scale,
            "mr_gsd": self.mr_gsd,
            "hr_gsd": self.hr_gsd,
            "num_samples": self.num_samples,
            "nodata": [NODATA] + ([self.nodata] if self.nodata not in (None, NODATA) else []),
            "max_nodata_fraction": self.max_nodata_fraction or 0.0,
            "nodata_pairs": self.nodata_pairs,
            "skipped": dict(self.skipped),
            "shards": self.shards,
        }
        if self.nodata_pairs and self.max_nodata_fraction is None:
            log.warning("%d of %d pairs written to %s hold nodata pixels (%s or NaN); the reader will skip them. "
                        "Pass max_nodata_fraction (make_shards --max-nodata) to drop or keep them at write time.",
                        self.nodata_pairs, self.num_samples, self.root, index["nodata"])
        if self.remote:
            self._publish_remote(index)
            return index
        write_json_atomic(self.staging / "index.json", index)
        old = None
        if self.root.exists():  # move the old set aside, put the new one in, then drop the old one
            old = self.root.parent / f".{self.root.name}.old-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            os.rename(self.root, old)
        try:
            os.rename(self.staging, self.root)
        except OSError:
            if old is not None:
                os.rename(old, self.root)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._unlock_output()
        return index

    def _publish_remote(self, index: dict) -> None:
        """Move the staged shards under ``root`` and publish ``index.json`` last (see the module docstring)."""
        fs, so = self._fs, self.storage_options
        index_url = location.join(self.root, "index.json")
        old: set[str] = set()
        if location.exists(index_url, so):
            try:
                old = {s["name"] for s in json.loads(location.read_bytes(index_url, so))["shards"]}
            except (ValueError, KeyError, TypeError):
                pass
            fs.rm(index_url)  # from here on no reader takes the old set for whole
        for s in self.shards:
            fs.mv(location.join(self.staging, s["name"]), location.join(self.root, s["name"]))
        for name in sorted(old - {s["name"] for s in self.shards}):
            fs.rm(location.join(self.root, name))
        fs.pipe_file(index_url, json.dumps(index, indent=2).encode())
        self._remove_staging()

    def _remove_staging(self) -> None:
        if self.remote:
            try:
                if self._fs.exists(self.staging):
                    self._fs.rm(self.staging, recursive=True)
            except FileNotFoundError:
                pass
        else:
            shutil.rmtree(self.staging, ignore_errors=True)

    def abort(self) -> None:
        """Drop the new set (its temporary folder); an existing set at ``root`` stays as it was."""
        if self._tar is not None:
            self._tar.close()
            self._file.close()
            self._tar = None
        self._remove_staging()
        self._unlock_output()

    def __enter__(self) -> "PairShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
