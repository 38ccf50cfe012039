"""Training items per second of the faithful probe's readers: the split held in memory against read per item.

    python benchmarks/probe_reader.py                     # 48 samples: m-cashew-plant (256 px, 4 x 4 tiles), MADOS
    python benchmarks/probe_reader.py --samples 96 --rounds 5 --datasets mados

The faithful probe (:mod:`crossscale_kit.eval.probe`) asks for every training item in a fresh random order each epoch.
Read per item, a GEO-Bench tile costs an HDF5 read of its whole sample (the reader keeps only the last
sample) and a MADOS crop five GeoTIFF reads; held (``preload``, :func:`crossscale_kit.eval.datasets.hold_split`), each
sample is read once and an item is a slice or a copy. Both variants read the same fakes, written in the
released formats (``tests/data/make_geobench.py``, ``tests/data/make_mados.py``), in the same shuffled order;
they alternate within each round and the table gives the medians. ``preload_s`` is the one-off cost of
holding the split. One CSV row per case goes to benchmarks/results/probe_reader.csv.
"""
from __future__ import annotations

import sys
from pathlib import Path

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

try:  # python -m benchmarks.x, or imported by the tests
    from ._common import RESULTS, append_csv, env_info, print_table
except ImportError:  # python benchmarks/x.py: this folder is sys.path[0]
    from _common import RESULTS, append_csv, env_info, print_table
from crossscale_kit.eval.geobench import GeoBenchSegmentation  # noqa: E402
from crossscale_kit.eval.mados import MADOS  # noqa: E402
from tests.data import make_geobench, make_mados  # noqa: E402

DATASETS = ("m-cashew-plant", "mados")


def fake(dataset: str, root: str, samples: int, size: int):
    """``reader()``: a fresh reader of the training split of a fake ``dataset`` with ``samples`` samples."""
    if dataset == "mados":
        make_mados.make(root, n_scenes=-(-2 * samples // 4), crops_per_scene=4, size=240)  # half of them train
        stats = MADOS(root, "train").mean.ravel(), MADOS(root, "train").std.ravel()
        return lambda: MADOS(root, "train", stats=stats)
    task = make_geobench.make(root, n_train=samples, n_valid=1, n_test=1, size=size)
    return lambda: GeoBenchSegmentation(task, "train")


def epoch_rate(ds, seed: int) -> float:
    """Items per second of one epoch of items in a shuffled order."""
    order = np.random.default_rng(seed).permutation(len(ds))
    t0 = time.perf_counter()
    for i in order:
        ds[int(i)]
    return len(order) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--samples", type=int, default=48, help="training samples (MADOS: about)")
    p.add_argument("--size", type=int, default=256, help="GEO-Bench sample side in px (the release's is 256)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    p.add_argument("--csv", type=Path, default=RESULTS / "probe_reader.csv", help="CSV the rows are appended to")
    p.add_argument("--no-csv", action="store_true")
    args = p.parse_args(argv)
    if args.samples < 1 or args.rounds < 1 or args.size < 16 or args.size % 16:
        p.error("--samples and --rounds must be >= 1 and --size a multiple of 16")
    env = env_info("cpu")
    rows = []
    for dataset in args.datasets:
        with tempfile.TemporaryDirectory(prefix="probe_reader_") as tmp:
            reader = fake(dataset, tmp, args.samples, args.size)
            rates: dict[str, list[float]] = {"per_item": [], "held": []}
            preload_s = []
            for rnd in range(args.rounds):
                for name in (("per_item", "held") if rnd % 2 == 0 else ("held", "per_item")):
                    ds = reader()
                    if name == "held":
                        t0 = time.perf_counter()
                        if not ds.preload():
                            raise SystemExit(f"{dataset}: the fake split did not fit the default preload budget")
                        preload_s.append(time.perf_counter() - t0)
                    rates[name].append(epoch_rate(ds, seed=rnd))
            items = len(reader())
        base = statistics.median(rates["per_item"])
        for name, rs in rates.items():
            rate = statistics.median(rs)
            rows.append({"dataset": dataset, "reader": name, "samples": args.samples, "items_per_epoch": items,
                         "items_per_s": round(rate, 1), "vs_per_item": round(rate / base, 2),
                         "preload_s": round(statistics.median(preload_s), 3) if name == "held" else "",
                         "rounds": len(rs), **env})
        print(f"{dataset} done")
    print()
    print_table(rows, ["dataset", "reader", "samples", "items_per_epoch", "items_per_s", "vs_per_item", "preload_s"])
    if not args.no_csv:
        print(f"appended {len(rows)} rows to {append_csv(args.csv, rows)}")
    return rows


if __name__ == "__main__":
    main()
