"""``make_shards.py geotiff --hr HR.tif --mr MR.tif --out DIR``: pair two rasters into pair shards.

The two rasters may differ in CRS, GSD and extent; their GSD ratio ``s`` must be an integer. Steps:

1. ``s = MR pixel size / HR pixel size`` in the MR CRS (HR's size there is estimated with
   ``rasterio.warp.calculate_default_transform`` when the CRSs differ). A ratio farther than
   ``--ratio-tol`` (relative; 1e-6 for one CRS) from an integer is an error; ``--scale`` forces ``s``.
2. Common footprint = MR bounds intersected with HR bounds (transformed to the MR CRS), snapped inward
   to whole MR pixels. No overlap, or less than one tile, is an error.
3. HR is read on the MR grid refined by ``s`` over that footprint: straight by window when the HR grid
   already is that grid (same CRS, pixel size MR/s, origin on it), else through a ``WarpedVRT``
   (``--resampling``, default bilinear). Both rasters are read by window, one row of tiles at a time.
4. Tiles of ``T x T`` MR px and ``sT x sT`` HR px; a tile pair with a non-finite value or more than
   ``--max-nodata`` nodata pixels (either side; counted by the shard writer, nodata stored as -10000) is
   skipped and counted.
5. Bands are mapped to the kit's order (``--bands``, default blue green red nir) from
   ``--mr-bands``/``--hr-bands`` when given (``blue=2,green=3,red=4,nir=8`` with 1-based indices or
   descriptions, or a plain list in ``--bands`` order), else from band descriptions (``B2``/``B02``/``blue``
   ...), else from the colour interpretation (red, green, blue, nir). A raster with none of these and
   exactly ``len(bands)`` bands is taken to be in the kit's order, with a loud notice that prints the
   assumed mapping and the flag that sets it. A band that cannot be found is an error.
6. Units: the kit stores reflectance x 10000 as int16. Float rasters whose values lie within 0..1.5 are
   0-1 reflectance and are multiplied by 10000 (``--reflectance-scale`` default); an explicit scale that
   would round such data to zero in int16 is refused. Per-band statistics of the written MR tiles go into
   ``index.json`` (``band_stats``), and a warning says when they are far from the authors' Sentinel-2
   normalisation (uint8 data, 0-1 reflectance).
"""
from __future__ import annotations

import logging
import math
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crossscale_kit.data.parts import part_range
from crossscale_kit.data.sources.pairs import check_pair, to_int16
from crossscale_kit.data import location
from crossscale_kit.data.writer import PairShardWriter
from crossscale_kit.io import BANDS, BandStatistics, add_to_index, units_warning

log = logging.getLogger(__name__)
# the authors' Sentinel-2 statistics (reflectance x 10000, B2 B3 B4 B8): what the recipes normalise with
S2_MEAN = (443.89, 715.68, 813.27, 2603.59)
S2_STD = (283.97, 389.34, 651.25, 811.83)

ALIASES = {
    "blue": ("blue", "b2", "band2"), "green": ("green", "b3", "band3"), "red": ("red", "b4", "band4"),
    "nir": ("nir", "b8", "band8", "near infrared", "near-infrared"),
}


@dataclass
class GeoTiffOptions:
    """What ``make_shards.py geotiff`` writes (see the module docstring for each step).

    Args:
        hr, mr: the two rasters (MR's grid and CRS are kept). out: output shard folder.
        tile: MR tile side in px. bands: kit band names to write, in order.
        mr_bands, hr_bands: band mappings like ``blue=2,green=3,red=4,nir=8`` (None: from the file).
        max_nodata: largest nodata fraction of a kept tile pair. nodata: for both rasters (None: their own).
        scale: force the integer GSD ratio. ratio_tol: tolerance of the ratio when the CRSs differ.
        resampling: rasterio Resampling name used when HR must be warped.
        mr_gsd: MR GSD in metres (None: the pixel size of a projected CRS).
        reflectance_scale: multiply values by this before int16 (None: 10000 for 0-1 floats, else 1).
        shard_size, prefix: shard layout.
        part: ``(i, N)``: write only the i-th of N contiguous blocks of the tiles in row-major order (None: all).
    """

    hr: Path
    mr: Path
    out: Path
    tile: int = 64
    bands: tuple[str, ...] = BANDS
    mr_bands: str | None = None
    hr_bands: str | None = None
    max_nodata: float = 0.0
    nodata: float | None = None
    scale: int | None = None
    ratio_tol: float = 0.02
    resampling: str = "bilinear"
    mr_gsd: float | None = None
    reflectance_scale: float | None = None
    shard_size: int = 256
    prefix: str = "pairs"
    part: tuple[int, int] | None = None


Options = GeoTiffOptions  # the name tools/make_shards.py looks for


def open_raster(path: str | Path):
    import rasterio
    from rasterio.errors import RasterioIOError

    p = Path(path)
    if p.is_dir():
        raise ValueError(f"raster {p} is a folder; pass the GeoTIFF file itself (e.g. {p}/<name>.tif).")
    if not p.is_file():
        raise FileNotFoundError(f"raster {p} does not exist; check the path.")
    try:
        return rasterio.open(p)
    except RasterioIOError as e:
        raise ValueError(f"{p} is not a readable raster ({e}); re-export it as a GeoTIFF.") from e


def _norm(s: str) -> str:
    return re.sub(r"^b0*(\d)", r"b\1", re.sub(r"\s+", " ", s.strip().lower()))


def band_indexes(ds, bands: tuple[str, ...], spec: str | None, flag: str) -> list[int]:
    """1-based band indexes of ``ds`` for the kit ``bands``; a ValueError names a band that is missing."""
    desc = [_norm(d) if d else "" for d in ds.descriptions]
    name = Path(ds.name).name

    def lookup(ref: str, band: str) -> int:
        ref = ref.strip()
        if ref.isdigit():
            i = int(ref)
            if not 1 <= i <= ds.count:
                raise ValueError(f"{flag}: band index {i} for {band} is outside 1..{ds.count} of {name}.")
            return i
        if _norm(ref) in desc:
            return desc.index(_norm(ref)) + 1
        raise ValueError(f"{flag}: {name} has no band described {ref!r} for {band} (descriptions {ds.descriptions}).")

    if spec:
        items = [s for s in spec.split(",") if s.strip()]
        if all("=" in s for s in items):
            mapping = dict(s.split("=", 1) for s in items)
            mapping = {k.strip().lower(): v for k, v in mapping.items()}
            missing = [b for b in bands if b not in mapping]
            if missing:
                raise ValueError(f"{flag} {spec!r} does not map band(s) {missing}; add e.g. {missing[0]}=<index>.")
            return [lookup(mapping[b], b) for b in bands]
        if len(items) != len(bands):
            raise ValueError(f"{flag} {spec!r} lists {len(items)} bands but --bands has {len(bands)} ({list(bands)}).")
        return [lookup(r, b) for r, b in zip(items, bands)]
    found = []
    for b in bands:
        hits = [i + 1 for i, d in enumerate(desc) if d in ALIASES.get(b, (b,))]
        found.append(hits[0] if hits else None)
    if all(f is not None for f in found):
        return found
    interp = [c.name.lower() for c in ds.colorinterp]
    if all(b in interp for b in bands):
        return [interp.index(b) + 1 for b in bands]
    # descriptions and colour interpretation together (e.g. red, green, blue, undefined: an RGB + NIR raster)
    named = {b: f if f is not None else (interp.index(b) + 1 if b in interp else None) for b, f in zip(bands, found)}
    if any(v is not None for v in named.values()):
        left = [b for b, v in named.items() if v is None]
        free = [i + 1 for i in range(ds.count) if i + 1 not in named.values() and interp[i] == "undefined"
                and not desc[i]]
        if len(left) == 1 and len(free) == 1 and left[0] == "nir":
            named["nir"] = free[0]
            said = ", ".join(f"{b}={named[b]}" for b in bands if b != "nir")
            msg = (f"{name}: its colour interpretation {tuple(interp)} names {said}; ASSUMING nir={free[0]} (its one "
                   f"band of undefined colour interpretation). If that is wrong, pass {flag} "
                   + ",".join(f"{b}=<i>" for b in bands) + " with the file's band numbers.")
            log.warning(msg)
            warnings.warn(msg, UserWarning, stacklevel=2)
            return [named[b] for b in bands]
        raise ValueError(
            f"{name} has no band for {left} (it names {', '.join(f'{b}={v}' for b, v in named.items() if v)}; colour "
            f"interpretation {tuple(interp)}, descriptions {ds.descriptions}); map every band with "
            f"{flag} " + ",".join(f"{b}=<i>" for b in bands) + ".")
    if not any(desc) and ds.count == len(bands):
        assumed = ",".join(f"{b}={i + 1}" for i, b in enumerate(bands))
        msg = (f"{name} has no band descriptions or colour interpretation naming its bands; ASSUMING {assumed}. "
               f"If that is wrong, pass {flag} " + ",".join(f"{b}=<i>" for b in bands) + " with the file's band numbers.")
        warnings.warn(msg, UserWarning, stacklevel=2)  # once: the tools route warnings into the log
        return list(range(1, len(bands) + 1))
    missing = [b for b, f in zip(bands, found) if f is None]
    raise ValueError(
        f"{name} has no band for {missing} (descriptions {ds.descriptions}, {ds.count} bands); "
        f"map them with {flag} blue=<i>,green=<i>,red=<i>,nir=<i>."
    )


def reflectance_scale(ds, indexes: list[int], given: float | None, nodata, flag: str = "--reflectance-scale") -> float:
    """The factor that brings a raster to reflectance x 10000 (the int16 units of the shards).

    Float data within 0..1.5 is 0-1 reflectance: ``None`` picks 10000 for it (1 otherwise); a given factor
    that would round more than 1 % of its non-zero values to zero in int16 is refused.
    """
    h, w = min(ds.height, 512), min(ds.width, 512)
    sample = ds.read(indexes, out_shape=(len(indexes), h, w), resampling=_nearest()).astype(np.float64)
    name = Path(ds.name).name
    finite = sample[np.isfinite(sample)]
    declared = nodata is not None and not np.isnan(nodata)
    # an undeclared nodata value (a usual fill value covering part of the raster) would be stored as data
    for v in SENTINELS:
        share = float(np.mean(finite == v)) if finite.size else 0.0
        if share > 0 and not (declared and v == nodata) and v != -10000:
            raise ValueError(
                f"{name}: {share:.2%} of the sampled pixels are {v:g}, a usual nodata value, but the file "
                f"declares {'no nodata' if not declared else f'nodata {nodata:g}'}; pass --nodata {v:g} if they are "
                "no-data (they are then skipped), or re-export the raster with its nodata declared.")
    valid = finite[(finite != nodata) if declared else np.ones(finite.shape, bool)]
    is_float = np.dtype(ds.dtypes[indexes[0] - 1]).kind == "f"
    # robust to a few outliers: 0-1 reflectance when 99.9 % of the values lie within [-0.5, 1.5]
    lo, hi = (np.percentile(valid, [0.05, 99.95]) if valid.size else (0.0, 0.0))
    unit = is_float and valid.size > 0 and -0.5 <= lo and hi <= 1.5
    if given is None:
        factor = 10000.0 if unit else 1.0
        if unit:
            log.warning("%s holds 0-1 float reflectance (99.9 %% of values within [%.3g, %.3g]); multiplying by "
                        "10000 for int16 shards.", name, lo, hi)
    else:
        factor = float(given)
    over = float(np.mean(np.abs(valid * factor) > 32767)) if valid.size else 0.0
    if over > 0.001:
        raise ValueError(f"{name}: {over:.2%} of the values times {factor:g} lie outside the int16 range of the "
                         f"shards (values up to {valid.max():.6g}); pass --reflectance-scale with a smaller factor "
                         "(values must end as reflectance x 10000), or --nodata for a fill value.")
    if over > 0:
        log.warning("%s: %.3f%% of the values times %g lie outside int16 and are clipped to -32768..32767.",
                    name, 100 * over, factor)
    if given is None:
        return factor
    nonzero = valid[valid != 0]
    if nonzero.size and np.mean(np.rint(nonzero * given) == 0) > 0.01:
        raise ValueError(f"{name}: values within [{valid.min():.3g}, {valid.max():.3g}] times {flag} {given:g} round "
                         "to zero in int16 shards; pass --reflectance-scale 10000 for 0-1 reflectance.")
    return float(given)


#: fill values that mark no-data in rasters that often forget to declare it
SENTINELS = (-9999.0, -32768.0, -3.4028234663852886e38, 65535.0)


def _nearest():
    from rasterio.enums import Resampling

    return Resampling.nearest


def _fill(dtype: str, nodata):
    if nodata is not None:
        return nodata
    return 0 if np.dtype(dtype).kind == "u" else -10000


def plan(mr, hr, *, tile: int, scale: int | None = None, ratio_tol: float = 0.02) -> dict:
    """Geometry of the pairing: scale, MR pixel window of the footprint, HR grid and read mode."""
    from affine import Affine
    from rasterio.warp import calculate_default_transform, transform_bounds

    if mr.crs is None or hr.crs is None:
        raise ValueError(f"both rasters need a CRS ({Path(mr.name).name}: {mr.crs}, {Path(hr.name).name}: {hr.crs}).")
    t = mr.transform
    if t.b or t.d or t.e >= 0 or not math.isclose(t.a, -t.e, rel_tol=1e-6):
        raise ValueError(f"MR {Path(mr.name).name} must be north-up with square pixels, got transform {tuple(t)[:6]}.")
    mr_res = t.a
    same = mr.crs == hr.crs
    if same:
        hb = hr.bounds
        hr_res = abs(hr.transform.a)
        tol = 1e-6
    else:
        hb = transform_bounds(hr.crs, mr.crs, *hr.bounds, densify_pts=21)
        hr_res = abs(calculate_default_transform(hr.crs, mr.crs, hr.width, hr.height, *hr.bounds)[0].a)
        tol = ratio_tol
    ratio = mr_res / hr_res
    if scale is None:
        scale = int(round(ratio))
        if scale < 1 or abs(ratio - scale) > tol * ratio:
            raise ValueError(
                f"GSD ratio MR/HR = {mr_res:g}/{hr_res:g} = {ratio:.4f} is not an integer; pair rasters whose pixel "
                "sizes differ by an integer factor, resample one of them, or force --scale."
            )
    elif scale < 1:
        raise ValueError(f"--scale must be a positive integer, got {scale}.")
    mb = mr.bounds
    left, right = max(mb.left, hb[0]), min(mb.right, hb[2])
    bottom, top = max(mb.bottom, hb[1]), min(mb.top, hb[3])
    if left >= right or bottom >= top:
        raise ValueError(
            f"the footprints do not overlap: MR {tuple(round(v, 3) for v in mb)} and HR "
            f"{tuple(round(v, 3) for v in hb)} (in {mr.crs}); pass rasters over the same ground."
        )
    eps = 1e-6
    c0 = math.ceil((left - t.c) / mr_res - eps)
    c1 = math.floor((right - t.c) / mr_res + eps)
    r0 = math.ceil((t.f - top) / mr_res - eps)
    r1 = math.floor((t.f - bottom) / mr_res + eps)
    ny, nx = (r1 - r0) // tile, (c1 - c0) // tile
    if ny < 1 or nx < 1:
        raise ValueError(
            f"the common footprint is {c1 - c0}x{r1 - r0} MR px, smaller than one {tile}-px tile; use a smaller --tile."
        )
    x0, y0 = t.c + c0 * mr_res, t.f - r0 * mr_res
    res_h = mr_res / scale
    hr_transform = Affine(res_h, 0.0, x0, 0.0, -res_h, y0)
    direct = None
    ht = hr.transform
    if same and not ht.b and not ht.d and math.isclose(ht.a, res_h, rel_tol=1e-6) and math.isclose(-ht.e, res_h, rel_tol=1e-6):
        hc, hrw = (x0 - ht.c) / res_h, (ht.f - y0) / res_h
        if abs(hc - round(hc)) < 1e-3 and abs(hrw - round(hrw)) < 1e-3:
            direct = (int(round(hc)), int(round(hrw)))
    return {"scale": scale, "ratio": ratio, "mr_window": (c0, r0, nx * tile, ny * tile), "tiles": (ny, nx),
            "hr_transform": hr_transform, "hr_size": (ny * tile * scale, nx * tile * scale), "direct": direct,
            "footprint": (x0, y0 - ny * tile * mr_res, x0 + nx * tile * mr_res, y0), "mr_res": mr_res}


def run(args: GeoTiffOptions) -> dict:
    """Write the tile pairs; return ``{"source", "out", "written", "skipped": {reason: n}, "scale", ...}``."""
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT
    from rasterio.windows import Window

    bands = tuple(b.lower() for b in args.bands)
    unknown = [b for b in bands if b not in BANDS]
    if unknown:
        raise ValueError(f"--bands {unknown} are not kit bands; choose from {list(BANDS)}.")
    if args.tile < 1:
        raise ValueError(f"--tile must be >= 1, got {args.tile}.")
    try:
        resampling = Resampling[args.resampling]
    except KeyError as e:
        raise ValueError(f"--resampling {args.resampling!r} is not a rasterio Resampling name (e.g. bilinear, nearest).") from e
    mr = open_raster(args.mr)
    hr = open_raster(args.hr)
    with mr, hr:
        mi = band_indexes(mr, bands, args.mr_bands, "--mr-bands")
        hi = band_indexes(hr, bands, args.hr_bands, "--hr-bands")
        g = plan(mr, hr, tile=args.tile, scale=args.scale, ratio_tol=args.ratio_tol)
        s, T = g["scale"], args.tile
        mr_nod = args.nodata if args.nodata is not None else mr.nodata
        hr_nod = args.nodata if args.nodata is not None else hr.nodata
        mr_scale = reflectance_scale(mr, mi, args.reflectance_scale, mr_nod)
        hr_scale = reflectance_scale(hr, hi, args.reflectance_scale, hr_nod)
        if g["direct"] is not None:
            src, (hc0, hr0) = hr, g["direct"]
        else:
            vnod = _fill(hr.dtypes[0], hr_nod)
            src = WarpedVRT(hr, crs=mr.crs, transform=g["hr_transform"], width=g["hr_size"][1], height=g["hr_size"][0],
                            resampling=resampling, src_nodata=hr_nod, nodata=vnod)
            hc0 = hr0 = 0
            hr_nod = vnod
        mr_gsd = args.mr_gsd
        if mr_gsd is None:
            if not mr.crs.is_projected:
                raise ValueError(f"MR CRS {mr.crs} is geographic; give its GSD in metres with --mr-gsd.")
            mr_gsd = g["mr_res"]
        c0, r0, w, h = g["mr_window"]
        ny, nx = g["tiles"]
        mine = part_range(ny * nx, args.part, "tiles")  # --part i/N: a block of tiles, row-major
        skipped: Counter = Counter()
        stats = BandStatistics(bands)
        out = args.out if not location.is_local(args.out) else Path(args.out)  # a folder or s3:// / gs:// URL
        try:
            with PairShardWriter(out, args.shard_size, bands=bands, mr_gsd=mr_gsd, hr_gsd=mr_gsd / s,
                                 prefix=args.prefix, max_nodata_fraction=args.max_nodata) as wr:
                for ty in range(mine.start // nx, -(-mine.stop // nx)):
                    mstrip = mr.read(mi, window=Window(c0, r0 + ty * T, w, T)).astype(np.float64)
                    hstrip = src.read(hi, window=Window(hc0, hr0 + ty * T * s, w * s, T * s)).astype(np.float64)
                    for tx in range(nx):
                        if ty * nx + tx not in mine:
                            continue
                        m = mstrip[:, :, tx * T:(tx + 1) * T]
                        hh = hstrip[:, :, tx * T * s:(tx + 1) * T * s]
                        reason = check_pair(m, hh, s)
                        if reason:
                            skipped[reason] += 1
                            continue
                        col, row = c0 + tx * T, r0 + ty * T
                        x0 = mr.transform.c + col * g["mr_res"]
                        y1 = mr.transform.f - row * g["mr_res"]
                        meta = {"source": "geotiff", "mr_file": Path(args.mr).name, "hr_file": Path(args.hr).name,
                                "crs": mr.crs.to_string(), "mr_col": col, "mr_row": row,
                                "bounds": [x0, y1 - T * g["mr_res"], x0 + T * g["mr_res"], y1]}
                        mr_tile = to_int16(m, mr_nod, mr_scale)  # nodata stored as the kit's -10000
                        if wr.write(f"gt-r{row:06d}-c{col:06d}", mr_tile, to_int16(hh, hr_nod, hr_scale), meta):
                            stats.update(mr_tile, -10000)
                written = wr.num_samples
                skipped.update(wr.skipped)
                # an empty set is an error (the writer drops it and keeps any old set); an empty part is not:
                # a block of tiles may lie wholly in no-data, and merge refuses a set whose parts are all empty
                if written == 0 and args.part is None:
                    skipped.update(wr.skipped)
                    raise ValueError(
                        f"no tile pair of {args.mr} / {args.hr} passed the checks (skipped: {dict(skipped)}; "
                        f"{len(mine)} tiles); nothing was written to {out}. Raise --max-nodata for tiles with no-data "
                        "pixels, check --nodata, or pick rasters that overlap with valid pixels.")
        finally:
            if src is not hr:
                src.close()
    index = add_to_index(out, band_stats=stats.summary())
    units = units_warning(index["band_stats"], *zip(*[(S2_MEAN[BANDS.index(b)], S2_STD[BANDS.index(b)]) for b in bands]),
                          bands=bands) if written else None
    if units:
        warnings.warn(units, UserWarning, stacklevel=2)  # once: the tools route warnings into the log
    summary = {
        "source": "geotiff",
        "out": str(out),
        "written": written,
        "skipped": dict(sorted(skipped.items())),
        "tiles": len(mine),
        "scale": s,
        "ratio": g["ratio"],
        "mode": "window" if g["direct"] is not None else "warp",
        "footprint": list(g["footprint"]),
        "mr_bands": mi,
        "hr_bands": hi,
        "reflectance_scale": {"mr": mr_scale, "hr": hr_scale},
        "units_warning": units,
        "shards": len(index["shards"]),
    }
    location.write_json(out, "summary-geotiff.json", summary)
    if written == 0:
        warnings.warn(f"no tile pair of {args.mr} / {args.hr} passed the checks ({dict(skipped)}); nothing was written.")
    return summary
