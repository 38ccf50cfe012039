#!/usr/bin/env python
"""Export the student encoder of a training checkpoint as a timm state dict plus meta.json.

    python tools/export.py --workdir runs/latentmim_sa                 # newest checkpoint -> WORKDIR/export
    python tools/export.py --checkpoint runs/x/checkpoints/ckpt-00010000.pt --out exports/x-10k

Training writes WORKDIR/export at its end; this tool exports any intermediate checkpoint (to probe an
encoder during a run, or the last checkpoint of a run that was stopped).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from kit.encoders.export import export_from_checkpoint  # noqa: E402
from kit.train.checkpoint import load_latest  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--workdir", help="run folder: its newest readable checkpoint is exported")
    src.add_argument("--checkpoint", help="a ckpt-*.pt file")
    ap.add_argument("--out", help="export folder (default: WORKDIR/export, or <checkpoint stem>-export)")
    args = ap.parse_args(argv)
    if args.workdir:
        loaded = load_latest(args.workdir)
        if loaded is None:
            print(f"error: no checkpoint under {Path(args.workdir) / 'checkpoints'}; train first.", file=sys.stderr)
            return 2
        state, path = loaded
        out = Path(args.out or Path(args.workdir) / "export")
    else:
        path = Path(args.checkpoint)
        if not path.is_file():
            print(f"error: checkpoint {path} not found.", file=sys.stderr)
            return 2
        state = torch.load(path, map_location="cpu", weights_only=False)
        out = Path(args.out or path.with_name(f"{path.stem}-export"))
    try:
        export_from_checkpoint(state, out)
    except ValueError as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 2
    print(f"exported step {state['step']} of {path} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
