#!/usr/bin/env python
"""Export the student encoder of a training checkpoint as a timm state dict plus meta.json.

    python tools/export.py --workdir runs/latentmim_sa                 # newest checkpoint -> WORKDIR/export
    python tools/export.py --checkpoint runs/x/checkpoints/ckpt-00010000.pt --out exports/x-10k

Training writes WORKDIR/export at its end; this tool exports any intermediate checkpoint (to probe an
encoder during a run, or the last checkpoint of a run that was stopped). Checkpoints are loaded with
``weights_only=True``: a file holding anything but tensors, numbers and strings is refused, never run.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from crossscale_kit.encoders.export import export_from_checkpoint  # noqa: E402
from crossscale_kit.train.checkpoint import load_checkpoint, load_newest  # noqa: E402
from crossscale_kit.cli import main_guard, parser  # noqa: E402

log = logging.getLogger("export")


@main_guard
def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--workdir", help="run folder: its newest readable checkpoint is exported")
    src.add_argument("--checkpoint", help="a ckpt-*.pt file")
    ap.add_argument("--out", help="export folder (default: WORKDIR/export, or <checkpoint stem>-export)")
    args = ap.parse_args(argv)
    if args.checkpoint and Path(args.checkpoint).is_dir():
        raise ValueError(f"--checkpoint {args.checkpoint} is a folder; pass a ckpt-*.pt file, or the run folder "
                         "with --workdir.")
    if args.workdir and Path(args.workdir).exists() and not Path(args.workdir).is_dir():
        raise ValueError(f"--workdir {args.workdir} is a file; pass the run folder (it holds checkpoints/), or the "
                         "file with --checkpoint.")
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a file; pass a folder for encoder.safetensors and meta.json.")
    if args.workdir:
        state, path = load_newest(args.workdir)
        out = Path(args.out or Path(args.workdir) / "export")
    else:
        path = Path(args.checkpoint)
        state = load_checkpoint(path)
        out = Path(args.out or path.with_name(f"{path.stem}-export"))
    try:
        export_from_checkpoint(state, out)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    log.info("exported step %d of %s to %s", state["step"], path, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
