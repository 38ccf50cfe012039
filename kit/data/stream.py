"""The stream of one rank: DataLoader workers each play a logical reader; exact resume by position.

Each worker runs the webdataset pipeline of :mod:`crossscale_kit.data.reader` for its logical worker, skips the
samples consumed before a resume undecoded, decodes and validates the rest, draws each pair's crop and
jitter parameters from ``(seed, epoch, key)`` and batches the int16 tiles with them in shared memory
(reusable slabs, :mod:`crossscale_kit.data.slabs`).
Torch's DataLoader hands out batches round-robin from worker 0; :class:`PairStream` records the tag
``(logical worker, epoch, offset)`` of every batch the caller has taken, and on resume new worker ``p``
plays logical worker ``(p + n) % W`` (``n`` batches consumed) so the interleaving goes on exactly where
it stopped.
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from crossscale_kit.data.errors import DataError
from crossscale_kit.data.slabs import SlabLeases, SlabPool, busy_flags, unpack
from crossscale_kit.data.reader import BadSample, CountingHandler, decode_pair, sample_rng, worker_epoch
from crossscale_kit.data.transforms import PairedRandomResizedCrop, SensorNormalize

log = logging.getLogger(__name__)

MIN_SAMPLES_FOR_BAD_CHECK = 100
PREFETCH = 2  # batches each worker works ahead (DataLoader prefetch_factor)


class _PairIterable(torch.utils.data.IterableDataset):
    """Infinite batches of one rank; each DataLoader worker plays one logical worker."""

    def __init__(self, *, root: str | Path, shards: list[dict], seed: int, rank: int, world_size: int, num_workers: int,
                 rotation: int, positions: dict[int, tuple[int, int]], batch_size: int, shuffle_buffer: int,
                 resampled: bool, crop: PairedRandomResizedCrop, normalize: SensorNormalize | None, bands: int,
                 scale: int, false_hr: str | None, max_bad_fraction: float, nodata: float | None = None,
                 max_nodata_fraction: float = 0.0, planner=None, consumed: int = 0,
                 storage_options: dict | None = None, band_perm: list[int] | None = None) -> None:
        super().__init__()
        self.storage_options = storage_options
        self.band_perm = band_perm  # stored band of each fed band (PairedTiles.band_order), or None
        self.planner, self.consumed = planner, consumed
        self.busy: torch.Tensor | None = None  # (W, slots) flags of the workers' slabs, set by PairStream
        self.root, self.shards = root, shards
        self.names = [s["name"] for s in shards]
        self.expected = {s["name"]: s.get("num_samples") for s in shards}
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.W = max(1, num_workers)
        self.rotation, self.positions = rotation, positions
        self.batch_size, self.shuffle_buffer, self.resampled = batch_size, shuffle_buffer, resampled
        self.crop, self.normalize, self.bands, self.scale = crop, normalize, bands, scale
        self.false_hr, self.max_bad_fraction = false_hr, max_bad_fraction
        self.nodata, self.max_nodata_fraction = nodata, max_nodata_fraction

    def raw_epoch(self, epoch: int, worker: int, handler: CountingHandler | None = None):
        """The webdataset pipeline of raw samples of logical ``worker`` in ``epoch`` (see :mod:`crossscale_kit.data.reader`)."""
        return worker_epoch(self.root, self.names, expected=self.expected, seed=self.seed, epoch=epoch,
                            rank=self.rank, world_size=self.world_size, worker=worker, num_workers=self.W,
                            resampled=self.resampled, shuffle_buffer=self.shuffle_buffer,
                            handler=handler or CountingHandler(), storage_options=self.storage_options)

    def _decode(self, sample: dict, epoch: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Decode and validate one pair; draw its crop/jitter parameters from ``(seed, epoch, key)``."""
        mr, hr, s = decode_pair(sample, bands=self.bands, scale=self.scale, nodata=self.nodata,
                                max_nodata_fraction=self.max_nodata_fraction)
        if self.band_perm is not None:  # the explicit remap: the shards' band order -> the recipe's, by name
            mr, hr = mr[self.band_perm], hr[self.band_perm]
        params = self.crop.draw(mr.shape[1], mr.shape[2], s, sample_rng(self.seed, epoch, sample["__key__"]))
        return mr, hr, params

    def _tile_names(self) -> tuple[str, ...]:
        return ("mr", "hr") if self.false_hr is None else ("mr",)  # false HR is made from MR on the device

    @staticmethod
    def _buffers(specs: dict, pool: SlabPool | None) -> tuple[dict[str, torch.Tensor], tuple[dict, dict]]:
        """The batch's fields ``specs`` (name -> (shape, dtype)) as tensors, and what travels: ``(tensors, meta)``.

        In a worker (``pool``) every field is packed into one of the worker's reusable shared slabs
        (:mod:`crossscale_kit.data.slabs`): the tensors sent are ``{"_flat": uint8 buffer}`` (only the first time a slab
        is used; afterwards ``{}``) and ``meta`` holds the slot and the packing, which :class:`PairStream`
        unpacks. In the training process: the fields themselves.
        """
        if pool is not None:
            slot, flat, fields, new = pool.take(specs)
            out = unpack(flat, fields)
            return out, ({"_flat": flat} if new else {}, {"slab": slot, "fields": fields, "nbytes": flat.numel()})
        out = {name: torch.empty(shape, dtype=dtype) for name, (shape, dtype) in specs.items()}
        return out, (out, {"slab": -1, "fields": None})

    def _collate(self, pairs: list, pool: SlabPool | None) -> tuple[dict, dict]:
        """Stack tiles (zero-padded to the largest in the batch) and parameters: ``(tensors, meta)`` (see
        :meth:`_buffers`). For batches whose tiles differ in shape or dtype; :class:`_Filler` copies the
        others pair by pair as they come."""
        tiles = {name: [p[j] for p in pairs] for j, name in enumerate(self._tile_names())}
        params = {name: np.stack([p[2][name] for p in pairs]) for name in pairs[0][2]}
        specs = {name: ((len(ts), ts[0].shape[0], max(t.shape[1] for t in ts), max(t.shape[2] for t in ts)),
                        _tile_dtype(ts)) for name, ts in tiles.items()}
        specs.update({name: (a.shape, torch.from_numpy(a[:0]).dtype) for name, a in params.items()})
        out, packed = self._buffers(specs, pool)
        for name, ts in tiles.items():
            arr = out[name].numpy()
            if any(t.shape[1:] != arr.shape[2:] for t in ts):
                arr[...] = 0
            for i, t in enumerate(ts):
                arr[i, :, :t.shape[1], :t.shape[2]] = t
        for name, a in params.items():
            out[name].numpy()[...] = a
        return packed

    def batches(self, worker: int, epoch: int, offset: int, first: int = 0, stride: int = 1,
                pool: SlabPool | None = None) -> Iterator[dict]:
        """Infinite batches of logical ``worker`` starting at raw ``offset`` of ``epoch``.

        ``first`` and ``stride``: the positions of this worker's batches in the rank's sequence (counted
        across resumes): the planner, if any, draws the masks of batch ``first + k * stride``. ``pool``: the
        worker's slabs the batches are packed into (None: plain tensors, in the training process)."""
        handler = CountingHandler()  # errors of the tar stages; kept across epochs so none is lost or doubled
        filler = _Filler(self, pool)
        seen, bad_total, skipped = 0, Counter(), Counter()
        keys: list[str] = []

        def count(bad: BadSample) -> None:
            nonlocal seen
            seen += 1
            skipped[bad.reason] += 1
            bad_total[bad.reason] += 1
            log.warning("skipping sample %r of shard %s (%s): %s", bad.key, bad.shard, bad.reason, bad.detail)

        while True:
            raw = 0
            for r, sample in enumerate(self.raw_epoch(epoch, worker, handler)):
                raw += 1
                if r < offset:  # consumed before the resume: skipped as raw bytes, never decoded
                    handler.errors.clear()
                    continue
                for bad in handler.errors:
                    count(bad)
                handler.errors.clear()
                try:
                    pair = self._decode(sample, epoch)
                except Exception as e:  # noqa: BLE001 - a sample that cannot be used is skipped, counted, logged
                    bad = e if isinstance(e, BadSample) else BadSample("transform_error", f"{type(e).__name__}: {e}")
                    bad.key, bad.shard = sample["__key__"], sample["__url__"]
                    count(bad)
                    self._check_bad(seen, bad_total)
                    continue
                filler.add(pair)  # into the batch's buffers now, while the pair's bytes are in cache
                pair = None  # and its bytes free for the next sample's (see _Filler)
                seen += 1
                keys.append(sample["__key__"])
                if len(keys) == self.batch_size:
                    out, packing = filler.finish()
                    meta = {"worker": worker, "epoch": epoch, "offset": r + 1, "skipped": dict(skipped), **packing}
                    batch = {**out, "key": keys, "_meta": meta}
                    if self.planner is not None:
                        batch["plan"] = self.planner(first)
                    first += stride
                    yield batch
                    keys, skipped = [], Counter()
                    self._check_bad(seen, bad_total)
            if raw == 0:
                raise DataError(
                    f"logical worker {worker} of rank {self.rank} got no samples in epoch {epoch} from "
                    f"{self.root}; write more shards or set PairedTiles.resampled = True."
                )
            epoch, offset = epoch + 1, 0

    def _check_bad(self, seen: int, bad: Counter) -> None:
        n_bad = sum(bad.values())
        if seen >= MIN_SAMPLES_FOR_BAD_CHECK and n_bad > self.max_bad_fraction * seen:
            raise DataError(
                f"{n_bad} of {seen} samples read from {self.root} were bad ({dict(bad)}), more than "
                f"PairedTiles.max_bad_fraction = {self.max_bad_fraction}; see the logged shard and key of each, "
                f"then re-write those shards (python tools/make_shards.py ...) or raise PairedTiles.max_bad_fraction."
            )

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        phys = info.id if info is not None else 0
        worker = (phys + self.rotation) % self.W
        epoch, offset = self.positions.get(worker, (0, 0))
        pool = SlabPool(self.busy, worker) if info is not None else None  # a worker packs batches into slabs
        return self.batches(worker, epoch, offset, first=self.consumed + phys, stride=self.W, pool=pool)


class _Filler:
    """Builds a worker's batch pair by pair: each validated pair is copied into the batch's buffers at once,
    and the caller drops it.

    Copying while the pair's bytes are still in the CPU cache, and freeing them before the next sample is
    read, lets the allocator hand the same, cached memory to the next sample's tar members. Holding a whole
    batch of pairs until it is complete made every member land in cold memory: the tar expansion inside
    the worker loop took ~355 us a pair against ~260 us alone (``benchmarks/data_pipeline.py --stages``,
    ``raw`` against ``worker``, shows the difference it makes).

    A batch whose tiles are not all shaped and typed like its first (tiles of mixed sizes) falls back to
    keeping its pairs (those copied so far are read back) and is collated when complete
    (:meth:`_PairIterable._collate`, zero-padded).
    """

    def __init__(self, ds: _PairIterable, pool: SlabPool | None) -> None:
        self.ds, self.pool = ds, pool
        self.names = ds._tile_names()
        self._reset()

    def _reset(self) -> None:
        self.arrays: dict[str, np.ndarray] | None = None  # the batch's fields, while every pair fits them
        self.packed: tuple[dict, dict] | None = None
        self.dtypes: tuple = ()
        self.n = 0
        self.kept: list[tuple] | None = None  # the pairs of a mixed batch

    def add(self, pair: tuple) -> None:
        """Copy ``(mr, hr, params)`` of a validated pair into the batch."""
        if self.kept is not None:
            self.kept.append(pair)
            return
        tiles = pair[:len(self.names)]
        rows = [*zip(self.names, tiles), *pair[2].items()]
        if self.arrays is None:
            B = self.ds.batch_size
            specs = {name: ((B, *t.shape), _tile_dtype([t])) for name, t in zip(self.names, tiles)}
            specs.update({name: ((B, *a.shape), torch.from_numpy(a[:0]).dtype) for name, a in pair[2].items()})
            out, self.packed = self.ds._buffers(specs, self.pool)
            self.arrays = {name: t.numpy() for name, t in out.items()}
            self.dtypes = tuple(t.dtype for t in tiles)
        if (tuple(t.dtype for t in tiles) != self.dtypes or len(rows) != len(self.arrays)
                or any(a.shape != self.arrays[name].shape[1:] for name, a in rows)):
            self._keep()
            self.kept.append(pair)
            return
        for name, a in rows:
            self.arrays[name][self.n] = a
        self.n += 1

    def _keep(self) -> None:
        """Switch to keeping pairs: read back those copied so far, give the buffers back."""
        a, dtypes = self.arrays, self.dtypes
        self.kept = [(*(a[name][i].astype(dt) for name, dt in zip(self.names, dtypes)),
                      {name: a[name][i].copy() for name in a if name not in self.names}) for i in range(self.n)]
        if self.pool is not None:
            self.pool.release(self.packed[1]["slab"], "_flat" in self.packed[0])
        self.arrays = self.packed = None

    def finish(self) -> tuple[dict, dict]:
        """What travels of the batch of the pairs added since the last batch (see :meth:`_PairIterable._buffers`)."""
        packed = self.packed if self.kept is None else self.ds._collate(self.kept, self.pool)
        self._reset()
        return packed


def _tile_dtype(tiles: list[np.ndarray]) -> torch.dtype:
    """int16 for int16/int8/uint8 tiles (the shard format), int32 for other integers, float32 otherwise."""
    kinds = {(t.dtype.kind, t.dtype.itemsize) for t in tiles}
    if all(k in ("i", "u") and (n == 1 or (k, n) == ("i", 2)) for k, n in kinds):
        return torch.int16
    if all(k in ("i", "u") and n <= 4 for k, n in kinds) and ("u", 4) not in kinds:
        return torch.int32
    return torch.float32


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


# -- the stream the training loop consumes ------------------------------------------------------------

class PairStream:
    """Infinite iterable of raw batches: int16 tiles, their crop parameters and keys.

    A batch is ``{"mr" int16 (B, C, h, w), "hr" int16 (B, C, s*h, s*w), "box" int32 (B, 4), "flip" bool
    (B, 2), ["mr_offsets" int8 (B, 2, G, G), "hr_offsets" int8 (B, 2, Gh, Gh)], "key" list[str], ["plan"]}``
    (tiles of other dtypes travel as int32/float32; ``plan``: the masks a planner drew for the batch, see
    :mod:`crossscale_kit.train.masks`); :meth:`PairedTiles.to_device` turns it into model inputs.

    ``state_dict()`` is the exact position after the batches the caller has taken so far; pass it to
    :meth:`PairedTiles.stream` (same seed, rank, world size, workers) to continue with the next batch.
    """

    def __init__(self, dataset: _PairIterable, *, num_workers: int, state: dict) -> None:
        self._dataset = dataset
        self._num_workers = num_workers
        self._W = dataset.W
        self._state = state
        self._positions = {int(k): tuple(v) for k, v in state["positions"].items()}
        self._rotation0 = state["rotation"]
        self._consumed = 0
        self._stats: Counter = Counter(state.get("stats", {}))
        self._loader = None
        self._it = None
        self._gen = None
        self._leases = SlabLeases(None)  # made with the workers (__iter__)
        #: batches that came in a reused slab (True) and in a fresh segment or private memory (False)
        self.slab_use: Counter = Counter()

    def _batches(self) -> Iterator[dict]:
        while True:
            batch = next(self._it)
            meta = batch.pop("_meta")
            if meta["fields"] is not None:  # packed by a worker
                batch.update(self._leases.hand_out(batch.pop("_flat", None), meta["fields"], int(meta["worker"]),
                                                   int(meta["slab"]), int(meta["nbytes"])))
            self.slab_use[meta["slab"] >= 0] += 1
            self._positions[int(meta["worker"])] = (int(meta["epoch"]), int(meta["offset"]))
            self._stats.update(meta["skipped"])
            self._consumed += 1
            yield batch

    def __iter__(self) -> Iterator[dict]:
        if self._gen is None:
            kwargs = {}
            if self._num_workers > 0:
                pin = torch.cuda.is_available()  # pinned: the copy to the GPU does not block
                kwargs = dict(worker_init_fn=_worker_init, prefetch_factor=PREFETCH, persistent_workers=False,
                              pin_memory=pin)
                # reusable slabs: the prefetched batches, the one in use and a spare. Not with a pin thread,
                # which copies each batch and drops it before it could be leased (fresh segments then).
                self._dataset.busy = None if pin else busy_flags(self._num_workers, PREFETCH + 2)
                self._leases = SlabLeases(self._dataset.busy)
            self._loader = torch.utils.data.DataLoader(
                self._dataset, batch_size=None, num_workers=self._num_workers, **kwargs
            )
            self._it = iter(self._loader)
            self._gen = self._batches()
        return self._gen

    def state_dict(self) -> dict:
        """Position after the consumed batches (JSON-serialisable)."""
        st = dict(self._state)
        st["batches"] = self._state["batches"] + self._consumed
        st["rotation"] = (self._rotation0 + self._consumed) % self._W
        st["positions"] = {str(k): list(v) for k, v in sorted(self._positions.items())}
        st["stats"] = dict(self._stats)
        return st

    @property
    def stats(self) -> dict:
        """Skipped samples by reason among the consumed batches (cumulative over resumes)."""
        return dict(self._stats)

    def close(self) -> None:
        """Stop the workers."""
        it = self._it
        self._gen = self._it = self._loader = None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
