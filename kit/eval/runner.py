"""Probe one exported encoder on one benchmark over seeds, with rows that say where they come from.

Every row carries its provenance (encoder folder and hash, recipe, presets, pretraining steps, pretraining
data root when the export records it, probe mode and settings, seeds) and ``protocol``: ``"paper"`` when
both the probe and the encoder follow the paper's protocol, else ``"custom"`` with the list of
``departures`` (e.g. ``mode='cached'``, ``epochs=5``, a ``cpu_quick`` preset, 300 of 100000 steps).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from crossscale_kit.eval.probe import CachedTrain, CroppedTrain, ProbeConfig, config_dict, train_probe
from crossscale_kit.io import write_json_atomic

PAPER_SEEDS = 3
PAPER_READER = {"tiles": 4, "ignore_class0": False, "partition": "default", "nan_mode": "ignore"}


def provenance(meta: dict, export_dir: str | os.PathLike) -> dict:
    """What produced an exported encoder, from its ``meta.json``."""
    files = list(meta.get("recipe") or [])
    presets = [f for f in files if "presets/" in str(f)]
    recipes = [f for f in files if f not in presets]
    return {
        "encoder": str(export_dir),
        "recipe": recipes[0] if recipes else None,
        "presets": [Path(p).stem for p in presets],
        "steps": meta.get("step"),
        "total_steps": meta.get("total_steps"),
        "pretrain_data": meta.get("data_root"),
        # the shard set's identity (index content hash, stored band order) and the band order fed to the encoder
        "pretrain_data_identity": meta.get("data"),
        "bands": list(meta.get("bands") or []),
        "architecture": meta.get("architecture"),
    }


def encoder_departures(prov: dict) -> list[str]:
    """How the encoder's pretraining departs from the paper's (presets, a run stopped early)."""
    out = [f"preset {p}" for p in prov["presets"]]
    if prov["steps"] is not None and prov["total_steps"] and prov["steps"] < prov["total_steps"]:
        out.append(f"encoder trained {prov['steps']} of {prov['total_steps']} steps")
    return out


def run_probe(
    export_dir: str | os.PathLike,
    dataset: str,
    root: str | os.PathLike,
    *,
    cfg: ProbeConfig,
    cache_dir: str | os.PathLike,
    label: str | None = None,
    skip_corrupt: bool = False,
    dataset_kwargs: dict | None = None,
) -> tuple[list[dict], dict]:
    """Probe one exported encoder on one dataset over ``cfg.seeds``.

    Returns:
        ``(rows, summary)``: one row per seed (provenance, seed, val/test mIoU in [0, 1], per-class IoU,
        mode, settings, protocol and departures) and ``{"test_miou_mean", "test_miou_std", ...}``.
    """
    from crossscale_kit.encoders.export import load_exported_encoder
    from crossscale_kit.eval.datasets import build_dataset
    from crossscale_kit.eval.features import cached_features, encoder_hash, patch_features
    from crossscale_kit.io import BANDS

    model, meta = load_exported_encoder(export_dir, device=cfg.device)
    for p in model.parameters():
        p.requires_grad_(False)
    bands = list(meta.get("bands") or BANDS)
    ehash = encoder_hash(export_dir)
    reader = dict(dataset_kwargs or {})
    readers, cached = {}, {}
    for split in ("train", "val", "test"):
        readers[split] = build_dataset(dataset, root, split, bands=bands, skip_corrupt=skip_corrupt, **reader)
    for split in ("val", "test") + (("train",) if cfg.mode == "cached" else ()):
        key = {"encoder": ehash, "dataset": dataset, "split": split, "img_size": cfg.img_size, "bands": bands,
               "root": str(Path(root).resolve()), "reader": {k: str(v) for k, v in reader.items()},
               "skip_corrupt": skip_corrupt, "positions": "sincos-per-grid"}
        feats, labels, grid = cached_features(model, readers[split], cache_dir, key=key, img_size=cfg.img_size,
                                              batch_size=cfg.batch_size, device=cfg.device, progress=cfg.progress)
        cached[split] = (feats, labels, grid)
    grid = cached["val"][2]
    if cfg.mode == "cached":
        train = CachedTrain(*cached["train"][:2], cached["train"][2], cfg.device)
    else:
        train = CroppedTrain(lambda x: patch_features(model, x, None), readers["train"], cfg, int(cached["val"][0].shape[-1]))
    ds = readers["train"]
    prov = provenance(meta, export_dir)
    departures = cfg.departures() + encoder_departures(prov)
    departures += [f"{k}={v!r} (paper {PAPER_READER[k]!r})" for k, v in reader.items() if k in PAPER_READER and v != PAPER_READER[k]]
    if dataset == "mados" and reader.get("nir_nm", 833) != 783:
        departures.append(f"MADOS NIR {reader.get('nir_nm', 833):g} nm (the authors fed B7, 783 nm: --mados-nir-nm 783)")
    if len(cfg.seeds) != PAPER_SEEDS:
        departures.append(f"{len(cfg.seeds)} seeds (paper {PAPER_SEEDS})")
    base = {**prov, "encoder_hash": ehash, "label": label, "dataset": dataset, "data_root": str(root),
            "mode": cfg.mode, "protocol": "custom" if departures else "paper", "departures": departures,
            "epochs": cfg.epochs, "seeds": list(cfg.seeds), "img_size": cfg.img_size, "lr": cfg.lr,
            "reader": {k: v for k, v in reader.items()}}
    rows = []
    run_id = hashlib.sha1(json.dumps([ehash, dataset, str(Path(root).resolve()), base["reader"], config_dict(cfg)],
                                     sort_keys=True, default=str).encode()).hexdigest()[:16]
    for seed in cfg.seeds:
        # a killed probe keeps its finished seeds and the last epoch of the seed it was in (same command resumes)
        done = Path(cache_dir) / "probe-state" / f"{run_id}-seed{seed}.json"
        if done.is_file():
            res = json.loads(done.read_text())
        else:
            res = train_probe(train, cached["val"][:2], cached["test"][:2], grid=grid, num_classes=ds.num_classes,
                              ignore_index=ds.ignore_index, cfg=cfg, seed=seed,
                              state_path=done.with_suffix(".pt"))
            done.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(done, res)
        rows.append({**base, **res, "num_train": len(train), "class_names": list(ds.class_names),
                     "config": config_dict(cfg)})
    test = np.array([r["test_miou"] for r in rows], dtype=np.float64)
    val = np.array([r["val_miou"] for r in rows], dtype=np.float64)
    summary = {
        **base,
        "test_miou_mean": float(test.mean()),
        "test_miou_std": float(test.std(ddof=1)) if len(test) > 1 else 0.0,
        "val_miou_mean": float(val.mean()),
        "skipped": {s: getattr(r, "skipped", {}) for s, r in readers.items()},
        "config": config_dict(cfg),
    }
    return rows, summary
