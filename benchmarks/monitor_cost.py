#!/usr/bin/env python
"""What the collapse monitors and the online probe cost, as a share of the training step.

    python benchmarks/monitor_cost.py [--recipe gin/latentmim_sa.gin] [--preset gin/presets/cpu_mini.gin]
                                      [--steps 200] [--repeats 2] [--csv benchmarks/results/monitor_cost.csv]

Runs the recipe in-process three ways, interleaved ``--repeats`` times on the same machine:
``bare`` (one log row at the end: the monitors read twice), ``monitors`` (the recipe's ``log_every``: the
collapse monitors read at every log step) and ``monitors+probe`` (also ``train.online_probe`` every
``--probe_every`` steps). Step time is the sum of the logged ``sec_per_step`` over the run (the probe's
own seconds are logged apart as ``probe/seconds`` and added for the last variant). Prints a table and
appends one CSV row per variant with the device, versions and git commit; compare the ratios, measured
in the same run, not the seconds.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
try:  # python -m benchmarks.x, or imported by the tests
    from ._common import RESULTS, append_csv, env_info, print_table
except ImportError:  # python benchmarks/x.py: this folder is sys.path[0]
    from _common import RESULTS, append_csv, env_info, print_table


def _one(recipe: str, preset: str, steps: int, bindings: list[str], workdir: Path) -> tuple[float, float]:
    """``(seconds of training steps, seconds of online probing)`` of one in-process run."""
    from crossscale_kit.train.config import parse
    from crossscale_kit.train.logger import MetricsLogger
    from crossscale_kit.train.loop import train

    parse([recipe, preset], [f"train.total_steps = {steps}", "train.tensorboard = False", *bindings])
    train(workdir=str(workdir), recipe=[recipe, preset])
    rows = MetricsLogger.read(workdir / "logs" / "metrics.jsonl")
    step_s, last = 0.0, 0
    for r in rows:
        step_s += r["sec_per_step"] * (r["step"] - last)
        last = r["step"]
    return step_s, sum(r.get("probe/seconds", 0.0) for r in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="gin/latentmim_sa.gin")
    ap.add_argument("--preset", default="gin/presets/cpu_mini.gin")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--log_every", type=int, default=10)
    ap.add_argument("--probe_every", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--csv", default=str(RESULTS / "monitor_cost.csv"))
    args = ap.parse_args(argv)
    if args.steps < 2 or args.repeats < 1 or args.log_every < 1 or args.probe_every < 1:
        print("error: --steps >= 2, --repeats >= 1, --log_every >= 1 and --probe_every >= 1 are needed.", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(1)
    variants = {
        "bare": [f"train.log_every = {args.steps}"],
        "monitors": [f"train.log_every = {args.log_every}"],
        "monitors+probe": [f"train.log_every = {args.log_every}", "train.online_probe = @OnlineProbe()",
                           f"OnlineProbe.every = {args.probe_every}"],
    }
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for name, bindings in variants.items():
                times[name].append(_one(args.recipe, args.preset, args.steps, bindings, Path(tmp) / f"{name}-{rep}"))
    env = env_info("cpu")
    base = statistics.median(s for s, _ in times["bare"])
    rows = []
    for name, ts in times.items():
        step_s = statistics.median(s for s, _ in ts)
        probe_s = statistics.median(p for _, p in ts)
        rows.append({"recipe": Path(args.recipe).stem, "preset": Path(args.preset).stem, "variant": name,
                     "steps": args.steps, "log_every": args.log_every,
                     "probe_every": args.probe_every if "probe" in name else "",
                     "ms_per_step": round(1000 * step_s / args.steps, 2),
                     "probe_ms_per_step": round(1000 * probe_s / args.steps, 2),
                     "cost_vs_bare": round((step_s + probe_s) / base, 4), **env})
    print_table(rows, ["recipe", "variant", "steps", "log_every", "probe_every", "ms_per_step", "probe_ms_per_step",
                       "cost_vs_bare", "device"])
    if args.csv:
        print(f"appended {len(rows)} rows to {append_csv(args.csv, rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
