"""``make_shards.py sen2venus ROOT --out DIR``: Sen2Venus site folders (v1) or site zips (v2) -> pair shards.

v1 (Zenodo 6514159, one 7z per site, extracted): ``ROOT/<site>/index.csv`` is TAB-separated, one row per
same-day acquisition; the columns ``tensor_10m_b2b3b4b8`` and ``tensor_05m_b2b3b4b8`` hold the *file
names* (relative to the site folder) of ``.pt`` stacks ``[N, 4, 128, 128]`` (10 m) and ``[N, 4, 256, 256]``
(5 m), band order B2 B3 B4 B8, reflectance x 10000; ``nb_patches`` holds N. Names on disk can differ from
the column names, so only the cell values are used.

v2 (release 2.0.0): ``ROOT/<SITE>.zip`` holds ``<SITE>/index.csv`` and one inner zip per acquisition, band
group and resolution (``<SITE>/<SITE>_<date>_<tile>_b2b3b4b8_10m.zip`` ...). index.csv is TAB-separated,
the patch id first, then ``b2b3b4b8_10m``, ``b2b3b4b8_05m``, ``b5b6b7b8a_20m``, ``b5b6b7b8a_05m``,
``b11b12_20m``; each cell is ``<inner>.zip/<member>.tif`` relative to the site folder, one 4-band int16
GeoTIFF patch (B2 B3 B4 B8 for ``b2b3b4b8``), nodata -10000. A pair is one index row: its 10 m and 5 m
cells, which sit in different inner zips. The members are read in place through GDAL's nested
``/vsizip/{/vsizip/SITE.zip/SITE/inner.zip}/member.tif`` paths: nothing is extracted or copied. An outer
zip that was extracted (``ROOT/<SITE>/index.csv`` beside the inner zips) is read the same way.

A pair is skipped and counted when a file is missing or unreadable, the shapes are not an s = 2 pair, a
value is not finite, or (counted by :class:`crossscale_kit.data.writer.PairShardWriter`) more than ``max_nodata`` of
its pixels are nodata (-10000, or the file's own nodata, stored as -10000); the reader fills the nodata
pixels of the pairs below that limit. The writer builds the whole set and puts it in place at the end.
"""
from __future__ import annotations

import csv
import io
import re
import warnings
import zipfile
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crossscale_kit.data.parts import part_range
from crossscale_kit.data.sources.pairs import check_pair, to_int16
from crossscale_kit.data import location
from crossscale_kit.data.writer import PairShardWriter
from crossscale_kit.io import BANDS, BandStatistics, add_to_index

V1_BAND_ORDER = ("blue", "green", "red", "nir")  # B2 B3 B4 B8
BAND_ALIASES = {"b2": "blue", "b02": "blue", "b3": "green", "b03": "green", "b4": "red", "b04": "red",
                "b8": "nir", "b08": "nir", "blue": "blue", "green": "green", "red": "red", "nir": "nir"}
V2_COLUMNS = ("b2b3b4b8_10m", "b2b3b4b8_05m")


@dataclass
class Sen2VenusOptions:
    """What ``make_shards.py sen2venus`` writes (see the module docstring for the layouts).

    Args:
        root: folder of extracted v1 site folders and/or v2 ``<SITE>.zip`` files (or one site folder).
        out: output shard folder.
        release: ``auto``, ``v1`` or ``v2``.
        sites, holdout_sites: sites to include (None: all) and to leave out.
        shard_size: pairs per shard. shuffle, seed: cross-site shuffle of the pairs.
        bands: kit band names (or B2 B3 B4 B8) to keep, in order.
        max_nodata: largest nodata fraction of a kept pair. nodata: nodata value (a v2 file's own wins).
        limit: stop after this many written pairs. prefix: shard file-name prefix.
        part: ``(i, N)``: write only the i-th of N contiguous blocks of the (shuffled) index rows (None: all).
        v1_mr_column, v1_hr_column: v1 index.csv columns. v2_mr_column, v2_hr_column: v2 index.csv columns.
    """

    root: Path
    out: Path
    release: str = "auto"
    sites: list[str] | None = None
    holdout_sites: list[str] = field(default_factory=list)
    shard_size: int = 256
    shuffle: bool = True
    seed: int = 0
    bands: tuple[str, ...] = BANDS
    max_nodata: float = 0.0
    nodata: float = -10000.0
    limit: int | None = None
    prefix: str = "pairs"
    v1_mr_column: str = "tensor_10m_b2b3b4b8"
    v1_hr_column: str = "tensor_05m_b2b3b4b8"
    v2_mr_column: str = V2_COLUMNS[0]
    v2_hr_column: str = V2_COLUMNS[1]
    part: tuple[int, int] | None = None


Options = Sen2VenusOptions  # the name tools/make_shards.py looks for


def run(opts: Sen2VenusOptions) -> dict:
    """Write the shards; return ``{"source", "out", "written", "skipped": {reason: n}, ...}``."""
    root = Path(opts.root)
    if not root.is_dir():
        raise FileNotFoundError(f"Sen2Venus root {root} does not exist; pass the folder that holds the sites.")
    bands = resolve_bands(opts.bands)
    sites = select_sites(discover_sites(root, opts.release), opts.sites, opts.holdout_sites)
    refs: list[tuple] = []
    for name, (kind, path) in sites.items():
        if kind == "v1":
            refs += v1_refs(name, path, opts.v1_mr_column, opts.v1_hr_column)
        else:
            refs += v2_refs(name, path, opts.v2_mr_column, opts.v2_hr_column)
    if opts.shuffle:
        order = np.random.default_rng(opts.seed).permutation(len(refs))
        refs = [refs[i] for i in order]
    if opts.part is not None:
        if opts.limit is not None:
            raise ValueError(f"--limit cannot be split into parts (--part {opts.part[0]}/{opts.part[1]}); drop --limit, or "
                             "pick the rows with --sites/--holdout-sites.")
        rows = part_range(len(refs), opts.part, "index rows")
        refs = refs[rows.start:rows.stop]
    reader = _Reader(bands, opts.nodata)
    skipped: Counter = Counter()
    per_site: Counter = Counter()
    stats = BandStatistics(bands)
    out = opts.out if not location.is_local(opts.out) else Path(opts.out)  # a folder or an s3:// / gs:// URL
    with PairShardWriter(out, opts.shard_size, bands=bands, mr_gsd=10.0, hr_gsd=5.0, prefix=opts.prefix,
                         max_nodata_fraction=opts.max_nodata) as w:
        for ref in refs:
            if opts.limit is not None and w.num_samples >= opts.limit:
                break
            try:
                mr, hr, nod_mr, nod_hr = reader.read(ref)
            except _Skip as s:
                skipped[s.reason] += 1
                continue
            reason = check_pair(mr, hr)
            if reason:
                skipped[reason] += 1
                continue
            key, meta = ref_key(ref)
            mr16 = to_int16(mr, nod_mr)
            if w.write(key, mr16, to_int16(hr, nod_hr), meta):  # False: over the nodata limit (counted by the writer)
                stats.update(mr16, -10000)
                per_site[ref[1]] += 1
        written = w.num_samples
        skipped.update(w.skipped)
        # an empty set is an error (the writer drops it and keeps any old set); an empty part is not (merge
        # refuses a set whose parts are all empty)
        if written == 0 and opts.part is None:
            raise ValueError(
                f"no pair of {len(refs)} listed under {opts.root} passed the checks (skipped: {dict(skipped)}; first "
                f"errors: {reader.errors[:2]}); nothing was written to {out}. Raise --max-nodata, check --nodata "
                "and --bands, or check the files named above.")
    index = add_to_index(out, band_stats=stats.summary())
    summary = {
        "source": "sen2venus",
        "out": str(out),
        "written": written,
        "skipped": dict(sorted(skipped.items())),
        "sites": {s: per_site.get(s, 0) for s in sites},
        "shards": len(index["shards"]),
        "errors": reader.errors[:50],
    }
    location.write_json(out, "summary-sen2venus.json", summary)
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


def _index_kind(header: list[str]) -> str:
    return "v2" if any(c in header for c in V2_COLUMNS) else "v1"


def _read_header(text: str) -> list[str]:
    return next(csv.reader(io.StringIO(text), delimiter="\t"), [])


def discover_sites(root: Path, release: str = "auto") -> "OrderedDict[str, tuple[str, Path]]":
    """``{site: ("v1", folder) | ("v2", folder) | ("v2zip", zip)}``; ``root`` may itself be one site folder.

    A folder with ``index.csv`` is v1 or an extracted v2 site (told apart by the index's columns); a
    ``<SITE>.zip`` is a v2 site zip.
    """
    sites: OrderedDict = OrderedDict()
    folders = ([root] if (root / "index.csv").is_file() else []) + sorted(
        d for d in root.iterdir() if d.is_dir() and (d / "index.csv").is_file())
    for d in folders:
        kind = _index_kind(_read_header((d / "index.csv").read_text()))
        if release in ("auto", kind):
            sites[d.name] = (kind, d)
    if release in ("auto", "v2"):
        for z in sorted(root.glob("*.zip")):
            if z.stem in sites:
                raise ValueError(f"site {z.stem} exists both as a folder and as {z.name}; move one of them away.")
            try:
                with zipfile.ZipFile(z) as zf:
                    if not any(n.endswith("/index.csv") or n == "index.csv" for n in zf.namelist()):
                        continue  # an inner zip of an extracted site or some other archive
            except zipfile.BadZipFile as e:
                raise ValueError(f"{z} is not a readable zip ({e}); re-download it or move it out of {root}.") from e
            sites[z.stem] = ("v2zip", z)
    if not sites:
        sevenz = sorted(p.name for p in root.glob("*.7z"))
        hint = f" Found {sevenz[:3]}...: extract them first (7z x <site>.7z)." if sevenz else ""
        raise FileNotFoundError(
            f"no Sen2Venus site under {root}: expected <site>/index.csv (v1) or <SITE>.zip holding "
            f"<SITE>/index.csv (v2).{hint}"
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
        mr, hr = (_inside(folder, r[c].strip(), index) for c in (mr_col, hr_col))
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(r[mr_col].strip()).stem)
        refs += [("v1", site, mr, hr, j, stem) for j in range(n)]
    return refs


def _inside(folder: Path, cell: str, index) -> Path:
    """``folder / cell`` when it stays inside the dataset root (the site folder's parent), else a ValueError.

    An index cell is a file name relative to its site folder; an absolute path, ``..`` or a link out of
    the dataset would make the writer read (and store in shards) a file the dataset does not hold.
    """
    root = folder.resolve().parent
    path = folder / cell
    if Path(cell).is_absolute() or ".." in Path(cell).parts or not path.resolve().is_relative_to(root):
        raise ValueError(f"{index}: file {cell!r} lies outside the dataset root {root}; index.csv must name files "
                         "inside the site folder (re-extract the site, or fix the index).")
    return path


def v2_refs(site: str, path: Path, mr_col: str, hr_col: str) -> list[tuple]:
    """One reference ``("v2", site, mr_gdal_path, hr_gdal_path, patch_id)`` per row of a v2 ``index.csv``.

    ``path`` is the site zip or the extracted site folder; cells ``<inner>.zip/<member>.tif`` become GDAL
    paths that read the member in place.
    """
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            name = next(n for n in z.namelist() if n.endswith("/index.csv") or n == "index.csv")
            text = z.read(name).decode()
        folder = name.rpartition("/")[0]
        base = f"/vsizip/{path.resolve()}/{folder}" if folder else f"/vsizip/{path.resolve()}"
        index = f"{path}!{name}"
    else:
        text = (path / "index.csv").read_text()
        base, index = str(path.resolve()), str(path / "index.csv")
    rows = list(csv.reader(io.StringIO(text), delimiter="\t"))
    if not rows:
        return []
    header = rows[0]
    missing = [c for c in (mr_col, hr_col) if c not in header]
    if missing:
        raise ValueError(f"{index} lacks columns {missing} (has {header}); is it a Sen2Venus v2 index? "
                         "Set --v2-mr-column/--v2-hr-column to the column names of this release.")
    im, ih = header.index(mr_col), header.index(hr_col)
    refs = []
    for r in rows[1:]:
        if len(r) <= max(im, ih):
            continue
        pid = re.sub(r"[^A-Za-z0-9_-]+", "_", r[0].strip())
        refs.append(("v2", site, gdal_member_path(base, r[im].strip()), gdal_member_path(base, r[ih].strip()), pid))
    return refs


def gdal_member_path(base: str, cell: str) -> str:
    """GDAL path of ``<inner>.zip/<member>`` under ``base`` (a folder, or ``/vsizip/<outer zip>/<folder>``)."""
    inner, sep, member = cell.partition(".zip/")
    if not sep:
        raise ValueError(f"index cell {cell!r} is not of the form <inner>.zip/<member>.tif.")
    if cell.startswith("/") or ".." in Path(cell).parts or "\\" in cell or "{" in cell or "}" in cell:
        raise ValueError(f"index cell {cell!r} points outside the site ({base}); cells must be relative "
                         "<inner>.zip/<member>.tif paths (fix or re-download the index).")
    zip_path = f"{base}/{inner}.zip"
    if zip_path.startswith("/vsizip/"):
        return f"/vsizip/{{{zip_path}}}/{member}"
    return f"/vsizip/{zip_path}/{member}"


def ref_key(ref: tuple) -> tuple[str, dict]:
    """Shard key (no dots) and JSON meta of a reference."""
    if ref[0] == "v1":
        _, site, mr, hr, j, stem = ref
        return f"s2v-{site}-{stem}-{j:05d}", {"source": "sen2venus-v1", "site": site, "mr_file": mr.name,
                                              "hr_file": hr.name, "patch": j}
    _, site, mr, hr, pid = ref
    return f"s2v-{site}-{pid}", {"source": "sen2venus-v2", "site": site, "patch": pid, "mr_file": mr, "hr_file": hr}


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

    def _tif(self, path: str) -> tuple[np.ndarray, float]:
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(path) as ds:
                    arr = ds.read(self._tif_bands(ds)).astype(np.float32)
                    nod = ds.nodata if ds.nodata is not None else self.nodata
            return arr, nod
        except RasterioIOError as e:
            missing = "No such file" in str(e) or "does not exist" in str(e)
            self.errors.append(f"{path}: {'missing' if missing else 'unreadable'} ({str(e)[:120]})")
            raise _Skip("missing_file" if missing else "unreadable") from e

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
        _, _, mr_path, hr_path, _ = ref
        mr, nod_mr = self._tif(mr_path)
        hr, nod_hr = self._tif(hr_path)
        return mr, hr, nod_mr, nod_hr
