"""``make_shards.py sen2venus ROOT --out DIR``: Sen2Venus site folders (v1) or site zips (v2) -> pair shards.

v1 (Zenodo 6514159, one 7z per site, extracted): ``ROOT/<site>/index.csv`` is TAB-separated, one row per
same-day acquisition; the columns ``tensor_10m_b2b3b4b8`` and ``tensor_05m_b2b3b4b8`` hold the *file
names* (relative to the site folder) of ``.pt`` stacks ``[N, 4, 128, 128]`` (10 m) and ``[N, 4, 256, 256]``
(5 m), band order B2 B3 B4 B8, reflectance x 10000; ``nb_patches`` holds N. Names on disk can differ from
the column names, so only the cell values are used.

v2 (assumed layout, not verified against a download; every name is configurable):
``ROOT/<site>.zip`` holds one GeoTIFF per patch and resolution, members ``<anything>/<id>_10m.tif`` and
``<anything>/<id>_05m.tif`` (``--v2-mr-pattern`` / ``--v2-hr-pattern``, ``{id}`` marks the patch id),
4 bands B2 B3 B4 B8 (or band descriptions naming them), nodata -10000. Members are read through
rasterio's ``/vsizip/`` driver, never extracted.

A pair is skipped and counted when a file is missing or unreadable, the shapes are not an s = 2 pair, a
value is not finite, or more than ``--max-nodata`` of its pixels are nodata. Shards are written through
:class:`kit.data.writer.PairShardWriter`; shards of an earlier run in the same folder that the new index
does not list are removed, so re-running into one folder is safe.
"""
from __future__ import annotations

import argparse
import csv
import re
import warnings
import zipfile
from collections import Counter, OrderedDict
from pathlib import Path

import numpy as np

from kit.data.writer import PairShardWriter
from kit.io import BANDS, write_json_atomic

V1_BAND_ORDER = ("blue", "green", "red", "nir")  # B2 B3 B4 B8
BAND_ALIASES = {"b2": "blue", "b02": "blue", "b3": "green", "b03": "green", "b4": "red", "b04": "red",
                "b8": "nir", "b08": "nir", "blue": "blue", "green": "green", "red": "red", "nir": "nir"}


# ---------------------------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", help="folder of extracted v1 site folders (<site>/index.csv) and/or v2 <site>.zip files")
    p.add_argument("--out", required=True, help="output shard folder")
    p.add_argument("--release", choices=("auto", "v1", "v2"), default="auto")
    p.add_argument("--sites", nargs="+", default=None, help="sites to include (default all)")
    p.add_argument("--holdout-sites", nargs="+", default=[], help="sites to leave out (e.g. for validation)")
    p.add_argument("--shard-size", type=int, default=256)
    p.add_argument("--no-shuffle", dest="shuffle", action="store_false", help="keep site/file order")
    p.add_argument("--seed", type=int, default=0, help="seed of the cross-site shuffle")
    p.add_argument("--bands", nargs="+", default=list(BANDS), help="kit band names (or B2 B3 B4 B8) to keep, in order")
    p.add_argument("--max-nodata", type=float, default=0.0, help="largest nodata fraction of a kept pair")
    p.add_argument("--nodata", type=float, default=-10000.0, help="nodata value (v2 files' own nodata wins)")
    p.add_argument("--limit", type=int, default=None, help="stop after this many written pairs")
    p.add_argument("--prefix", default="pairs", help="shard file-name prefix")
    p.add_argument("--v1-mr-column", default="tensor_10m_b2b3b4b8")
    p.add_argument("--v1-hr-column", default="tensor_05m_b2b3b4b8")
    p.add_argument("--v2-mr-pattern", default="{id}_10m.tif", help="MR member base name, {id} = patch id")
    p.add_argument("--v2-hr-pattern", default="{id}_05m.tif", help="HR member base name, {id} = patch id")


def run(args: argparse.Namespace) -> dict:
    """Write the shards; return ``{"source", "out", "written", "skipped": {reason: n}, ...}``."""
    root = Path(args.root)
    if not root.is_dir():
        raise FileNotFoundError(f"Sen2Venus root {root} does not exist; pass the folder that holds the extracted sites.")
    bands = resolve_bands(args.bands)
    sites = discover_sites(root, args.release)
    sites = select_sites(sites, args.sites, args.holdout_sites)
    refs: list[tuple] = []
    skipped: Counter = Counter()
    for name, (kind, path) in sites.items():
        if kind == "v1":
            refs += v1_refs(name, path, args.v1_mr_column, args.v1_hr_column)
        else:
            refs += v2_refs(name, path, args.v2_mr_pattern, args.v2_hr_pattern, skipped)
    if args.shuffle:
        order = np.random.default_rng(args.seed).permutation(len(refs))
        refs = [refs[i] for i in order]
    reader = _Reader(bands, args.nodata)
    per_site: Counter = Counter()
    out = Path(args.out)
    with PairShardWriter(out, args.shard_size, bands=bands, mr_gsd=10.0, hr_gsd=5.0, prefix=args.prefix) as w:
        for ref in refs:
            if args.limit is not None and w.num_samples >= args.limit:
                break
            try:
                mr, hr, nod_mr, nod_hr = reader.read(ref)
            except _Skip as s:
                skipped[s.reason] += 1
                continue
            reason = check_pair(mr, hr, nod_mr, nod_hr, args.max_nodata)
            if reason:
                skipped[reason] += 1
                continue
            key, meta = ref_key(ref)
            w.write(key, to_int16(mr), to_int16(hr), meta)
            per_site[ref[1]] += 1
        written = w.num_samples
    index = _load_index(out)
    remove_stale_shards(out, args.prefix, index)
    summary = {
        "source": "sen2venus",
        "out": str(out),
        "written": written,
        "skipped": dict(sorted(skipped.items())),
        "sites": {s: per_site.get(s, 0) for s in sites},
        "shards": len(index["shards"]),
        "errors": reader.errors[:50],
    }
    write_json_atomic(out / "summary-sen2venus.json", summary)
    return summary


# ------------------------------------------------------------------------------------- discovery
def resolve_bands(names) -> tuple[str, ...]:
    """Kit band names from kit or Sentinel-2 names (``B2`` -> ``blue``); error on an unknown band."""
    out = []
    for n in names:
        k = BAND_ALIASES.get(str(n).lower())
        if k is None:
            raise ValueError(f"band {n!r} is not in Sen2Venus' 10 m/5 m stacks; choose from blue green red nir (B2 B3 B4 B8).")
        out.append(k)
    return tuple(out)


def discover_sites(root: Path, release: str = "auto") -> "OrderedDict[str, tuple[str, Path]]":
    """``{site: ("v1", folder) | ("v2", zip)}``; ``root`` itself may be a single v1 site folder."""
    sites: OrderedDict = OrderedDict()
    if release in ("auto", "v1"):
        if (root / "index.csv").is_file():
            sites[root.name] = ("v1", root)
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            if (d / "index.csv").is_file():
                sites[d.name] = ("v1", d)
    if release in ("auto", "v2"):
        for z in sorted(root.glob("*.zip")):
            if z.stem in sites:
                raise ValueError(f"site {z.stem} exists both as a v1 folder and as {z.name}; pass --release v1 or v2.")
            sites[z.stem] = ("v2", z)
    if not sites:
        sevenz = sorted(p.name for p in root.glob("*.7z"))
        hint = f" Found {sevenz[:3]}...: extract them first (7z x <site>.7z)." if sevenz else ""
        raise FileNotFoundError(
            f"no Sen2Venus site under {root}: expected <site>/index.csv (v1) or <site>.zip (v2).{hint}"
        )
    return sites


def select_sites(sites, include, holdout) -> "OrderedDict[str, tuple[str, Path]]":
    """Keep ``include`` (all if None) minus ``holdout``; unknown names are an error listing the sites."""
    for n in list(include or []) + list(holdout or []):
        if n not in sites:
            raise ValueError(f"site {n!r} is not under the root; available sites: {sorted(sites)}.")
    keep = OrderedDict((k, v) for k, v in sites.items() if (include is None or k in include) and k not in set(holdout or []))
    if not keep:
        raise ValueError(f"no site left after --sites {include} and --holdout-sites {holdout}.")
    return keep


def v1_refs(site: str, folder: Path, mr_col: str, hr_col: str) -> list[tuple]:
    """One reference ``("v1", site, mr_path, hr_path, patch, stem)`` per patch listed in ``index.csv``."""
    index = folder / "index.csv"
    with open(index, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        return []
    cols = set(rows[0])
    missing = [c for c in (mr_col, hr_col, "nb_patches") if c not in cols]
    if missing:
        raise ValueError(
            f"{index} lacks columns {missing} (has {sorted(cols)}); is it TAB-separated? "
            "Set --v1-mr-column/--v1-hr-column to the column names of this release."
        )
    refs = []
    for r in rows:
        try:
            n = int(float(r["nb_patches"]))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{index}: nb_patches {r['nb_patches']!r} is not a number.") from e
        mr, hr = folder / r[mr_col].strip(), folder / r[hr_col].strip()
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(r[mr_col].strip()).stem)
        refs += [("v1", site, mr, hr, j, stem) for j in range(n)]
    return refs


def _pattern_regex(pattern: str) -> re.Pattern:
    if "{id}" not in pattern:
        raise ValueError(f"member pattern {pattern!r} must contain {{id}}, e.g. '{{id}}_10m.tif'.")
    a, b = pattern.split("{id}", 1)
    return re.compile(re.escape(a) + r"(?P<id>.+?)" + re.escape(b) + "$")


def v2_refs(site: str, zpath: Path, mr_pattern: str, hr_pattern: str, skipped: Counter) -> list[tuple]:
    """One reference ``("v2", site, zip, mr_member, hr_member, id)`` per MR member of a site zip."""
    try:
        with zipfile.ZipFile(zpath) as z:
            members = set(z.namelist())
    except zipfile.BadZipFile as e:
        raise ValueError(f"{zpath} is not a readable zip ({e}); re-download it or leave the site out with --holdout-sites {site}.") from e
    rx = _pattern_regex(mr_pattern)
    refs = []
    for m in sorted(members):
        head, _, base = m.rpartition("/")
        hit = rx.match(base)
        if not hit:
            continue
        pid = hit.group("id")
        hr = (head + "/" if head else "") + hr_pattern.replace("{id}", pid)
        if hr not in members:
            skipped["missing_hr"] += 1
            continue
        refs.append(("v2", site, zpath, m, hr, re.sub(r"[^A-Za-z0-9_-]+", "_", pid)))
    if not refs:
        warnings.warn(f"{zpath}: no member matches --v2-mr-pattern {mr_pattern!r}; the site adds nothing.")
    return refs


def ref_key(ref: tuple) -> tuple[str, dict]:
    """Shard key (no dots) and JSON meta of a reference."""
    if ref[0] == "v1":
        _, site, mr, hr, j, stem = ref
        return f"s2v-{site}-{stem}-{j:05d}", {"source": "sen2venus-v1", "site": site, "mr_file": mr.name,
                                              "hr_file": hr.name, "patch": j}
    _, site, z, mr, hr, pid = ref
    return f"s2v-{site}-{pid}", {"source": "sen2venus-v2", "site": site, "zip": z.name, "mr_member": mr, "hr_member": hr}


# --------------------------------------------------------------------------------------- reading
class _Skip(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Reader:
    """Reads referenced pairs as ``(C, h, w)`` float arrays in the selected band order, plus nodata values."""

    def __init__(self, bands: tuple[str, ...], nodata: float, cache_size: int = 8) -> None:
        self.sel = [V1_BAND_ORDER.index(b) for b in bands]
        self.bands = bands
        self.nodata = nodata
        self.cache: OrderedDict = OrderedDict()
        self.cache_size = cache_size
        self.errors: list[str] = []

    def _stack(self, path: Path):
        if path in self.cache:
            self.cache.move_to_end(path)
            return self.cache[path]
        import torch

        try:
            if not path.is_file():
                raise _Skip("missing_file")
            try:
                t = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:
                t = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(t, torch.Tensor) or t.dim() != 4:
                raise _Skip("bad_shape")
            value = t
        except _Skip as s:
            value = s
            self.errors.append(f"{path}: {s.reason}")
        except Exception as e:  # noqa: BLE001 - any unpickling failure means the file is unreadable
            value = _Skip("unreadable")
            self.errors.append(f"{path}: unreadable ({type(e).__name__}: {str(e)[:120]})")
        self.cache[path] = value
        if len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return value

    def _tif(self, zpath: Path, member: str) -> tuple[np.ndarray, float]:
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(f"/vsizip/{zpath.resolve()}/{member}") as ds:
                    idx = self._tif_bands(ds)
                    arr = ds.read(idx).astype(np.float32)
                    nod = ds.nodata if ds.nodata is not None else self.nodata
            return arr, nod
        except RasterioIOError as e:
            self.errors.append(f"{zpath}!{member}: unreadable ({str(e)[:120]})")
            raise _Skip("unreadable") from e

    def _tif_bands(self, ds) -> list[int]:
        desc = [BAND_ALIASES.get((d or "").strip().lower()) for d in ds.descriptions]
        if all(b in desc for b in self.bands):
            return [desc.index(b) + 1 for b in self.bands]
        if ds.count == 4:
            return [i + 1 for i in self.sel]
        raise _Skip("missing_band")

    def read(self, ref: tuple) -> tuple[np.ndarray, np.ndarray, float, float]:
        if ref[0] == "v1":
            _, _, mr_p, hr_p, j, _ = ref
            mr_t, hr_t = self._stack(mr_p), self._stack(hr_p)
            for t in (mr_t, hr_t):
                if isinstance(t, _Skip):
                    raise t
            if j >= mr_t.shape[0] or j >= hr_t.shape[0]:
                raise _Skip("missing_patch")
            if mr_t.shape[1] != 4 or hr_t.shape[1] != 4:
                raise _Skip("bad_shape")
            mr = mr_t[j, self.sel].numpy().astype(np.float32)
            hr = hr_t[j, self.sel].numpy().astype(np.float32)
            return mr, hr, self.nodata, self.nodata
        _, _, z, mr_m, hr_m, _ = ref
        mr, nod_mr = self._tif(z, mr_m)
        hr, nod_hr = self._tif(z, hr_m)
        return mr, hr, nod_mr, nod_hr


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


def _load_index(out: Path) -> dict:
    import json

    return json.loads((out / "index.json").read_text())


def remove_stale_shards(out: Path, prefix: str, index: dict) -> list[str]:
    """Delete ``<prefix>-*.tar`` shards (and leftover temporaries) the new ``index.json`` does not list."""
    keep = {s["name"] for s in index["shards"]}
    removed = []
    for p in list(out.glob(f"{prefix}-*.tar")) + list(out.glob(f".{prefix}-*.tar.tmp*")):
        if p.name not in keep:
            p.unlink()
            removed.append(p.name)
    return removed

