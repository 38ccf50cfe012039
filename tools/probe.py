#!/usr/bin/env python
"""Linear-probe segmentation of frozen exported encoders (paper protocol; mean and std over seeds).

Example::

    python tools/probe.py --encoder runs/ijepa_sa/export --dataset m-cashew-plant \
        --root data/geobench/segmentation_v1.0/m-cashew-plant --seeds 3 --out results/probe

Writes ``OUT/<name>__<dataset>.json`` ({"rows": [...], "summary": {...}}) and ``.csv`` (one row per seed:
encoder, recipe, label, dataset, seed, val/test mIoU in [0, 1], per-class IoU), both atomically.
Features of the frozen encoder are cached under ``--cache-dir`` keyed by encoder hash + dataset + split.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    from kit.eval.datasets import DATASETS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", "--encoders", dest="encoder", nargs="+", required=True, help="export folder(s) with encoder.safetensors + meta.json")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--root", required=True, help="dataset folder (GEO-Bench task folder or its parent; MADOS folder)")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0..n-1)")
    p.add_argument("--seed-offset", type=int, default=0, help="first seed")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--warmup-epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--img-size", type=int, default=224, help="model input side; 0 keeps the native size")
    p.add_argument("--label", default=None, help="row label for the report (default: the recipe in meta.json)")
    p.add_argument("--out", default="results/probe", help="output folder for JSON/CSV rows")
    p.add_argument("--cache-dir", default=None, help="feature cache (default OUT/feature_cache)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--skip-corrupt", action="store_true", help="count and drop unreadable samples instead of stopping")
    p.add_argument("--tiles", type=int, default=None, help="GEO-Bench tiles per side (default 4 for cashew, 1 else)")
    p.add_argument("--partition", default=None, help="GEO-Bench partition file stem (default 'default')")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def _name(export: str, label: str | None, recipe: str | None) -> str:
    raw = label or (Path(recipe).stem if recipe else Path(export).resolve().name)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", raw)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    from kit.eval.probe import ProbeConfig, run_probe
    from kit.eval.rows import write_csv_atomic, write_json

    cfg = ProbeConfig(
        epochs=args.epochs, warmup_epochs=min(args.warmup_epochs, args.epochs), lr=args.lr,
        weight_decay=args.weight_decay, batch_size=args.batch_size, img_size=args.img_size or None,
        seeds=list(range(args.seed_offset, args.seed_offset + args.seeds)), device=args.device,
        progress=not args.no_progress,
    )
    out = Path(args.out)
    cache = Path(args.cache_dir) if args.cache_dir else out / "feature_cache"
    kwargs = {}
    if args.dataset != "mados":
        if args.tiles is not None:
            kwargs["tiles"] = args.tiles
        if args.partition is not None:
            kwargs["partition"] = args.partition
    summaries = []
    for export in args.encoder:
        rows, summary = run_probe(export, args.dataset, args.root, cfg=cfg, cache_dir=cache, label=args.label,
                                  skip_corrupt=args.skip_corrupt, dataset_kwargs=kwargs)
        stem = f"{_name(export, args.label, summary['recipe'])}__{args.dataset}"
        write_json(out / f"{stem}.json", {"rows": rows, "summary": summary})
        write_csv_atomic(out / f"{stem}.csv", [{k: v for k, v in r.items() if k not in ("per_class_iou", "class_names")}
                                              | {f"iou_{c}": v for c, v in enumerate(r["per_class_iou"])} for r in rows])
        print(json.dumps({k: summary[k] for k in ("encoder", "recipe", "label", "dataset", "test_miou_mean",
                                                  "test_miou_std", "val_miou_mean", "skipped")}))
        summaries.append(summary)
    return summaries


if __name__ == "__main__":
    main()
