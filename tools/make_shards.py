"""Write paired MR/HR tiles as WebDataset shards.

    python tools/make_shards.py synthetic --out data/synthetic --num-pairs 1024
    python tools/make_shards.py sen2venus ...
    python tools/make_shards.py geotiff ...

Each sub-command is a module of ``kit.data.sources`` (imported only when chosen); it prints a summary.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402

from kit.data.sources import SOURCES  # noqa: E402


def _load(name: str):
    try:
        return importlib.import_module(SOURCES[name])
    except ModuleNotFoundError as e:
        if e.name and SOURCES[name].startswith(e.name):
            raise SystemExit(f"make_shards: source {name!r} is not available in this checkout (module "
                             f"{SOURCES[name]} is missing); choose one of the others or update the kit.") from None
        raise SystemExit(f"make_shards: source {name!r} needs the package {e.name!r}: pip install {e.name}") from None


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="make_shards.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="source", metavar="{" + ",".join(SOURCES) + "}")
    sub.required = True
    # Only the chosen source's module is imported (others may need optional packages).
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name in SOURCES:
        p = sub.add_parser(name, help=f"pairs from {name}")
        if name == chosen:
            _load(name).add_arguments(p)
    args = parser.parse_args(argv)
    summary = _load(args.source).run(args)
    print(json.dumps(summary, indent=2, default=str))
    return summary


if __name__ == "__main__":
    main()
