"""The per-worker read pipeline: webdataset stages, with exact resume and counted bad samples on top.

One epoch of one logical worker is a ``wds.DataPipeline``::

    wds.SimpleShardList(epoch_shards(names, seed, epoch))     one permutation per epoch: f(seed, epoch)
    -> wds.slice(rank, None, world_size)                      node split (every shard once per epoch)
    -> wds.slice(worker, None, num_workers)                   worker split (logical worker, see loader)
    -> tar_samples(handler=CountingHandler)                    tar expansion + grouping by key (webdataset's)
    -> wds.shuffle(buffer, rng=Random(seed, epoch, rank, worker))

The caller enumerates the shuffled samples and skips the first ``offset`` (consumed before a resume)
without decoding them; everything before that point is raw bytes, so skipping costs only the read.
A shard that cannot be read to its end, and a shard with fewer samples than ``index.json`` lists, is
recorded by the handler (no sleep, unlike ``wds.warn_and_continue``); the caller counts and logs it
with the shard and the last key read.
"""
from __future__ import annotations

import io
import random
import re
import zlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import webdataset as wds

from crossscale_kit.data.errors import DataError
from crossscale_kit.data.location import READ_BUFFER, join, open_shard
from crossscale_kit.data.writer import MIN_MR_SIDE, NODATA, nodata_fraction  # noqa: F401 - the format's constants


class BadSample(Exception):
    """A sample that cannot be used; ``reason`` is the counter key, ``detail`` the logged message."""

    def __init__(self, reason: str, detail: str, key: str = "?", shard: str = "?") -> None:
        super().__init__(detail)
        self.reason, self.detail, self.key, self.shard = reason, detail, key, shard


class CountingHandler:
    """A webdataset exception handler that records the error and lets the pipeline continue.

    Errors land in ``self.errors`` as :class:`BadSample`: reason ``truncated`` for a shard that cannot be
    read to its end (once per opening, however many stages report it), ``duplicate_member`` for a member
    written twice. ``self.last`` is the last ``(shard, key)`` grouped, named in the message.
    """

    def __init__(self) -> None:
        self.errors: list[BadSample] = []
        self.failed: set[str] = set()  # shards whose current opening failed
        self.failures: dict[str, int] = {}  # failed openings per shard, never reset
        self.last: tuple[str, str] = ("?", "?")

    def opened(self, url: str) -> None:
        self.failed.discard(url)

    def __call__(self, exn: Exception) -> bool:
        first = str(exn.args[0]) if exn.args else type(exn).__name__
        url = next((a for a in reversed(exn.args) if isinstance(a, str) and a.endswith(".tar")), None)
        if url is None:  # tar_file_iterator names the file object in the message
            m = re.search(r"name='([^']+)'", first)
            url = m.group(1) if m else self.last[0]
        first = first.split(" @ <")[0]
        if isinstance(exn, ValueError) and "duplicate" in first:
            self.errors.append(BadSample("duplicate_member", first, self.last[1], url))
        elif url not in self.failed:
            self.failed.add(url)
            self.failures[url] = self.failures.get(url, 0) + 1
            key = self.last[1] if self.last[0] == url else "?"
            self.errors.append(BadSample("truncated", f"shard unreadable after sample {key!r}: "
                                         f"{type(exn).__name__}: {first}", key, url))
        return True


def epoch_shards(names: list[str], *, seed: int, epoch: int) -> list[str]:
    """The shard order of ``epoch``: one seeded permutation, identical on every rank and worker."""
    perm = np.random.default_rng([seed & 0xFFFFFFFF, epoch, 0x5A4D]).permutation(len(names))
    return [names[i] for i in perm]


def resampled_shards(names: list[str], *, seed: int, epoch: int, rank: int, world_size: int, worker: int,
                     num_workers: int) -> list[str]:
    """With ``resampled``: ``ceil(n / readers)`` shards drawn with replacement for one worker."""
    rng = np.random.default_rng([seed & 0xFFFFFFFF, epoch, rank, worker, 0x2E5A])
    k = max(1, -(-len(names) // (world_size * num_workers)))
    return [names[i] for i in rng.integers(0, len(names), size=k)]


def _note_opened(opened: list[str], handler: CountingHandler):
    def stage(src):
        for item in src:
            opened.append(item["url"])
            handler.opened(item["url"])
            yield item
    return stage


def _track(handler: CountingHandler, counts: dict[str, int]):
    def stage(src):
        for sample in src:
            if sample["__url__"] in handler.failed:  # the partial sample the failed read left: already counted
                continue
            handler.last = (sample["__url__"], sample["__key__"])
            counts[sample["__url__"]] = counts.get(sample["__url__"], 0) + 1
            yield sample
    return stage


def _check_lengths(opened: list[str], counts: dict[str, int], expected: dict[str, int | None],
                   handler: CountingHandler, names: dict[str, str] | None = None):
    """After the last sample: every opened shard that ended early without an error is ``truncated``."""
    def stage(src):
        before = dict(handler.failures)
        yield from src
        for url in dict.fromkeys(opened):
            want = expected.get((names or {}).get(url, Path(url).name))
            got = counts.get(url, 0)
            failed = handler.failures.get(url, 0) > before.get(url, 0)
            if want is not None and not failed and got < want * opened.count(url):
                handler.errors.append(BadSample("truncated", f"shard holds {got} samples but the index lists {want}",
                                                "?", url))
    return stage


def tar_samples(handler, storage_options: dict | None = None):
    """Pipeline stage: shard URLs (``{"url": path}``) -> raw samples, as ``wds.tarfile_to_samples``.

    webdataset's own tar expansion and grouping by key (``tar_file_expander``, ``group_by_keys``) over shards
    opened here with a ``READ_BUFFER`` read-ahead buffer. webdataset opens local files with Python's default
    8 KiB buffer (``GOPEN_BUFFER`` in the environment changes it), under which every 10 KiB record tarfile
    reads is a system call of its own: 60 or so per 128/256 px pair, a third of read + decode on this
    project's CPU machine (``benchmarks/data_pipeline.py``). A remote shard (``http(s)://``, ``s3://``,
    ``gs://``, ``pipe:``) is opened by :func:`crossscale_kit.data.location.open_shard`: fsspec (``storage_options``) under
    a background read-ahead that retries a dropped connection, or webdataset's ``pipe:`` opener. A shard is
    closed as soon as the next is asked for. Errors reach ``handler`` with the URL appended, as webdataset's
    opener does.
    """
    def opened(src):
        for item in src:
            url = item["url"]
            try:
                stream = open_shard(url, storage_options, buffer=READ_BUFFER)
            except Exception as exn:  # noqa: BLE001 - the handler decides, as in wds.tariterators.url_opener
                exn.args = exn.args + (url,)
                if handler(exn):
                    continue
                break
            try:
                yield {**item, "stream": stream}
            finally:
                stream.close()

    def stage(src):
        files = wds.tariterators.tar_file_expander(opened(src), handler=handler)
        return wds.tariterators.group_by_keys(files, handler=handler)
    return stage


def worker_epoch(root: str | Path, names: list[str], *, expected: dict[str, int | None], seed: int, epoch: int,
                 rank: int, world_size: int, worker: int, num_workers: int, resampled: bool,
                 shuffle_buffer: int, handler: CountingHandler,
                 storage_options: dict | None = None) -> wds.DataPipeline:
    """The raw samples (``{"__key__", "__url__", "mr.npy", ...}`` of bytes) of one worker in one epoch.

    ``root``: a local folder or a URL (see :mod:`crossscale_kit.data.location`); ``storage_options`` go to fsspec."""
    by_url = {join(root, n): n for n in names}
    if resampled:
        stages = [wds.SimpleShardList([join(root, n) for n in resampled_shards(
            names, seed=seed, epoch=epoch, rank=rank, world_size=world_size, worker=worker,
            num_workers=num_workers)])]
    else:
        stages = [wds.SimpleShardList([join(root, n) for n in epoch_shards(names, seed=seed, epoch=epoch)]),
                  wds.slice(rank, None, world_size), wds.slice(worker, None, num_workers)]
    opened: list[str] = []
    counts: dict[str, int] = {}
    stages += [_note_opened(opened, handler), tar_samples(handler, storage_options), _track(handler, counts),
               _check_lengths(opened, counts, expected, handler, by_url)]
    if shuffle_buffer > 1:
        rng = random.Random(f"{seed}/{epoch}/{rank}/{worker}")
        stages.append(wds.shuffle(shuffle_buffer, initial=shuffle_buffer, rng=rng))
    return wds.DataPipeline(*stages)


def shard_samples(path: str | Path, handler=wds.reraise_exception, storage_options: dict | None = None
                  ) -> Iterator[dict]:
    """Raw samples of one shard (a path or URL) in file order (``{"__key__", "mr.npy": bytes, ...}``)."""
    return iter(wds.DataPipeline(wds.SimpleShardList([str(path)]), tar_samples(handler, storage_options)))


def first_sample(path: str | Path, storage_options: dict | None = None) -> dict | BadSample | None:
    """The first sample of a shard, a :class:`BadSample` when the shard cannot be read, or None if empty."""
    try:
        return next(shard_samples(path, storage_options=storage_options), None)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - tarfile.ReadError, OSError, EOFError ... from the expansion
        return BadSample("truncated", f"shard {path} unreadable: {e}")


_HEADERS: dict[bytes, tuple] = {}  # npy header bytes -> (shape, fortran, dtype, data offset): tiles share a few


def decode_npy(data: bytes) -> np.ndarray:
    """Zero-copy, read-only view of an ``.npy`` payload (no pickles); headers seen before are not re-parsed."""
    key = bytes(data[:128])  # the magic and the header dict (its length is in the first 10 bytes)
    parsed = _HEADERS.get(key)
    if parsed is None:
        f = io.BytesIO(data)
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        if dtype.hasobject:
            raise ValueError("object arrays are not allowed")
        parsed = (shape, fortran, dtype, f.tell())
        if parsed[3] <= len(key) and len(_HEADERS) < 256:
            _HEADERS[key] = parsed
    shape, fortran, dtype, offset = parsed
    count = int(np.prod(shape)) if shape else 1
    if len(data) - offset < count * dtype.itemsize:
        raise ValueError(f"payload holds {len(data) - offset} bytes, the header promises {count * dtype.itemsize}")
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)


def decode_pair(members: dict[str, Any], *, bands: int, scale: int | None, nodata: float | None = None,
                max_nodata_fraction: float = 0.0) -> tuple[np.ndarray, np.ndarray, int]:
    """Decode and validate one sample's members; return ``(mr (C, h, w), hr (C, sh, sw), s)``.

    Nodata: -10000 and ``nodata`` (the index's declared value); a pair with more than
    ``max_nodata_fraction`` nodata pixels (0: any) is rejected.

    Raises:
        BadSample: a member is missing or unreadable, the shapes or band count are wrong, the tile is too
            small, or it holds NaN/inf or nodata pixels.
    """
    for suffix in ("mr.npy", "hr.npy"):
        if suffix not in members:
            have = sorted(k for k in members if not k.startswith("__"))
            raise BadSample("missing_member", f"no '{suffix}' member (has {have})")
    try:
        mr, hr = decode_npy(members["mr.npy"]), decode_npy(members["hr.npy"])
    except Exception as e:  # noqa: BLE001 - any decoding failure is a bad sample
        raise BadSample("unreadable_npy", f"cannot decode npy: {e}") from None
    if mr.ndim != 3 or hr.ndim != 3:
        raise BadSample("shape", f"pairs must be (C, H, W), got MR {mr.shape} and HR {hr.shape}")
    if mr.shape[0] != bands or hr.shape[0] != bands:
        raise BadSample("band_count", f"MR {mr.shape} / HR {hr.shape} but PairedTiles.bands = {bands}")
    h, w = mr.shape[1:]
    H, W = hr.shape[1:]
    if h < 1 or w < 1 or H % h or W % w or H // h != W // w:
        raise BadSample("shape", f"HR {hr.shape} is not an integer multiple of MR {mr.shape}")
    s = H // h
    if scale is not None and s != scale:
        raise BadSample("scale", f"HR/MR scale {s} (MR {mr.shape}, HR {hr.shape}) but PairedTiles.scale = {scale}")
    if min(h, w) < MIN_MR_SIDE:
        raise BadSample("too_small", f"MR tile {h}x{w} is smaller than {MIN_MR_SIDE} px")
    if max_nodata_fraction == 0.0:  # the common case: any nodata pixel (or NaN/inf) rejects the pair
        for name, a in (("MR", mr), ("HR", hr)):
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                raise BadSample("non_finite", f"{name} holds NaN or inf")
            if _may_hold(a, NODATA, nodata) and ((a == NODATA).any() or (nodata is not None and (a == nodata).any())):
                raise BadSample("nodata", f"{name} holds no-data pixels ({NODATA if nodata is None else nodata})")
        return mr, hr, s
    out = []
    for name, a in (("MR", mr), ("HR", hr)):
        if a.dtype.kind == "f" and np.isinf(a).any():
            raise BadSample("non_finite", f"{name} holds inf")
        frac = nodata_fraction(a, nodata)
        if frac > max_nodata_fraction:
            raise BadSample("nodata", f"{name} has {frac:.1%} no-data pixels, more than the index's "
                                      f"max_nodata_fraction {max_nodata_fraction}")
        out.append(fill_nodata(a, nodata) if frac > 0 else a)
    mr, hr = out
    return mr, hr, s


def _may_hold(a: np.ndarray, *values: float | None) -> bool:
    """False when no value of ``values`` lies within ``[a.min(), a.max()]`` (one or two fast reductions of
    integer tiles instead of a comparison array per value); True for float tiles and when one might be there."""
    if a.dtype.kind not in "iu" or a.size == 0:
        return True
    lo = a.min()
    above = [v for v in values if v is not None and not np.isnan(v) and v >= lo]
    return bool(above) and any(v <= a.max() for v in above)  # the max only when a value is not below the min


def fill_nodata(a: np.ndarray, nodata: float | None = None) -> np.ndarray:
    """A copy of ``a (C, H, W)`` with its nodata pixels set to the band's mean over the valid pixels."""
    bad = a == NODATA
    if nodata is not None and not np.isnan(nodata):
        bad |= a == nodata
    if a.dtype.kind == "f":
        bad |= np.isnan(a)
    out = a.copy()
    for c in range(a.shape[0]):
        valid = a[c][~bad[c]]
        out[c][bad[c]] = np.round(valid.mean()) if valid.size and a.dtype.kind in "iu" else (
            valid.mean() if valid.size else 0)
    return out


def sample_rng(seed: int, epoch: int, key: str) -> np.random.Generator:
    """The RNG of one sample's crop and jitter: a function of ``(seed, epoch, key)`` only."""
    return np.random.default_rng([seed & 0xFFFFFFFF, epoch, zlib.crc32(key.encode())])
