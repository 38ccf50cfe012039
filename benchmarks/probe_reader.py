"""Training tiles per second of the faithful probe's GEO-Bench reader: held in memory against read per item.

    python benchmarks/probe_reader.py                     # 48 samples of 256 px, 4 x 4 tiles, 3 rounds
    python benchmarks/probe_reader.py --samples 96 --rounds 5

The faithful probe (:mod:`kit.eval.probe`) asks for the 16 tiles of every training sample in a fresh random
order each epoch. Read per item, each tile costs an HDF5 read of its whole sample (the reader keeps only the
last sample); held (:meth:`GeoBenchSegmentation.preload`), each sample is read once and a tile is a slice.
Both variants read the same fake task, written in the released v1.0 format (``tests/data/make_geobench.py``),
in the same shuffled order; they alternate within each round and the table gives the medians. ``preload_s``
is the one-off cost of holding the split. One CSV row per case goes to benchmarks/results/probe_reader.csv.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks._common import RESULTS, append_csv, env_info, print_table  # noqa: E402
from kit.eval.geobench import GeoBenchSegmentation  # noqa: E402
from tests.data.make_geobench import make  # noqa: E402


def epoch_rate(ds: GeoBenchSegmentation, seed: int) -> float:
    """Tiles per second of one epoch of items in a shuffled order."""
    order = np.random.default_rng(seed).permutation(len(ds))
    t0 = time.perf_counter()
    for i in order:
        ds[int(i)]
    return len(order) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=48, help="training samples of the fake m-cashew-plant task")
    p.add_argument("--size", type=int, default=256, help="sample side in px (the release's is 256)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    p.add_argument("--csv", type=Path, default=RESULTS / "probe_reader.csv", help="CSV the rows are appended to")
    p.add_argument("--no-csv", action="store_true")
    args = p.parse_args(argv)
    if args.samples < 1 or args.rounds < 1 or args.size < 16 or args.size % 16:
        p.error("--samples and --rounds must be >= 1 and --size a multiple of 16")
    with tempfile.TemporaryDirectory(prefix="probe_reader_") as tmp:
        root = make(tmp, n_train=args.samples, n_valid=1, n_test=1, size=args.size)
        rates: dict[str, list[float]] = {"per_item": [], "held": []}
        preload_s = []
        for rnd in range(args.rounds):
            for name in (("per_item", "held") if rnd % 2 == 0 else ("held", "per_item")):
                ds = GeoBenchSegmentation(root, "train")
                if name == "held":
                    t0 = time.perf_counter()
                    assert ds.preload()
                    preload_s.append(time.perf_counter() - t0)
                rates[name].append(epoch_rate(ds, seed=rnd))
            print(f"round {rnd + 1}/{args.rounds} done")
        tiles = len(GeoBenchSegmentation(root, "train"))
    env = env_info("cpu")
    base = statistics.median(rates["per_item"])
    rows = []
    for name, rs in rates.items():
        rate = statistics.median(rs)
        rows.append({"reader": name, "samples": args.samples, "size": args.size, "tiles_per_epoch": tiles,
                     "tiles_per_s": round(rate, 1), "vs_per_item": round(rate / base, 2),
                     "preload_s": round(statistics.median(preload_s), 3) if name == "held" else "",
                     "rounds": len(rs), **env})
    print()
    print_table(rows, ["reader", "samples", "tiles_per_epoch", "tiles_per_s", "vs_per_item", "preload_s"])
    if not args.no_csv:
        print(f"appended {len(rows)} rows to {append_csv(args.csv, rows)}")
    return rows


if __name__ == "__main__":
    main()
