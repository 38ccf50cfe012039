"""Paired-tile reader: WebDataset shards -> int16 tiles + crop parameters -> model batches, exact resume.

Per process::

    shard list (seeded permutation per epoch) -> wds.slice by rank, then by logical worker w of W
    -> tar_samples (webdataset's expansion, counting handler) -> wds.shuffle (seeded) -> raw index r [crossscale_kit.data.reader]
    --(skip r < resume offset, undecoded)--> decode + validate + draw crop/jitter parameters
    --> int16 batch + parameters, tagged (logical worker, epoch, r + 1)                         [crossscale_kit.data.stream]
    --> PairedTiles.to_device: crop, resize, flip, jitter, normalise on the device in one op    [crossscale_kit.data.transforms]

Bad samples (unreadable npy, truncated member or shard, wrong shape / band count / ratio, non-finite
values, no-data pixels) are skipped, logged with shard and key, and counted per reason; the stream
raises :class:`DataError` when more than ``max_bad_fraction`` of a worker's samples are bad (after
100 samples). Nothing sleeps.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import gin
import numpy as np
import torch

from crossscale_kit.data import location
from crossscale_kit.data.errors import DataError
from crossscale_kit.data.reader import MIN_MR_SIDE, BadSample, CountingHandler, decode_npy, first_sample, shard_samples
from crossscale_kit.data.stream import PairStream, _PairIterable
from crossscale_kit.data.synthetic import SyntheticScenes, ensure_synthetic_cache
from crossscale_kit.data.transforms import FALSE_HR_MODES, PARAM_KEYS, S2_MEAN, PairedRandomResizedCrop, SensorNormalize
from crossscale_kit.io import BANDS

log = logging.getLogger(__name__)

STATE_FORMAT = "crossscale-stream/1"
_MAKE = "python tools/make_shards.py synthetic --out {root}"


def list_shards(root: str | Path, storage_options: dict | None = None) -> list[dict[str, Any]]:
    """Shards of a root as ``[{"name", "num_samples" (int or None)}]``, in a fixed order.

    With ``index.json`` the shards it lists, which must be exactly the folder's ``*.tar`` files (a set
    never mixes runs); without one, every ``*.tar`` sorted by name. A remote root (URL or ``pipe:``, see
    :mod:`crossscale_kit.data.location`) must have an ``index.json`` (the writer publishes it last, so a set without
    one is incomplete); its shards are those it lists.

    Raises:
        DataError: an unreadable index, a listed shard missing, or a shard the index does not list.
    """
    fix = "re-write the set: python tools/make_shards.py ... --out DIR --replace"
    if not location.is_local(root):
        url = location.join(root, "index.json")
        if not location.exists(url, storage_options):
            raise DataError(f"cannot read {url}: {location.missing(url, storage_options)}; the shard set there is "
                            f"missing or still being written "
                            f"(the writer publishes index.json last); check PairedTiles.root or write the set "
                            f"with python tools/make_shards.py ... --out {root}.")
        return _index_shards(location.read_bytes(url, storage_options), url, fix)
    root = Path(location.local_path(root))
    index = root / "index.json"
    tars = sorted(p.name for p in root.glob("*.tar"))
    if not index.is_file():
        return [{"name": n, "num_samples": None} for n in tars]
    shards = _index_shards(index.read_bytes(), index, fix)
    listed = {s["name"] for s in shards}
    missing = sorted(listed - set(tars))
    extra = sorted(set(tars) - listed)
    if missing or extra:
        raise DataError(
            f"{root} is not one shard set: "
            + (f"index.json lists {len(missing)} shard(s) that are missing ({', '.join(missing[:3])}); " if missing else "")
            + (f"{len(extra)} shard(s) are not in index.json ({', '.join(extra[:3])}), left by another run; " if extra else "")
            + f"{fix} (or move the foreign shards out)."
        )
    return shards


def _index_shards(data: bytes, where, fix: str) -> list[dict[str, Any]]:
    try:
        return [{"name": s["name"], "num_samples": s.get("num_samples"), "size": s.get("size")}
                for s in json.loads(data)["shards"]]
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{where} is unreadable ({type(e).__name__}: {e}); {fix}.") from None


def shard_set_identity(root: str | Path, shards: list[dict], storage_options: dict | None = None) -> dict:
    """What identifies a shard set, whatever its path: ``{"index_sha256", "num_shards"}``.

    The hash is of ``index.json``'s bytes (sets written by this kit list each shard's size and content
    sha256 there, so it names the content); a folder without an index hashes its shard names and sizes.
    """
    index = location.join(root, "index.json")
    if not location.is_local(root) or os.path.isfile(index):
        digest = hashlib.sha256(location.read_bytes(index, storage_options)).hexdigest()
    else:
        listing = "\n".join(f"{s['name']} {os.stat(location.join(root, s['name'])).st_size}" for s in shards)
        digest = hashlib.sha256(listing.encode()).hexdigest()
    return {"index_sha256": digest, "num_shards": len(shards)}


def count_members(path: str | Path) -> int:
    """Samples in one shard from a scan of its tar headers only (no payload is read): the distinct keys,
    grouped as webdataset groups them (``dir/key.ext`` -> ``dir/key``).

    Raises:
        tarfile.TarError, OSError, EOFError: the shard is not a whole tar file.
    """
    import tarfile

    keys, last = 0, None
    with tarfile.open(path, "r:") as tar:
        for m in tar:
            if not m.isfile():
                continue
            name = m.name
            base = name.rsplit("/", 1)
            key = (base[0] + "/" if len(base) == 2 else "") + base[-1].split(".", 1)[0]
            if key != last:
                keys, last = keys + 1, key
    return keys


def check_shard_files(root: str | Path, shards: list[dict], storage_options: dict | None = None) -> list[str]:
    """Problems of the shard files against the index, before any read: missing, empty, unreadable, or a
    size other than the one the index records (a truncated or replaced shard). One line per shard.

    A set whose index lists each shard's sample count but not its size (written by an older kit, or by
    hand) has its shards' tar headers scanned (:func:`count_members`, no payload read) and the counts
    compared: a shard that holds more or fewer samples than the index says is named here, not mid-run.

    A remote root is checked by the objects' sizes (one metadata request each; none for ``pipe:``)."""
    fix = "re-write the set (python tools/make_shards.py ... --out DIR --replace)"
    problems = []
    remote = not location.is_local(root)
    for s in shards:
        path = location.join(root, s["name"])
        if remote:
            try:
                size = location.size(path, storage_options)
            except DataError as e:
                problems.append(str(e))
                continue
            if size is None:
                continue
        else:
            try:
                size = os.stat(path).st_size
                with open(path, "rb") as f:
                    f.read(1)
            except OSError as e:
                problems.append(f"shard {path} cannot be read ({e.strerror or e}); check its permissions or {fix}.")
                continue
        want = s.get("size")
        if size == 0:
            problems.append(f"shard {path} is empty (0 bytes) but the index lists {s.get('num_samples', '?')} "
                            f"samples; {fix}.")
        elif want is not None and size != want:
            problems.append(f"shard {path} is {size} bytes but index.json records {want} (truncated or replaced "
                            f"after the set was written); {fix}.")
        elif size % 512:
            problems.append(f"shard {path} is {size} bytes, not a whole tar file (a multiple of 512): truncated; {fix}.")
        elif want is None and s.get("num_samples") is not None and not remote:
            try:
                got = count_members(path)
            except Exception as e:  # noqa: BLE001 - tarfile.ReadError, EOFError ...: not a whole tar
                problems.append(f"shard {path} is not a readable tar file ({type(e).__name__}: {e}); {fix}.")
                continue
            if got != s["num_samples"]:
                word = "overstates" if s["num_samples"] > got else "understates"
                problems.append(f"shard {path} holds {got} samples but index.json lists {s['num_samples']} (the "
                                f"index {word} it; truncated, appended to or mislisted); {fix}.")
    return problems


# -- the gin-facing config ------------------------------------------------------------------------------

@gin.register
class PairedTiles:
    """Paired MR/HR tiles from WebDataset shards (or the embedded synthetic set).

    Args:
        root: shard folder (``pairs-*.tar`` + ``index.json``, see :mod:`crossscale_kit.data.writer`): a local path,
            ``http(s)://``, ``s3://``, ``gs://`` URL or ``pipe:`` command (:mod:`crossscale_kit.data.location`); None uses
            the synthetic set ``synthetic``, written to the cache on first use.
        batch_size: pairs per batch (per rank).
        num_workers: DataLoader worker processes (0 = in the calling process).
        shuffle_buffer: size of the per-worker shuffle buffer of raw samples (<= 1 disables it).
        resampled: draw shards with replacement per worker (for fewer shards than ranks x workers).
        crop: the paired crop (default ``PairedRandomResizedCrop()``).
        normalize: the per-sensor normalisation (default ``SensorNormalize()``); pass False to disable.
        bands: band count every pair must have.
        scale: required HR/MR scale ``s``, or None to take it from the data.
        false_hr: None, or ``"bilinear"`` / ``"bicubic"``: replace HR by MR upsampled by ``s`` (control).
        synthetic: the synthetic set used when ``root`` is None (default ``SyntheticScenes()``).
        max_bad_fraction: fraction of bad samples (after 100) above which the stream stops.
        storage_options: fsspec options of a remote root (e.g. ``{"key": ..., "secret": ...,
            "client_kwargs": {"endpoint_url": ...}}`` for s3://); None: the AWS / GCS environment variables.
        band_order: the explicit remap binding. None (default): the shards must store the recipe's band order
            (``blue, green, red, nir``, the order of the encoder's inputs and of ``SensorNormalize``'s
            statistics); a set written in another order (``make_shards.py ... --bands nir red green blue``) is
            refused before step 1 with both orders named. A list of band names: the order the shards store,
            declared by the user (it must equal ``index.json``'s ``bands``); the reader then reorders every
            pair by name into the recipe's order, so each band meets its own statistics.
    """

    def __init__(
        self,
        root: str | None = None,
        *,
        batch_size: int = 128,
        num_workers: int = 4,
        shuffle_buffer: int = 1000,
        resampled: bool = False,
        crop: PairedRandomResizedCrop | None = None,
        normalize: SensorNormalize | None = None,
        bands: int = 4,
        scale: int | None = None,
        false_hr: str | None = None,
        synthetic: SyntheticScenes | None = None,
        max_bad_fraction: float = 0.01,
        storage_options: dict | None = None,
        band_order: list[str] | tuple[str, ...] | None = None,
    ) -> None:
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"PairedTiles.batch_size must be a positive integer, got {batch_size!r}.")
        if int(num_workers) != num_workers or num_workers < 0:
            raise ValueError(f"PairedTiles.num_workers must be an integer >= 0, got {num_workers!r}.")
        if bands < 1:
            raise ValueError(f"PairedTiles.bands must be >= 1, got {bands}.")
        if scale is not None and (int(scale) != scale or scale < 1):
            raise ValueError(f"PairedTiles.scale must be an integer >= 1 or None, got {scale!r}.")
        if false_hr not in FALSE_HR_MODES:
            raise ValueError(f"PairedTiles.false_hr must be one of {FALSE_HR_MODES}, got {false_hr!r}.")
        if not 0.0 <= max_bad_fraction <= 1.0:
            raise ValueError(f"PairedTiles.max_bad_fraction must be in [0, 1], got {max_bad_fraction}.")
        self.root = None if root is None else str(root)
        if self.root is not None:
            location.check_root(self.root)
        self.storage_options = dict(storage_options) if storage_options else None
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.shuffle_buffer, self.resampled = int(shuffle_buffer), bool(resampled)
        self.crop = crop if crop is not None else PairedRandomResizedCrop()
        if normalize is False:
            self.normalize = None
        else:
            self.normalize = normalize if normalize is not None else SensorNormalize()
        self.bands, self.scale, self.false_hr = int(bands), scale, false_hr
        self.synthetic = synthetic if synthetic is not None else SyntheticScenes()
        self.max_bad_fraction = float(max_bad_fraction)
        if band_order is not None:
            if isinstance(band_order, str) or not all(isinstance(b, str) for b in band_order):
                raise ValueError(f"PairedTiles.band_order must be a list of band names (the shards' order), e.g. "
                                 f"['nir', 'red', 'green', 'blue'], got {band_order!r}.")
            band_order = [b.lower() for b in band_order]
            want = list(BANDS[: self.bands])
            if sorted(band_order) != sorted(want) or len(band_order) != self.bands:
                raise ValueError(f"PairedTiles.band_order = {band_order} must hold each of the recipe's bands {want} "
                                 f"once (the shards' order of the same {self.bands} bands).")
        self.band_order = band_order
        self._perm: list[int] | None = None  # stored band index of each recipe band, when the reader reorders
        self._info: dict | None = None
        self._shards: list[dict] | None = None
        self._nodata: tuple[float | None, float] = (None, 0.0)

    # -- checks -----------------------------------------------------------------------------------
    def _root(self) -> Path | str:
        """The local folder (a Path) or the URL (a str) of the shard set."""
        if self.root is None:
            return ensure_synthetic_cache(self.synthetic)
        if location.is_local(self.root):
            return Path(location.local_path(self.root))
        return self.root.rstrip("/")

    def check(self) -> dict:
        """Validate the data before training; return what was found.

        Returns:
            ``{"root", "num_samples", "scale", "bands", "mr_shape", "hr_shape", "band_names", "mr_gsd",
            "hr_gsd"}`` (names and GSDs from ``index.json``; GSDs None without one).

        Raises:
            DataError: the root is missing or empty, or the first pair does not match the configuration
                (band count, integer scale, finite values, size); the message says what to change.
        """
        if self._info is not None:
            return self._info
        root = self._root()
        make = _MAKE.format(root=root)
        so = self.storage_options
        remote = isinstance(root, str)
        if remote:
            pass  # list_shards reads index.json, the one entry point of a remote set
        elif not root.exists():
            raise DataError(f"shard root {root} does not exist: run {make} (or make_shards.py sen2venus/geotiff) "
                            f"or set PairedTiles.root to a folder of pairs-*.tar shards.")
        elif not root.is_dir():
            raise DataError(f"shard root {root} is not a folder; set PairedTiles.root to the folder holding the shards.")
        shards = list_shards(root, so)
        if not shards:
            raise DataError(f"no shards (*.tar) under {root}: run {make} or set PairedTiles.root.")
        if self.normalize is not None and self.normalize.bands != self.bands:
            raise DataError(f"SensorNormalize has statistics for {self.normalize.bands} bands but PairedTiles.bands "
                            f"= {self.bands}; give per-band statistics for {self.bands} bands.")
        index: dict = {}
        index_path = location.join(root, "index.json")
        if remote or os.path.isfile(index_path):
            try:
                index = json.loads(location.read_bytes(index_path, so))
            except ValueError:
                pass
        problems = check_shard_files(root, shards, so)
        if problems:
            raise DataError(problems[0] if len(problems) == 1 else
                            f"{len(problems)} shard(s) of {root} do not match index.json:\n" + "\n".join(
                                f"  - {p}" for p in problems[:10]))
        stored = [str(b).lower() for b in index.get("bands", self.band_order or BANDS[: self.bands])]
        expected = list(BANDS[: self.bands])
        self._perm = None
        if self.band_order is not None and stored != self.band_order:
            raise DataError(f"{index_path} stores the bands in the order {stored} but PairedTiles.band_order = "
                            f"{self.band_order}; set PairedTiles.band_order = {stored} (the shards' order) or remove "
                            f"the binding.")
        if self.band_order is not None and stored != expected:
            self._perm = [stored.index(b) for b in expected]
            log.info("data: %s stores the bands as %s; the reader reorders them to the recipe's %s "
                     "(PairedTiles.band_order)", root, stored, expected)
        elif len(stored) == len(expected) and stored != expected:
            raise DataError(
                f"{index_path} stores the bands in the order {stored} but the recipe (the encoder's inputs and "
                f"SensorNormalize's statistics) is in the order {expected}: training would feed each band as "
                f"another. Re-write the shards in the recipe's order (make_shards.py ... --bands "
                f"{' '.join(expected)} --replace), or bind the remap: --gin_param \"PairedTiles.band_order = "
                f"{stored}\" (the reader then reorders every pair to {expected}).")
        index_scale = index.get("scale")
        declared = [v for v in index.get("nodata", []) if v != -10000]
        self._nodata = (declared[0] if declared else None, float(index.get("max_nodata_fraction", 0.0)))
        first = shards[0]["name"]
        first_url = location.join(root, first)
        members = first_sample(first_url, so)
        if members is None:
            raise DataError(f"shard {first_url} holds no samples; re-write it with {make}.")
        if isinstance(members, BadSample):
            raise DataError(f"{members.detail}; re-write the shard (python tools/make_shards.py ...).")
        where = f"first pair {members['__key__']!r} of {first_url}"
        try:
            mr = decode_npy(members["mr.npy"])
            hr = decode_npy(members["hr.npy"])
        except KeyError as e:
            raise DataError(f"{where} has no {e.args[0]!r} member (members {sorted(members)}); shards must hold "
                            f"<key>.mr.npy and <key>.hr.npy (write them with tools/make_shards.py).") from None
        except Exception as e:  # noqa: BLE001
            raise DataError(f"{where}: cannot decode npy ({e}); re-write the shard.") from None
        if mr.ndim != 3 or hr.ndim != 3:
            raise DataError(f"{where}: pairs must be (C, H, W) arrays, got MR {mr.shape} and HR {hr.shape}.")
        if mr.shape[0] != self.bands or hr.shape[0] != self.bands:
            raise DataError(
                f"{where} has MR {mr.shape} / HR {hr.shape}: {mr.shape[0]} bands but PairedTiles.bands = {self.bands} "
                f"{BANDS[:self.bands]}; set PairedTiles.bands = {mr.shape[0]} (and the encoder's in_chans and "
                f"SensorNormalize statistics) or re-write the shards with {self.bands} bands."
            )
        h, w = mr.shape[1:]
        H, W = hr.shape[1:]
        if H % h or W % w or H // h != W // w:
            raise DataError(
                f"{where}: HR {hr.shape} is not an exact integer multiple s of MR {mr.shape} (ratio {H / h:g} x "
                f"{W / w:g}); crop both to the same ground footprint with HR side = s x MR side and re-write the shards."
            )
        s = H // h
        if self.scale is not None and s != self.scale:
            raise DataError(f"{where}: HR/MR scale is {s} (MR {mr.shape}, HR {hr.shape}) but PairedTiles.scale = "
                            f"{self.scale}; set PairedTiles.scale = {s} (or None) or use shards of scale {self.scale}.")
        if index_scale is not None and index_scale != s:
            raise DataError(f"{root}/index.json says scale {index_scale} but {where} has scale {s}; re-write the shards.")
        for name, a in (("MR", mr), ("HR", hr)):
            if a.dtype.kind not in "iuf":
                raise DataError(f"{where}: {name} has dtype {a.dtype}; store int16 reflectance x 10000.")
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                raise DataError(f"{where}: {name} holds NaN or inf; replace invalid pixels (or drop the tile) and "
                                f"re-write the shards.")
        if min(h, w) < MIN_MR_SIDE:
            raise DataError(f"{where}: MR tile {h}x{w} is smaller than {MIN_MR_SIDE} px; write larger tiles.")
        if min(h, w) * 4 < self.crop.size:
            log.warning("MR tiles are %dx%d px but the crop outputs %d px: more than 4x upsampling", h, w, self.crop.size)
        num = sum(x["num_samples"] for x in shards) if all(x["num_samples"] is not None for x in shards) else None
        if num is None:
            num = self._count(root, shards, so)
        if isinstance(index.get("num_samples"), int) and index["num_samples"] != num:
            raise DataError(f"{index_path} says num_samples = {index['num_samples']} but its shards hold {num} "
                            f"(the index {'overstates' if index['num_samples'] > num else 'understates'} the set); "
                            f"re-write the set (python tools/make_shards.py ... --out DIR --replace).")
        self._shards = shards
        self._info = {
            "root": str(root),
            "num_samples": num,
            "scale": int(s),
            "bands": int(self.bands),
            "mr_shape": tuple(int(x) for x in mr.shape),
            "hr_shape": tuple(int(x) for x in hr.shape),
            # what the model is fed (the recipe's order after a remap); the identity keeps the stored order
            "band_names": expected if self._perm is not None else stored,
            "identity": {**shard_set_identity(root, shards, so), "bands": stored,
                         **({"band_order_fed": expected} if self._perm is not None else {})},
            "mr_gsd": index.get("mr_gsd"),
            "hr_gsd": index.get("hr_gsd"),
        }
        return self._info

    @staticmethod
    def _count(root: Path | str, shards: list[dict], storage_options: dict | None = None) -> int:
        """Count samples by reading the shards when there is no index."""
        handler = CountingHandler()
        total = sum(1 for s in shards for _ in shard_samples(location.join(root, s["name"]), handler,
                                                               storage_options))
        for bad in handler.errors:
            log.warning("shard %s: %s", bad.shard, bad.detail)
        return total

    @property
    def num_samples(self) -> int:
        """Number of pairs (from ``index.json``, or counted)."""
        return self.check()["num_samples"]

    # -- the stream -------------------------------------------------------------------------------
    def stream(self, *, seed: int, rank: int = 0, world_size: int = 1, state: dict | None = None,
               planner=None) -> PairStream:
        """An infinite stream of this rank's batches.

        Args:
            seed: seed of the shard order, shuffle buffers and per-sample crops (same on every rank).
            rank, world_size: this process's place among the data-parallel ranks.
            state: a ``PairStream.state_dict()`` to continue from.
            planner: called as ``planner(n)`` in the worker that makes the rank's ``n``-th batch (counted
                across resumes); its result travels with the batch as ``"plan"`` (the train loop's
                :class:`~crossscale_kit.train.masks.MaskPlanner` draws the step's patch masks there).

        Raises:
            DataError: fewer shards than readers without ``resampled``, or a state from another setup.
        """
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, world_size {world_size}.")
        info = self.check()
        shards = self._shards
        W = max(1, self.num_workers)
        readers = world_size * W
        if not self.resampled and len(shards) < readers:
            raise DataError(
                f"{info['root']} has {len(shards)} shards but world_size x num_workers = {world_size} x {W} = {readers} "
                f"readers need one each; write smaller shards (make_shards.py --shard-size), lower "
                f"PairedTiles.num_workers, or set PairedTiles.resampled = True."
            )
        fresh = {
            "format": STATE_FORMAT, "seed": int(seed), "rank": int(rank), "world_size": int(world_size),
            "num_workers": W, "batch_size": self.batch_size, "num_shards": len(shards),
            "resampled": self.resampled, "batches": 0, "rotation": 0, "positions": {}, "stats": {},
        }
        if state is not None:
            for k in ("format", "seed", "rank", "world_size", "num_workers", "batch_size", "num_shards", "resampled"):
                if state.get(k) != fresh[k]:
                    raise DataError(
                        f"cannot resume the data stream: the saved state has {k} = {state.get(k)!r} but this run has "
                        f"{fresh[k]!r}; resume with the same {k} (or start the data stream afresh without state)."
                    )
            fresh.update({k: state[k] for k in ("batches", "rotation", "positions", "stats")})
        dataset = _PairIterable(
            root=info["root"], shards=shards, storage_options=self.storage_options, seed=int(seed), rank=rank, world_size=world_size,
            num_workers=self.num_workers, rotation=int(fresh["rotation"]),
            positions={int(k): tuple(v) for k, v in fresh["positions"].items()}, batch_size=self.batch_size,
            shuffle_buffer=self.shuffle_buffer, resampled=self.resampled, crop=self.crop, normalize=self.normalize,
            bands=self.bands, scale=info["scale"], false_hr=self.false_hr, max_bad_fraction=self.max_bad_fraction,
            nodata=self._nodata[0], max_nodata_fraction=self._nodata[1], planner=planner,
            consumed=int(fresh["batches"]), band_perm=self._perm,
        )
        return PairStream(dataset, num_workers=self.num_workers, state=fresh)

    # -- the device side ---------------------------------------------------------------------------
    def to_device(self, raw: dict, device: torch.device | str, views: tuple[str, ...] = ("mr", "hr")) -> dict:
        """Finish a batch of the stream on ``device``: crop, resize, flip, jitter, normalise in one batched op.

        Args:
            raw: a batch of :meth:`stream`: ``mr`` int16 ``(B, C, h, w)``, ``hr`` int16 ``(B, C, s*h, s*w)``
                (absent with ``false_hr``), the crop parameters (``box``, ``flip``, jitter offsets) and ``key``.
            device: the training device. On CUDA the copies are non-blocking from pinned memory; the only
                host values used (the supersampling factors) are read from the CPU parameters, never the device.
            views: the images to finish (the training loop passes its framework's ``views``): an MR-only run
                skips the HR crop, its costliest part. A view's pixels are the same whatever else is finished.

        Returns:
            ``{"mr": float32 (B, C, S', S'), "hr": float32 (B, C, hrS', hrS'), "key": list[str]}`` with
            ``(S', hrS') = crop.output_sizes(s)`` (only the ``views`` asked for); deterministic on CPU.
        """
        device = torch.device(device)
        cuda = device.type == "cuda"

        def move(t: torch.Tensor) -> torch.Tensor:
            if cuda and not t.is_pinned():
                t = t.pin_memory()
            return t.to(device, non_blocking=cuda)

        scale = self.check()["scale"]
        k = self.crop.supersampling(raw["box"], scale)
        params = {name: move(raw[name]) for name in PARAM_KEYS if name in raw}
        hr = move(raw["hr"]) if "hr" in raw and "hr" in views else None
        mr, hr = self.crop.apply(move(raw["mr"]), hr, params, scale, self.normalize, self.false_hr, k, views=views)
        out = {"mr": mr, "hr": hr, "key": raw["key"]}
        return {name: v for name, v in out.items() if v is not None}

    def __repr__(self) -> str:
        return (f"PairedTiles(root={self.root!r}, batch_size={self.batch_size}, num_workers={self.num_workers}, "
                f"crop={self.crop!r}, bands={self.bands}, scale={self.scale}, false_hr={self.false_hr!r})")
