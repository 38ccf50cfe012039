"""Write paired MR/HR tiles as WebDataset shards.

    python tools/make_shards.py synthetic --out data/synthetic --num-pairs 1024
    python tools/make_shards.py sen2venus ...
    python tools/make_shards.py geotiff ...
    python tools/make_shards.py synthetic --out data/s --num-pairs 1024 --part 2/3   # one of 3 side-by-side writers
    python tools/make_shards.py merge --out data/s                                   # publish the 3 parts as one set

Each sub-command is a module of ``crossscale_kit.data.sources`` (imported only when chosen); it prints a summary.
Every sub-command writes a whole shard set: into a temporary folder, ``index.json`` last, renamed into
place when complete. A non-empty ``--out`` is refused unless ``--replace`` is given; then the old set is
replaced only once the new one is complete (a failed run leaves it whole).

``--part i/N`` (every source) writes the i-th of N disjoint blocks of the source (pair indices, index rows,
tiles) into ``OUT/part-<i>-of-<N>/``, so N processes or nodes run the same command side by side; ``merge``
then checks the parts (all there, one recipe, no sample twice) and publishes one set in ``OUT``, index last
(see :mod:`crossscale_kit.data.parts`).
"""
from __future__ import annotations

import sys
from pathlib import Path

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402

from crossscale_kit.data import location, parts  # noqa: E402
from crossscale_kit.data.sources import SOURCES  # noqa: E402
from crossscale_kit.data.writer import check_tile_size  # noqa: E402
from crossscale_kit.cli import main_guard  # noqa: E402

SHARED_FLAGS = ("replace", "debug", "part")  # the tool's own flags, not the source's options

BANDS = ("blue", "green", "red", "nir")


def _sen2venus_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", type=Path, help="folder of v1 site folders (<site>/index.csv) and/or v2 <SITE>.zip files")
    p.add_argument("--out", required=True, help="output shard folder, or s3:// / gs:// URL")
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
    p.add_argument("--v2-mr-column", default="b2b3b4b8_10m")
    p.add_argument("--v2-hr-column", default="b2b3b4b8_05m")


def _geotiff_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hr", type=Path, required=True, help="high-resolution GeoTIFF")
    p.add_argument("--mr", type=Path, required=True, help="mid-resolution GeoTIFF (its grid and CRS are kept)")
    p.add_argument("--out", required=True, help="output shard folder, or s3:// / gs:// URL")
    p.add_argument("--tile", type=int, default=64, help="MR tile side in px (HR tiles are s times larger)")
    p.add_argument("--bands", nargs="+", default=list(BANDS), help="kit band names to write, in order")
    p.add_argument("--mr-bands", default=None, help="MR band mapping, e.g. blue=2,green=3,red=4,nir=8 or B2,B3,B4,B8")
    p.add_argument("--hr-bands", default=None, help="HR band mapping (same syntax)")
    p.add_argument("--max-nodata", type=float, default=0.0, help="largest nodata fraction of a kept tile pair")
    p.add_argument("--nodata", type=float, default=None, help="nodata value for both rasters (default: their own)")
    p.add_argument("--scale", type=int, default=None, help="force the integer GSD ratio s")
    p.add_argument("--ratio-tol", type=float, default=0.02, help="relative tolerance of s when the CRSs differ")
    p.add_argument("--resampling", default="bilinear", help="rasterio Resampling name used when HR must be warped")
    p.add_argument("--mr-gsd", type=float, default=None, help="MR GSD in metres (default: pixel size of a projected CRS)")
    p.add_argument("--reflectance-scale", type=float, default=None,
                   help="multiply values by this before int16 (default: 10000 for 0-1 float reflectance, else 1)")
    p.add_argument("--shard-size", type=int, default=256)
    p.add_argument("--prefix", default="pairs")


# sources whose options are typed (an ``Options`` dataclass); their flags are defined here, in the tool
ARGUMENTS = {"sen2venus": _sen2venus_arguments, "geotiff": _geotiff_arguments}


def _load(name: str):
    try:
        return importlib.import_module(SOURCES[name])
    except ModuleNotFoundError as e:
        if e.name and SOURCES[name].startswith(e.name):
            raise ValueError(f"make_shards: source {name!r} is not available in this checkout (module "
                             f"{SOURCES[name]} is missing); choose one of the others or update the kit.") from None
        raise ValueError(f"make_shards: source {name!r} needs the package {e.name!r}: pip install {e.name}") from None


def check_output(args: argparse.Namespace) -> None:
    """Refuse, before any work, a non-empty ``--out`` without ``--replace`` and a tile side the reader rejects."""
    if getattr(args, "tile", None) is not None:
        check_tile_size(args.tile)
    if not location.is_local(args.out):  # a URL: an existing set is one with a published index.json
        if not args.replace and location.exists(location.join(args.out, "index.json")):
            raise ValueError(f"--out {args.out} already holds a shard set (index.json); pass --replace to replace it "
                             f"once the new one is complete, or choose another --out.")
        return
    out = Path(location.local_path(args.out))
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder; choose a folder for the shard set.")
    if out.is_dir() and any(out.iterdir()) and not args.replace:
        entries = sorted(p.name for p in out.iterdir())
        raise ValueError(f"--out {out} is not empty ({len(entries)} entries: {', '.join(entries[:3])}"
                         f"{', ...' if len(entries) > 3 else ''}); pass --replace to replace that shard set once the "
                         f"new one is complete, or choose an empty --out.")


@main_guard
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="make_shards.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="source", metavar="{" + ",".join([*SOURCES, "merge"]) + "}")
    sub.required = True
    # Only the chosen source's module is imported (others may need optional packages).
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name in SOURCES:
        p = sub.add_parser(name, help=f"pairs from {name}")
        if name == chosen:
            (ARGUMENTS.get(name) or _load(name).add_arguments)(p)
            p.add_argument("--replace", action="store_true",
                           help="replace the shard set in a non-empty --out once the new one is complete")
            p.add_argument("--debug", "--traceback", action="store_true", help="show the traceback of an error")
            p.add_argument("--part", default=None, metavar="i/N",
                           help="write only part i of N (1-based) into OUT/part-<i>-of-<N>/; then run merge --out OUT")
    p = sub.add_parser("merge", help="publish the parts written with --part i/N in --out as one shard set")
    p.add_argument("--out", type=Path, required=True, help="the folder the parts were written to (--out of each part)")
    p.add_argument("--replace", action="store_true", help="replace a shard set already published in --out")
    p.add_argument("--debug", "--traceback", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    try:
        if args.source == "merge":
            index = parts.merge(args.out, replace=args.replace)
            print(json.dumps({"out": str(args.out), "parts": index["parts"]["count"], "written": index["num_samples"],
                              "shards": len(index["shards"]), "skipped": index.get("skipped", {})}, indent=2))
            return 0
        summary = _write(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"make_shards.py {args.source}: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    verify(args.out)
    bindings = _bindings(args.out)
    if bindings:
        print(bindings, file=sys.stderr)
    return 0


def _write(args: argparse.Namespace) -> dict:
    """Run the chosen source (one part of it with ``--part``) and return its summary."""
    module = _load(args.source)
    part = parts.parse_part(args.part) if args.part is not None else None
    recipe = {k: v for k, v in vars(args).items() if k not in SHARED_FLAGS}
    if part is not None:  # the part is a shard set of its own, in OUT/part-<i>-of-<N>
        args.out = parts.part_folder(args.out, part)
    args.part = part
    check_output(args)
    if hasattr(module, "Options"):
        options = {k: v for k, v in vars(args).items() if k != "source" and k not in SHARED_FLAGS}
        summary = module.run(module.Options(**options, part=part))
    else:
        summary = module.run(args)
    if part is not None:
        index = json.loads((Path(args.out) / "index.json").read_text())
        normalisation = {"reflectance_scale": summary.get("reflectance_scale"), "nodata": index.get("nodata"),
                         "max_nodata_fraction": index.get("max_nodata_fraction")}
        parts.record_part(args.out, part, args.source, recipe, normalisation)
        summary["part"] = f"{part[0]}/{part[1]}"
    return summary


def verify(out: str) -> dict:
    """Read the set just written back from ``out`` (a folder or URL) as training will: its index, every
    shard's size against it and the first pair. Raises DataError (exit 2) when the destination does not
    hold what was written."""
    from crossscale_kit.data.loader import PairedTiles

    index = json.loads(location.read_bytes(location.join(out, "index.json")))
    if not index.get("num_samples"):
        return {}
    bands = [str(b).lower() for b in index.get("bands", BANDS)]
    # read the set in the order it stores (a set written with --bands in another order is valid data; the
    # refusal of a mismatch with a recipe belongs to training, not to the writer's read-back)
    order = bands if bands != list(BANDS[: len(bands)]) else None
    return PairedTiles(out, bands=len(bands), normalize=False, band_order=order).check()


def _bindings(out: str) -> str | None:
    """The ready-to-paste normalisation bindings of the ``band_stats`` just written to ``out/index.json``."""
    from crossscale_kit.io import BANDS, normalization_bindings

    try:
        index = json.loads(location.read_bytes(location.join(out, "index.json")))
    except (OSError, ValueError):
        return None
    stats = index.get("band_stats") or {}
    return normalization_bindings(stats, list(stats) or BANDS)


if __name__ == "__main__":
    sys.exit(main())
