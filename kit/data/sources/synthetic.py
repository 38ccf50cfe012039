"""``make_shards.py synthetic``: write procedural paired tiles (see :mod:`crossscale_kit.data.synthetic`)."""
from __future__ import annotations

import argparse

from crossscale_kit.data.parts import part_range
from crossscale_kit.data.synthetic import SyntheticScenes, write_synthetic_shards


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``synthetic`` sub-command."""
    parser.add_argument("--out", required=True, help="output folder of pairs-*.tar shards and index.json")
    parser.add_argument("--num-pairs", type=int, default=1024, help="number of pairs (default 1024)")
    parser.add_argument("--mr-size", type=int, default=128, help="MR tile side in pixels (default 128)")
    parser.add_argument("--scale", type=int, default=2, help="integer HR/MR scale s (default 2)")
    parser.add_argument("--shard-size", type=int, default=256, help="pairs per shard (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the set (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> dict:
    """Write the shards; return ``{"out", "written", "skipped", "shards", "scale", "mr_size"}``."""
    config = SyntheticScenes(mr_size=args.mr_size, scale=args.scale, num_pairs=args.num_pairs, seed=args.seed,
                             shard_size=args.shard_size)
    indices = part_range(args.num_pairs, getattr(args, "part", None), "pairs")  # --part i/N: a block of indices
    index = write_synthetic_shards(config, args.out, shard_size=args.shard_size, progress=not args.no_progress,
                                   indices=indices)
    return {
        "out": str(args.out),
        "written": index["num_samples"],
        "skipped": index.get("skipped", {}),
        "shards": len(index["shards"]),
        "scale": index["scale"],
        "mr_size": args.mr_size,
    }
