#!/usr/bin/env python
"""Linear-probe segmentation of frozen exported encoders, by default as the paper's authors ran it.

Example::

    python tools/probe.py --encoder runs/ijepa_sa/export --dataset m-cashew-plant \
        --root data/geobench/segmentation_v1.0/m-cashew-plant --out results/probe

Defaults (the authors' protocol): GEO-Bench tiles cut 4 x 4, class 0 scored (ignore index -1), a fresh
random-resized crop of every training tile each epoch (``--mode faithful``), 224 px, AdamW lr 1e-3 constant,
wd 0, batch 64, 100 epochs, best-val head on test, torchmetrics' Jaccard index, 3 seeds. ``--mode cached``
(training features computed once) is the fast option; ``--schedule cosine`` and ``--ignore-class0`` too.

Writes ``OUT/<name>__<dataset>__<mode>.json`` ({"rows": [...], "summary": {...}}) and ``.csv`` (one row per
seed: provenance, mode, protocol and departures, val/test mIoU in [0, 1], per-class IoU), both atomically.
Val/test features are cached under ``--cache-dir`` keyed by encoder hash + dataset + split + options.
Bad input (wrong folder, class count that disagrees with --dataset) exits 2 with one message.
"""
from __future__ import annotations

import sys
from pathlib import Path

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402

from crossscale_kit.cli import main_guard, parser  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    from crossscale_kit.eval.datasets import DATASETS

    p = parser(__doc__)
    p.add_argument("--encoder", "--encoders", dest="encoder", nargs="+", required=True, help="export folder(s) with encoder.safetensors + meta.json")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--root", required=True, help="GEO-Bench task folder (or segmentation_v1.0/) or the MADOS folder")
    p.add_argument("--mode", choices=("faithful", "cached"), default="faithful",
                   help="faithful: a fresh random-resized crop of every training tile each epoch (the authors'); "
                        "cached: training features computed once, no augmentation (fast, not the paper's protocol)")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0..n-1)")
    p.add_argument("--seed-offset", type=int, default=0, help="first seed")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--schedule", choices=("constant", "cosine"), default="constant",
                   help="constant lr (the authors') or linear warm-up then cosine to 0")
    p.add_argument("--warmup-epochs", type=int, default=10, help="warm-up of the cosine schedule")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--img-size", type=int, default=224, help="model input side; 0 keeps the native size (cached mode)")
    p.add_argument("--ignore-class0", action="store_true", help="GEO-Bench: ignore class 0 (no data) instead of scoring it")
    p.add_argument("--tiles", type=int, default=None, help="GEO-Bench tiles per side (default 4, the authors')")
    p.add_argument("--partition", default=None, help="GEO-Bench partition file stem (default 'default')")
    p.add_argument("--mados-nan", choices=("ignore", "fill"), default=None,
                   help="MADOS pixels with a NaN band: ignore their label (the authors', default) or fill 0 and keep it "
                        "(the dataset's official loader)")
    p.add_argument("--mados-nir-nm", type=float, default=None,
                   help="MADOS wavelength fed as NIR: 833 (B8, the kit's default) or 783 (B7, what the authors' "
                        "'NIR' index 6 of their 11-band stack was)")
    p.add_argument("--label", default=None, help="row label for the report (default: the recipe in meta.json)")
    p.add_argument("--out", default="results/probe", help="output folder for JSON/CSV rows")
    p.add_argument("--cache-dir", default=None, help="feature cache (default OUT/feature_cache)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=0, help="loader workers of the faithful mode's training tiles")
    p.add_argument("--preload-gb", type=float, default=8.0,
                   help="faithful mode: hold the training split in memory when it takes at most this many GiB, so "
                        "each sample is read once, not once per tile per epoch (0: read from disk every time)")
    p.add_argument("--skip-corrupt", action="store_true", help="count and drop unreadable samples instead of stopping")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    """Numbers, files and folders of the command line, checked before any encoder or dataset is read."""
    lows = {"seeds": 1, "seed_offset": 0, "epochs": 1, "warmup_epochs": 0, "batch_size": 1, "img_size": 0,
            "workers": 0, "tiles": 1}
    for name, low in lows.items():
        v = getattr(args, name)
        if v is not None and v < low:
            raise ValueError(f"--{name.replace('_', '-')} {v}: must be an integer >= {low}.")
    for name in ("lr", "preload_gb", "weight_decay"):
        v = getattr(args, name)
        if not v >= 0 or (name == "lr" and v == 0):
            raise ValueError(f"--{name.replace('_', '-')} {v}: must be a number {'>' if name == 'lr' else '>='} 0.")
    for e in args.encoder:
        if Path(e).is_file():
            raise ValueError(f"--encoder {e} is a file; pass the export folder that holds encoder.safetensors and "
                             "meta.json (e.g. runs/NAME/export).")
    if Path(args.root).exists() and not Path(args.root).is_dir():
        raise ValueError(f"--root {args.root} is a file; pass the dataset's folder.")
    for name in ("out", "cache_dir"):
        v = getattr(args, name)
        if v and Path(v).exists() and not Path(v).is_dir():
            raise ValueError(f"--{name.replace('_', '-')} {v} is a file; pass a folder for the results.")


def _name(export: str, label: str | None, recipe: str | None) -> str:
    raw = label or (Path(recipe).stem if recipe else Path(export).resolve().name)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", raw)


def reader_kwargs(args: argparse.Namespace) -> dict:
    """The dataset reader's options this command sets (only those given)."""
    if args.dataset == "mados":
        if args.tiles is not None or args.partition is not None or args.ignore_class0:
            raise ValueError("--tiles, --partition and --ignore-class0 apply to the GEO-Bench tasks, not to MADOS.")
        kw = {"nan_mode": args.mados_nan, "nir_nm": args.mados_nir_nm}
        return {k: v for k, v in kw.items() if v is not None}
    if args.mados_nan or args.mados_nir_nm:
        raise ValueError("--mados-nan and --mados-nir-nm apply to MADOS only.")
    kw = {"tiles": args.tiles, "partition": args.partition, "ignore_class0": args.ignore_class0 or None}
    return {k: v for k, v in kw.items() if v is not None}


@main_guard
def main(argv: list[str]) -> int:
    run(argv)
    return 0


def run(argv: list[str] | argparse.Namespace | None = None) -> list[dict]:
    """Probe every encoder; return their summaries. User errors raise (``main`` exits 2 on them)."""
    args = argv if isinstance(argv, argparse.Namespace) else parse_args(argv)
    from crossscale_kit.eval.probe import ProbeConfig
    from crossscale_kit.eval.rows import write_csv_atomic, write_json
    from crossscale_kit.eval.runner import run_probe

    cfg = ProbeConfig(
        epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay, batch_size=args.batch_size,
        img_size=args.img_size or None, seeds=list(range(args.seed_offset, args.seed_offset + args.seeds)),
        mode=args.mode, schedule=args.schedule, warmup_epochs=min(args.warmup_epochs, args.epochs),
        device=args.device, num_workers=args.workers, progress=not args.no_progress, preload_gb=args.preload_gb,
    )
    out = Path(args.out)
    cache = Path(args.cache_dir) if args.cache_dir else out / "feature_cache"
    kwargs = reader_kwargs(args)
    summaries = []
    for export in args.encoder:
        rows, summary = run_probe(export, args.dataset, args.root, cfg=cfg, cache_dir=cache, label=args.label,
                                  skip_corrupt=args.skip_corrupt, dataset_kwargs=kwargs)
        stem = f"{_name(export, args.label, summary['recipe'])}__{args.dataset}__{args.mode}"
        write_json(out / f"{stem}.json", {"rows": rows, "summary": summary})
        write_csv_atomic(out / f"{stem}.csv", [{k: v for k, v in r.items() if k not in ("per_class_iou", "class_names")}
                                              | {f"iou_{c}": v for c, v in enumerate(r["per_class_iou"])} for r in rows])
        print(json.dumps({k: summary[k] for k in ("encoder", "recipe", "label", "dataset", "mode", "protocol",
                                                  "test_miou_mean", "test_miou_std", "val_miou_mean", "skipped")}))
        summaries.append(summary)
    return summaries


if __name__ == "__main__":
    sys.exit(main())
