#!/usr/bin/env python
"""Pretrain from gin recipes.

    python tools/train.py --gin gin/latentmim_sa.gin                       # the paper's recipe
    python tools/train.py --gin gin/latentmim_sa.gin --gin gin/presets/cpu_quick.gin   # about 12 min on 2 CPU cores
    python tools/train.py --gin gin/latentmim_sa.gin --gin_param 'train.batch_size = 64' --workdir runs/x
    python tools/train.py --gin gin/latentmim_sa.gin --workdir runs/x --resume       # continue runs/x
    python tools/train.py --gin gin/latentmim_sa.gin --workdir runs/x --resume auto  # resume or start (cluster jobs)
    torchrun --nproc_per_node=2 tools/train.py --gin ...                    # DDP (gloo on CPU)
    python tools/train.py --gin gin/latentmim_sa.gin --print_config      # the bindings the run would use; no run
    python tools/train.py --list_configurables                           # every component a gin file may bind
"""
from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

from crossscale_kit.train.config import parse, require_bindings  # noqa: E402
from crossscale_kit.cli import main_guard, parser  # noqa: E402

log = logging.getLogger("train")


@main_guard
def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--gin", action="append", default=[], help="gin recipe file (repeatable; later files override)")
    ap.add_argument("--gin_param", action="append", default=[], help="a gin binding, e.g. 'train.seed = 1' (repeatable)")
    ap.add_argument("--workdir", default=None, help="run folder (default: runs/<recipe name>)")
    ap.add_argument("--resume", nargs="?", const="yes", choices=["yes", "auto"], default=None,
                    help="continue the run in --workdir from its newest checkpoint (an error if it has none); "
                         "'--resume auto': resume if the folder has a checkpoint, else start fresh (for requeued jobs)")
    ap.add_argument("--overwrite", action="store_true",
                    help="start fresh in a --workdir that holds a run, moving that run aside to WORKDIR.old-<time>")
    ap.add_argument("--max_steps", type=int, default=None, help="stop after N steps; schedules keep the recipe's length")
    ap.add_argument("--print_config", action="store_true",
                    help="print every binding the recipe files and --gin_param set (after includes), then exit")
    ap.add_argument("--list_configurables", action="store_true",
                    help="print every configurable a gin file may bind, with its parameters, then exit")
    ap.add_argument("--no-gin-imports", action="store_true",
                    help="refuse gin files with 'import' lines (gin files are code; use for .gin files from a "
                         "checkpoint or from someone else)")
    args = ap.parse_args(argv)
    if args.workdir and Path(args.workdir).exists() and not Path(args.workdir).is_dir():
        raise ValueError(f"--workdir {args.workdir} is a file; pass a folder for the run.")

    if args.list_configurables:
        print(list_configurables())
        return 0
    if not args.gin:
        ap.error("--gin RECIPE is required (e.g. --gin gin/latentmim_sa.gin); --list_configurables needs none")
    parse(args.gin, args.gin_param, allow_imports=not args.no_gin_imports)
    require_bindings("train", ("framework", "data", "lr"), args.gin)
    note = cpu_warning()
    if note:
        warnings.warn(note, UserWarning, stacklevel=1)
    if args.print_config:
        import gin

        print(gin.config_str())
        return 0
    from crossscale_kit.train.loop import train

    workdir = args.workdir or str(Path("runs") / Path(args.gin[0]).stem)
    resume = {None: False, "yes": True, "auto": "auto"}[args.resume]
    result = train(workdir=workdir, resume=resume, overwrite=args.overwrite, max_steps=args.max_steps, recipe=args.gin)
    if "export" in result:
        log.info("done: %d/%d steps; encoder exported to %s", result["steps"], result["total_steps"], result["export"])
    return 0


def list_configurables() -> str:
    """``Name(param, ...)`` for every configurable the kit registers, one a line, sorted."""
    from crossscale_kit.train.config import _parameters_of, register_all

    return "\n".join(f"{name}({', '.join(_parameters_of(name))})" for name in register_all())


#: an effective batch (images per optimizer step) above this on a CPU is a GPU recipe started by mistake
CPU_BATCH_LIMIT = 64


def cpu_warning() -> str | None:
    """A warning when the parsed recipe is a full-size (GPU) one and this run would go to the CPU, else None."""
    import gin
    import torch

    def q(name, default):
        try:
            return gin.query_parameter(name)
        except ValueError:
            return default

    device = str(q("train.device", "auto"))
    on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    try:
        images = int(q("train.batch_size", 0)) * int(q("train.accum_steps", 1) or 1)
    except (TypeError, ValueError):  # a wrong-typed binding: the run's own checks report it with its name
        return None
    if not on_cpu or images <= CPU_BATCH_LIMIT:
        return None
    return (f"this recipe is a full-size GPU run ({images} images per optimizer step) and no GPU is in use: one step "
            "takes minutes on a CPU. For a CPU run add --gin gin/presets/cpu_quick.gin after the recipe "
            "(about 12 min on 2 cores); --max_steps N stops early for a smoke test.")


if __name__ == "__main__":
    sys.exit(main())
