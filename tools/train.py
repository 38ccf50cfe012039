#!/usr/bin/env python
"""Pretrain from gin recipes.

    python tools/train.py --gin gin/latentmim_sa.gin                       # the paper's recipe
    python tools/train.py --gin gin/latentmim_sa.gin --gin gin/presets/cpu_quick.gin   # ~5 min on 2 CPU cores
    python tools/train.py --gin gin/latentmim_sa.gin --gin_param 'train.batch_size = 64' --workdir runs/x
    python tools/train.py --gin gin/latentmim_sa.gin --workdir runs/x --resume
    torchrun --nproc_per_node=2 tools/train.py --gin ...                    # DDP (gloo on CPU)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kit.train.config import GinConfigError, parse  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gin", action="append", required=True, help="gin recipe file (repeatable; later files override)")
    ap.add_argument("--gin_param", action="append", default=[], help="a gin binding, e.g. 'train.seed = 1' (repeatable)")
    ap.add_argument("--workdir", default=None, help="run folder (default: runs/<recipe name>)")
    ap.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --workdir")
    ap.add_argument("--max_steps", type=int, default=None, help="stop after N steps; schedules keep the recipe's length")
    ap.add_argument("--traceback", action="store_true", help="show the full Python traceback of a configuration error")
    args = ap.parse_args(argv)

    try:
        parse(args.gin, args.gin_param)
    except (GinConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from kit.train.loop import train
    from kit.train.preflight import ConfigError

    workdir = args.workdir or str(Path("runs") / Path(args.gin[0]).stem)
    try:
        result = train(workdir=workdir, resume=args.resume, max_steps=args.max_steps, recipe=args.gin)
    except (ConfigError, ValueError, TypeError) as exc:
        # configuration problems (bad sizes, bad data, bad bindings) are reported without a traceback;
        # their messages name the fix. --traceback shows where they came from.
        if args.traceback:
            raise
        print(f"error: {exc}\n(run with --traceback for the full trace)", file=sys.stderr)
        return 2
    if "export" in result:
        print(f"done: {result['steps']}/{result['total_steps']} steps; encoder exported to {result['export']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
