#!/usr/bin/env python
"""Pretrain from gin recipes.

    python tools/train.py --gin gin/latentmim_sa.gin                       # the paper's recipe
    python tools/train.py --gin gin/latentmim_sa.gin --gin gin/presets/cpu_quick.gin   # ~5 min on 2 CPU cores
    python tools/train.py --gin gin/latentmim_sa.gin --gin_param 'train.batch_size = 64' --workdir runs/x
    python tools/train.py --gin gin/latentmim_sa.gin --workdir runs/x --resume       # continue runs/x
    python tools/train.py --gin gin/latentmim_sa.gin --workdir runs/x --resume auto  # resume or start (cluster jobs)
    torchrun --nproc_per_node=2 tools/train.py --gin ...                    # DDP (gloo on CPU)
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kit.train.config import parse, require_bindings  # noqa: E402
from tools._cli import main_guard, parser  # noqa: E402

log = logging.getLogger("train")


@main_guard
def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--gin", action="append", required=True, help="gin recipe file (repeatable; later files override)")
    ap.add_argument("--gin_param", action="append", default=[], help="a gin binding, e.g. 'train.seed = 1' (repeatable)")
    ap.add_argument("--workdir", default=None, help="run folder (default: runs/<recipe name>)")
    ap.add_argument("--resume", nargs="?", const="yes", choices=["yes", "auto"], default=None,
                    help="continue the run in --workdir from its newest checkpoint (an error if it has none); "
                         "'--resume auto': resume if the folder has a checkpoint, else start fresh (for requeued jobs)")
    ap.add_argument("--overwrite", action="store_true",
                    help="start fresh in a --workdir that holds a run, moving that run aside to WORKDIR.old-<time>")
    ap.add_argument("--max_steps", type=int, default=None, help="stop after N steps; schedules keep the recipe's length")
    ap.add_argument("--no-gin-imports", action="store_true",
                    help="refuse gin files with 'import' lines (gin files are code; use for .gin files from a "
                         "checkpoint or from someone else)")
    args = ap.parse_args(argv)
    if args.workdir and Path(args.workdir).exists() and not Path(args.workdir).is_dir():
        raise ValueError(f"--workdir {args.workdir} is a file; pass a folder for the run.")

    parse(args.gin, args.gin_param, allow_imports=not args.no_gin_imports)
    require_bindings("train", ("framework", "data", "lr"), args.gin)
    from kit.train.loop import train

    workdir = args.workdir or str(Path("runs") / Path(args.gin[0]).stem)
    resume = {None: False, "yes": True, "auto": "auto"}[args.resume]
    result = train(workdir=workdir, resume=resume, overwrite=args.overwrite, max_steps=args.max_steps, recipe=args.gin)
    if "export" in result:
        log.info("done: %d/%d steps; encoder exported to %s", result["steps"], result["total_steps"], result["export"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
