"""Small I/O pieces shared by data, encoders and eval: band names, atomic writes, band statistics, units check.

Every package that writes a file another process may read (shard indexes, export meta, probe rows)
writes it through a temporary file in the same folder and ``os.replace``, so a reader sees the old
file or the new one, never half of one.
"""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

#: band names of the 4-band stacks the kit trains on, in storage order (Sentinel-2 B2 B3 B4 B8)
BANDS = ("blue", "green", "red", "nir")


class SymlinkRefusedError(OSError):
    """A file the kit creates or truncates is a symbolic link; the kit never writes through one."""


def _refuse_link(path: Path, exc: OSError | None = None) -> SymlinkRefusedError:
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return SymlinkRefusedError(
        f"{path} is a symbolic link (to {target}); the kit does not write through links in the folders it "
        f"owns (it would overwrite the link's target). Remove the link ({path}) and run again.")


def open_nofollow(path: str | os.PathLike, mode: str = "w", *, newline: str | None = None):
    """``open(path, mode)`` for a file the kit creates, truncates or appends to, refusing a symbolic link.

    ``O_NOFOLLOW`` makes the open itself refuse a link (no check-then-open race); new files get
    ``0o666`` less the umask, as ``open`` gives them.

    Raises:
        SymlinkRefusedError naming the link and the fix.
    """
    path = Path(path)
    flags = {"w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
             "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL}[mode[0]]
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (exc.errno == errno.EEXIST and path.is_symlink()):
            raise _refuse_link(path, exc) from None
        raise
    return os.fdopen(fd, mode.replace("x", "w"), **({} if "b" in mode else {"newline": newline}))


def write_text_nofollow(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` in place (see :func:`open_nofollow`)."""
    with open_nofollow(path, "w") as f:
        f.write(text)


def temp_path(path: str | os.PathLike) -> Path:
    """The temporary sibling ``.<name>.tmp<pid>`` of ``path``, free of any file or link planted there."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()  # removes a planted link itself, never its target
    return tmp


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace`` (never through a link)."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open_nofollow(tmp, "x") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (see :func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(obj, indent=2))


class CorruptSampleError(ValueError):
    """A sample file exists but cannot be read as its format promises (readers count or raise it)."""


class BandStatistics:
    """Running per-band statistics of written tiles (for the shard index and the units check).

    Args:
        bands: band names, in storage order.

    ``update(tile (C, h, w), nodata)`` adds the valid pixels of one tile; ``summary()`` gives
    ``{band: {"mean", "std", "min", "max", "count"}}`` in the stored units.
    """

    def __init__(self, bands) -> None:
        self.bands = list(bands)
        c = len(self.bands)
        self.n, self.s, self.s2 = np.zeros(c), np.zeros(c), np.zeros(c)
        self.lo, self.hi = np.full(c, np.inf), np.full(c, -np.inf)

    def update(self, tile: np.ndarray, nodata: float | None = None) -> None:
        for b in range(len(self.bands)):
            v = np.asarray(tile[b], np.float64).ravel()
            v = v[np.isfinite(v) & ((v != nodata) if nodata is not None else True)]
            if v.size:
                self.n[b] += v.size
                self.s[b] += v.sum()
                self.s2[b] += (v * v).sum()
                self.lo[b], self.hi[b] = min(self.lo[b], v.min()), max(self.hi[b], v.max())

    def summary(self) -> dict:
        out = {}
        for b, name in enumerate(self.bands):
            if not self.n[b]:
                continue
            mean = self.s[b] / self.n[b]
            std = float(np.sqrt(max(self.s2[b] / self.n[b] - mean * mean, 0.0)))
            out[name] = {"mean": float(mean), "std": std, "min": float(self.lo[b]), "max": float(self.hi[b]),
                         "count": int(self.n[b])}
        return out


def add_to_index(root: str | os.PathLike, **fields: Any) -> dict:
    """Add ``fields`` to the ``index.json`` of a shard folder (atomically) and return the new index."""
    from crossscale_kit.data import location  # crossscale_kit.data imports this module

    if not location.is_local(root):  # an object store: one PUT replaces the published index whole
        url = location.join(root, "index.json")
        index = json.loads(location.read_bytes(url))
        index.update(fields)
        fs, path = location._fs(url, None)
        fs.pipe_file(path, json.dumps(index, indent=2).encode())
        return index
    path = Path(root) / "index.json"
    index = json.loads(path.read_text())
    index.update(fields)
    write_json_atomic(path, index)
    return index


def units_warning(band_stats: dict, mean, std, bands=BANDS) -> str | None:
    """A warning when stored band values are far from the units a normalisation expects, else None.

    Args:
        band_stats: ``{band: {"mean", "std", "min", "max"}}`` of the stored values (the shard index's
            ``band_stats``).
        mean, std: the normalisation the recipe applies, per band in ``bands`` order (e.g. the authors'
            Sentinel-2 DN statistics, reflectance x 10000).

    The data counts as far off when a band's mean lies more than 4 of the recipe's standard deviations from
    the recipe's mean, or its whole range fits in 0..255 or 0..1 while the recipe expects values in the
    thousands: the usual signs of uint8 images or of 0-1 reflectance fed to a model normalised for DN.
    """
    notes = []
    for b, m, s in zip(bands, mean, std):
        st = band_stats.get(b)
        if not st:
            continue
        z = abs(st["mean"] - m) / max(s, 1e-12)
        if m > 100 and st["max"] <= 1.5:
            notes.append(f"{b}: values within [{st['min']:.3g}, {st['max']:.3g}] look like 0-1 reflectance")
        elif m > 300 and 0 <= st["min"] and st["max"] <= 255:
            notes.append(f"{b}: values within [{st['min']:.3g}, {st['max']:.3g}] look like 8-bit (uint8) data")
        elif z > 4:
            notes.append(f"{b}: mean {st['mean']:.4g} is {z:.1f} std from the normalisation mean {m:.4g}")
    if not notes:
        return None
    return ("the data's range is far from the normalisation the recipe uses (mean " + ", ".join(f"{m:g}" for m in mean)
            + "; reflectance x 10000 expected): " + "; ".join(notes)
            + ". Rescale the data (make_shards.py geotiff --reflectance-scale) or set the recipe's normalisation "
            "(make_shards.py prints the SensorNormalize bindings of the data it wrote).")


def normalization_bindings(band_stats: dict, bands=BANDS) -> str | None:
    """Gin bindings that normalise data with the given ``band_stats`` (the shard index's), ready to paste.

    The shard index holds statistics of the stored MR tiles only; the HR lines repeat them (the two sensors
    of a co-registered pair measure the same reflectance: the authors' S2 and VENuS statistics differ by
    under 2 %). None when a band has no statistics.
    """
    if not band_stats or any(b not in band_stats for b in bands):
        return None
    mean = ", ".join(f"{band_stats[b]['mean']:.2f}" for b in bands)
    std = ", ".join(f"{max(band_stats[b]['std'], 1e-3):.2f}" for b in bands)
    return "\n".join([
        f"# normalisation of the data written (bands {', '.join(bands)}; add after the recipe, or pass each line",
        "# with --gin_param); HR repeats the MR statistics, the only ones the shard index holds",
        f"SensorNormalize.mr_mean = ({mean})", f"SensorNormalize.mr_std = ({std})",
        f"SensorNormalize.hr_mean = ({mean})", f"SensorNormalize.hr_std = ({std})",
    ])


def shard_units_warning(root: str | os.PathLike, mean, std, bands=BANDS) -> str | None:
    """:func:`units_warning` for the ``band_stats`` in a shard folder's ``index.json`` (None without them)."""
    from crossscale_kit.data import location  # crossscale_kit.data imports this module

    try:  # a folder or a URL (the AWS / GCS environment gives a remote set's credentials)
        stats = json.loads(location.read_bytes(location.join(root, "index.json"))).get("band_stats")
    except (OSError, ValueError):  # DataError is a ValueError
        return None
    return units_warning(stats, mean, std, bands) if stats else None


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists on this machine (stale-lock and stale-temp-folder checks)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True
