"""Report of the miniature experiment (see :mod:`crossscale_kit.experiments.mini`): tables, bootstrap intervals, figures.

mIoU of a set of test scenes is computed from the sum of their per-scene confusion matrices (a scene's
tiles summed), so a bootstrap replicate resamples seeds (with replacement, the same seed indices for both
rows of a paired difference) and test scenes (with replacement, the same scenes for both rows) and recomputes each row's mean over
seeds. The interval is the 2.5-97.5 percentile range of the replicates.
"""
from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import numpy as np

from crossscale_kit.eval.minitask import CLASSES
from crossscale_kit.io import write_text_atomic

ROW_LABEL = {"init": "random init (host floor)", "mr": "MR-model", "hr": "HR-model", "sa": "SA-model",
             "falsehr": "SA w/ false HR", "frozen": "SA w/ frozen random teacher (control)",
             "vit": "supervised ViT of this host's encoder, same head (its fair ceiling)",
             "pixels": "linear probe on raw MR pixels (floor)",
             "vit_ceiling": "supervised ViT, same architecture and head (fair ceiling)",
             "ceiling": "supervised CNN on MR (strong ceiling)"}
REFERENCE_ORDER = ("pixels", "vit_ceiling", "ceiling")
#: the paired differences of the table (name, row a, row b: a - b), then those of the control rows
COMPARISONS = (("SA - MR", "sa", "mr"), ("real HR - false HR", "sa", "falsehr"))
CONTROL_COMPARISONS = (("SA - frozen teacher", "sa", "frozen"), ("frozen teacher - MR", "frozen", "mr"))
HOST_LABEL = {"latentmim": "LatentMIM", "ijepa": "I-JEPA", "mae": "MAE", "": "reference"}


def miou(conf: np.ndarray) -> np.ndarray:
    """Mean IoU of confusion matrices ``(..., C, C)`` over classes with a non-empty union -> ``(...)``."""
    tp = np.diagonal(conf, axis1=-2, axis2=-1).astype(np.float64)
    union = conf.sum(-1) + conf.sum(-2) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    return np.nanmean(iou, axis=-1)


def bootstrap_diff(a: np.ndarray, b: np.ndarray, iters: int, seed: int = 0) -> tuple[float, float, float]:
    """Paired difference of mean mIoU, ``a - b``, with a 95 % bootstrap interval over seeds and scenes.

    Args:
        a, b: per-tile confusion matrices ``(S, N, C, C)`` of two rows, seed ``i`` of ``a`` paired with seed ``i`` of ``b``.
        iters: bootstrap replicates.

    Returns:
        ``(point, low, high)`` as fractions.
    """
    if a.shape != b.shape:
        raise ValueError(f"rows to compare have different shapes {a.shape} and {b.shape} (seeds, scenes, C, C).")
    S, N = a.shape[:2]
    point = float(miou(a.sum(1)).mean() - miou(b.sum(1)).mean())
    rng = np.random.default_rng(seed)
    reps = np.empty(iters)
    for k in range(iters):
        s = rng.integers(0, S, S)
        w = np.bincount(rng.integers(0, N, N), minlength=N).astype(np.float64)
        ca = np.einsum("snij,n->sij", a[s], w)
        cb = np.einsum("snij,n->sij", b[s], w)
        reps[k] = miou(ca).mean() - miou(cb).mean()
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return point, float(lo), float(hi)


def _by_key(results: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in sorted(results, key=lambda r: r["seed"]):
        out.setdefault(r["key"], []).append(r)
    return out


def _stats(rows: list[dict]) -> dict:
    v = 100.0 * np.array([r["test_miou"] for r in rows])
    conf = np.stack([r["tile_confusion"].sum(0) for r in rows])
    tp = np.diagonal(conf, axis1=-2, axis2=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (conf.sum(-1) + conf.sum(-2) - tp)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": len(v),
            "values": v.tolist(), "class_iou": (100 * np.nanmean(iou, 0)).tolist()}


def _fmt(st: dict | None) -> str:
    if st is None:
        return "-"
    return f"{st['mean']:.2f}" if st["n"] < 2 else f"{st['mean']:.2f} ± {st['std']:.2f}"


def fair_ceiling(stats: dict[str, dict], host: str) -> dict | None:
    """The supervised ViT of the host's own encoder (row ``vit``) where it has one, else the shared one."""
    return stats.get(f"{host}_vit") or stats.get("vit_ceiling")


def gap_closed(stats: dict[str, dict], host: str, row: str) -> float | None:
    """Share of the gap between the host's random-init floor and its fair ceiling that ``row`` closes."""
    floor, ceil, st = stats.get(f"{host}_init"), fair_ceiling(stats, host), stats.get(f"{host}_{row}")
    if not (floor and ceil and st) or ceil["mean"] <= floor["mean"]:
        return None
    return (st["mean"] - floor["mean"]) / (ceil["mean"] - floor["mean"])


def tables_markdown(stats: dict[str, dict], diffs: list[dict], hosts: list[str], n_seeds: int) -> str:
    """Tables I and II in the paper's layout, the reference rows, and the paired differences."""
    cls = " / ".join(CLASSES)
    spread = f"mean ± std over {n_seeds} seeds" if n_seeds > 1 else "one seed (n = 1: no spread over seeds)"
    lines = [f"### Table I (miniature): linear probing on the synthetic task, test mIoU (%), {spread}",
             "", f"| Model | mIoU | gap closed | IoU per class ({cls}) |", "|---|---|---|---|"]
    for h in hosts:
        lines.append(f"| *{HOST_LABEL[h]}* | | | |")
        for r in ("init", "mr", "hr", "sa", "frozen", "vit"):
            st = stats.get(f"{h}_{r}")
            if r in ("frozen", "vit") and st is None:  # rows only some hosts have
                continue
            per = " / ".join(f"{v:.1f}" for v in st["class_iou"]) if st else "-"
            g = gap_closed(stats, h, r) if r not in ("init", "vit") else None
            lines.append(f"| {ROW_LABEL[r]} | {_fmt(st)} | {'-' if g is None else f'{100 * g:.0f} %'} | {per} |")
    refs = [r for r in REFERENCE_ORDER if r in stats]
    if refs:
        lines.append("| *reference* | | | |")
    for r in refs:
        st = stats[r]
        lines.append(f"| {ROW_LABEL[r]} | {_fmt(st)} | | {' / '.join(f'{v:.1f}' for v in st['class_iou'])} |")
    lines += ["", "*gap closed*: (row − the host's random-init floor) / (fair ceiling − that floor); the fair ceiling is "
              "the supervised ViT of the host's own encoder where the table has one, else the shared one."]
    lines += ["", "### Table II (miniature): real vs. false high-resolution imagery, test mIoU (%)", "",
              "| Model | w/ real HR | w/ false HR |", "|---|---|---|"]
    for h in hosts:
        lines.append(f"| {HOST_LABEL[h]} | {_fmt(stats.get(f'{h}_sa'))} | {_fmt(stats.get(f'{h}_falsehr'))} |")
    what = ("95 % bootstrap interval over seeds and test scenes" if n_seeds > 1 else
            "95 % bootstrap interval over test scenes only: one seed, so seed-to-seed noise is NOT covered")
    lines += ["", f"### Paired differences (mIoU points, {what})", "",
              "| Host | SA − MR | real HR − false HR |", "|---|---|---|"]
    for h in hosts:
        cells = []
        for name in ("SA - MR", "real HR - false HR"):
            d = next((d for d in diffs if d["host"] == h and d["comparison"] == name), None)
            cells.append("-" if d is None else f"{d['diff']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]")
        lines.append(f"| {HOST_LABEL[h]} | {cells[0]} | {cells[1]} |")
    controls = [d for d in diffs if d["comparison"] in {n for n, _, _ in CONTROL_COMPARISONS}]
    if controls:
        lines += ["", "### Control: SA with a frozen random HR teacher (sixth plan; mIoU points, same intervals)", "",
                  "| Host | " + " | ".join(n.replace(" - ", " − ") for n, _, _ in CONTROL_COMPARISONS) + " |",
                  "|---|" + "---|" * len(CONTROL_COMPARISONS)]
        for h in hosts:
            got = {d["comparison"]: d for d in controls if d["host"] == h}
            if got:
                lines.append(f"| {HOST_LABEL[h]} | " + " | ".join(
                    "-" if n not in got else f"{got[n]['diff']:+.2f} [{got[n]['low']:+.2f}, {got[n]['high']:+.2f}]"
                    for n, _, _ in CONTROL_COMPARISONS) + " |")
        lines += ["", "*SA − frozen teacher*: what the learning (EMA) HR teacher adds over fixed random features of "
                  "the same HR image; *frozen teacher − MR*: what the gram term does without a learning teacher."]
    return "\n".join(lines) + "\n"


#: the pre-registered criteria (results/mini/PLAN.md)
MIN_GAP_CLOSED = 1 / 3
MIN_CURVE_RISE = 4.0
MAX_HALF_WIDTH = 1.0


def checks_markdown(stats: dict, diffs: list[dict], results: list[dict], hosts: list[str], settings) -> str:
    """The plan's checks, computed: does each host's pretraining learn, and is each difference measured with power."""
    lines = ["### Pre-registered checks (results/mini/PLAN.md)", "",
             "| Host | MR closes >= 1/3 of the gap | curve rise, MR | curve rise, SA | SA − MR: half-width <= 1 | "
             "SA − MR: effect | real − false HR: half-width <= 1 | real − false HR: effect |", "|---|---|---|---|---|---|---|---|"]
    for h in hosts:
        g = gap_closed(stats, h, "mr")
        cells = ["-" if g is None else f"{'yes' if g >= MIN_GAP_CLOSED else 'no'} ({100 * g:.0f} %)"]
        for row in ("mr", "sa"):
            rises = []
            for r in results:
                if r["host"] == h and r["row"] == row and r.get("curve"):
                    init = next((x for x in results if x["key"] == f"{h}_init" and x["seed"] == r["seed"]), None)
                    if init:
                        rises.append(100 * (r["curve"][-1]["test_miou"] - init["test_miou"]))
            cells.append("-" if not rises else f"{'yes' if min(rises) >= MIN_CURVE_RISE else 'no'} "
                         f"({', '.join(f'{x:+.1f}' for x in rises)})")
        for name in ("SA - MR", "real HR - false HR"):
            d = next((d for d in diffs if d["host"] == h and d["comparison"] == name), None)
            if d is None:
                cells += ["-", "-"]
                continue
            if d["seeds"] < 2:  # a tile-only interval says nothing about seed noise: no verdict
                cells += ["n = 1: not assessed", f"{d['diff']:+.2f} (one seed)"]
                continue
            half = (d["high"] - d["low"]) / 2
            cells.append(f"{'yes' if half <= MAX_HALF_WIDTH else 'no'} (±{half:.2f})")
            cells.append("none detected" if not d["excludes_zero"] else ("positive" if d["low"] > 0 else "negative"))
        lines.append(f"| {HOST_LABEL[h]} | " + " | ".join(cells) + " |")
    lines += ["", "An effect is *detected* when the 95 % interval excludes zero; an interval is *powered* when its "
              f"half-width is at most {MAX_HALF_WIDTH:.0f} mIoU point. Curve rise: probe mIoU at the full budget minus "
              "the same seed's random-init floor (step 0).", ""]
    return "\n".join(lines)


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["empty"])
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_report(results: list[dict], settings, hosts: list[str], out: Path, runs_root: Path) -> dict:
    """Write ``report.md``, ``results.csv``, ``summary.csv``, ``differences.csv``, ``tile_confusions.npz`` and figures."""
    from crossscale_kit.experiments.mini_figures import bar_chart, cluster_maps, collapse_curves, learning_curve, loss_curves

    from crossscale_kit.experiments.mini import source_commit

    commit = source_commit(short=True)  # before this report writes its own (tracked) files
    out.mkdir(parents=True, exist_ok=True)
    groups = _by_key(results)
    stats = {k: _stats(v) for k, v in groups.items()}
    diffs = []
    for h in hosts:
        for name, a, b in COMPARISONS + CONTROL_COMPARISONS:
            ra, rb = groups.get(f"{h}_{a}"), groups.get(f"{h}_{b}")
            if not ra or not rb:
                continue
            ca = np.stack([r["tile_confusion"] for r in ra])
            cb = np.stack([r["tile_confusion"] for r in rb])
            d, lo, hi = bootstrap_diff(ca, cb, settings.bootstrap)
            diffs.append({"host": h, "comparison": name, "diff": 100 * d, "low": 100 * lo, "high": 100 * hi,
                          "seeds": len(ra), "tiles": ca.shape[1], "excludes_zero": bool(lo > 0 or hi < 0)})
    per_run = [{"host": r["host"], "row": r["row"], "key": r["key"], "seed": r["seed"],
                "test_miou": round(100 * r["test_miou"], 3), "val_miou": round(100 * r["val_miou"], 3),
                "best_epoch": r["best_epoch"], "seconds": r["seconds"],
                "seconds_before": r.get("seconds_before", 0.0), "commit": r.get("commit", "unknown")}
               for r in results]
    summary = [{"key": k, "host": v[0]["host"], "row": v[0]["row"], "mean": round(stats[k]["mean"], 3),
                "std": round(stats[k]["std"], 3), "n": stats[k]["n"],
                **{f"iou_{c.replace(' ', '_')}": round(x, 2) for c, x in zip(CLASSES, stats[k]["class_iou"])}}
               for k, v in groups.items()]
    write_text_atomic(out / "results.csv", _csv(per_run))
    write_text_atomic(out / "summary.csv", _csv(summary))
    write_text_atomic(out / "differences.csv", _csv([{k: (round(v, 3) if isinstance(v, float) else v)
                                                       for k, v in d.items()} for d in diffs]))
    np.savez_compressed(out / "tile_confusions.npz", **{f"{k}_seed{r['seed']}": r["tile_confusion"].astype(np.uint16)
                                                         for k, v in groups.items() for r in v})
    curves = [{"host": r["host"], "row": r["row"], "seed": r["seed"], "step": p["step"],
               "test_miou": round(100 * p["test_miou"], 3), "val_miou": round(100 * p["val_miou"], 3)}
              for r in results for p in r.get("curve", [])]
    write_text_atomic(out / "curves.csv", _csv(curves))
    figs = {"bars": bar_chart(stats, hosts, out / "bars.png"),
            "learning": learning_curve(results, hosts, stats, out / "learning_curve.png"),
            "collapse": collapse_curves(results, hosts, out / "collapse.png"),
            "loss": loss_curves(results, hosts, out / "loss_curves.png"),
            "clusters": cluster_maps(results, hosts, settings, out / "cluster_maps.png")}
    total = sum(r["seconds"] + r.get("seconds_before", 0.0) for r in results)
    again = sum(r["seconds"] for r in results if r.get("seconds_before"))
    made = {}  # the commit each run started at (its settings record), for the report's provenance line
    for r in results:
        c = str(r.get("commit", "unknown"))
        c = c if c == "unknown" else c[:7] + ("-dirty" if c.endswith("-dirty") else "")
        made[c] = made.get(c, 0) + 1
    runs_at = ", ".join(f"{c} ({n} run{'s' if n != 1 else ''})" for c, n in sorted(made.items(), key=lambda kv: -kv[1]))
    md = [f"# Results in miniature ({'one seed' if len(settings.seeds) == 1 else f'{len(settings.seeds)} seeds'})", "",
          f"Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `python tools/experiments.py --table mini` at commit {commit}; runs started at {runs_at}. "
          f"Pretraining: each recipe with `{settings.preset}`, {settings.steps} steps of batch 32 on "
          f"{settings.pretrain_pairs} synthetic pairs ({settings.pretrain_mr_size} px MR); task: "
          f"{settings.task.num_train}/{settings.task.num_val}/{settings.task.num_test} train/val/test scenes of "
          f"{settings.task.mr_size} px MR, classes {', '.join(CLASSES)} (see `kit/eval/minitask.py`); probe (the authors' "
          f"protocol scaled down): each scene cut into {settings.probe_tiles} x {settings.probe_tiles} tiles, each resized "
          f"by {settings.probe_resize:.2f} (bilinear) before encoding, linear head on frozen patch tokens "
          f"standardised per dimension, bilinear upsampling, cross-entropy, AdamW lr 1e-3 constant, batch "
          f"{settings.probe_batch} tiles, {settings.probe_epochs} epochs, best validation epoch scored on test"
          + (f", {settings.probe_heads} heads per encoder (probe seeds seed + 1000 k) with their test confusions "
             f"pooled, the raw-pixel probe likewise" if settings.probe_heads > 1 else "") + "; "
          f"per-host pretraining bindings: {dict(settings.host_params) or 'none'}. "
          f"Compute: {total / 60:.1f} min summed over runs"
          + (f", {again / 60:.1f} min of it probing finished runs again (same pretraining, new probe settings)"
             if again else "") + ".", "",
          tables_markdown(stats, diffs, hosts, len(settings.seeds)),
          checks_markdown(stats, diffs, results, hosts, settings),
          "![bar chart](bars.png)", "", "![learning curve](learning_curve.png)", "", "![collapse monitors](collapse.png)",
          "", "![cluster maps](cluster_maps.png)", "", "![loss curves](loss_curves.png)", ""]
    analysis = out / "analysis.md"
    if analysis.is_file():  # the hand-written reading of these numbers, kept across regenerations
        md[2:2] = [analysis.read_text().strip(), ""]
    write_text_atomic(out / "report.md", "\n".join(md))
    write_text_atomic(out / "report.json", json.dumps({"stats": stats, "differences": diffs, "figures":
                                                       {k: str(v) for k, v in figs.items()}}, indent=2))
    print("\n" + tables_markdown(stats, diffs, hosts, len(settings.seeds)))
    return {"stats": stats, "differences": diffs}
