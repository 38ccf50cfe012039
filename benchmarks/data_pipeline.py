"""Throughput of the paired-tile reader: shard read + decode + validate + crop + normalise + batch.

    python benchmarks/data_pipeline.py                      # MR 128 / HR 256 int16 -> 224 / 448, workers 0,1,2,4
    python benchmarks/data_pipeline.py --workers 0 2 --batches 20 --mr-size 128 --crop 224 --jitter none

Two crop pipelines by default: plain (I-JEPA recipes: crop resized to 224 / 448) and LatentMIM's patch
jitter (crop resized to 280 / 560, 16 px patches cut from 20 px cells, also giving 224 / 448).

Shards are the synthetic set (written once to the cache). Prints a table of pairs/s in total and per
worker (num_workers 0 = in the calling process, one torch thread) and appends rows to
benchmarks/results/data_pipeline.csv. Worker counts above the CPU count are skipped. With workers 0
the row also gives pairs per CPU-second of the process: the per-core rate, robust to a busy machine.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from benchmarks._common import RESULTS, append_csv, env_info, print_table  # noqa: E402
from kit.data.loader import PairedTiles  # noqa: E402
from kit.data.synthetic import SyntheticScenes, ensure_synthetic_cache  # noqa: E402
from kit.data.transforms import PairedRandomResizedCrop  # noqa: E402


def measure(root: Path, *, workers: int, batch_size: int, batches: int, crop: int, warmup: int,
            jitter: str = "none") -> dict:
    """Time ``batches`` batches after ``warmup`` (which absorbs worker start-up)."""
    if jitter == "none":
        transform = PairedRandomResizedCrop(size=crop)
    else:
        cell, patch = (int(v) for v in jitter.split("/"))
        transform = PairedRandomResizedCrop(size=crop * cell // patch, patch_jitter=(cell, patch))
    tiles = PairedTiles(str(root), batch_size=batch_size, num_workers=workers, shuffle_buffer=64,
                        resampled=True, crop=transform)
    stream = tiles.stream(seed=0)
    it = iter(stream)
    for _ in range(warmup):
        next(it)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(batches):
        b = next(it)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    stream.close()
    pairs = batches * batch_size
    return {
        "jitter": jitter,
        "workers": workers,
        "mr_px": tiles.check()["mr_shape"][-1],
        "hr_px": tiles.check()["hr_shape"][-1],
        "out_mr": b["mr"].shape[-1],
        "out_hr": b["hr"].shape[-1],
        "batch": batch_size,
        "pairs": pairs,
        "seconds": round(dt, 3),
        "pairs_per_s": round(pairs / dt, 1),
        "pairs_per_s_per_worker": round(pairs / dt / max(1, workers), 1),
        # CPU time of this process: with workers 0 the whole pipeline, so pairs per CPU-second is the
        # per-core rate independent of other load on the machine; with workers it is the consumer's cost.
        "main_cpu_s": round(cpu, 3),
        "pairs_per_cpu_s": round(pairs / cpu, 1) if workers == 0 and cpu > 0 else "",
    }


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4])
    p.add_argument("--mr-size", type=int, default=128)
    p.add_argument("--crop", type=int, default=224, help="MR output side; HR is s times it")
    p.add_argument("--jitter", nargs="+", default=["none", "20/16"],
                   help="'none' and/or CELL/PATCH patch jitter (LatentMIM: 20/16)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=16)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--num-pairs", type=int, default=128, help="pairs in the synthetic set (read repeatedly)")
    p.add_argument("--no-csv", action="store_true")
    args = p.parse_args(argv)

    config = SyntheticScenes(mr_size=args.mr_size, scale=2, num_pairs=args.num_pairs, seed=0, shard_size=8)
    root = ensure_synthetic_cache(config)
    cpus = os.cpu_count() or 1
    torch.set_num_threads(1)  # the in-process row measures one core, like one worker
    rows = []
    for jitter in args.jitter:
        for w in args.workers:
            if w > cpus:
                print(f"skipping num_workers={w}: only {cpus} CPUs")
                continue
            rows.append(measure(root, workers=w, batch_size=args.batch_size, batches=args.batches, crop=args.crop,
                                warmup=args.warmup, jitter=jitter))
            print_table(rows[-1:])
    env = env_info("cpu")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = [{**r, **env, "cpus": cpus, "load_avg_1m": round(load, 2)} for r in rows]
    print()
    print_table(rows, ["jitter", "workers", "mr_px", "hr_px", "out_mr", "out_hr", "batch", "pairs_per_s",
                       "pairs_per_s_per_worker", "pairs_per_cpu_s", "main_cpu_s", "cpus",
                       "load_avg_1m"])
    if not args.no_csv:
        path = append_csv(RESULTS / "data_pipeline.csv", rows)
        print(f"appended {len(rows)} rows to {path}")
    return rows


if __name__ == "__main__":
    main()
