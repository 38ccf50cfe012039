"""Figures of the miniature experiment: bar chart, cluster maps in the layout of the paper's Fig. 3, loss curves."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

ROWS = ("init", "mr", "hr", "sa", "falsehr", "frozen")  # a row's colour is its index here, in every figure
LABELS = {"init": "random init", "mr": "MR-model", "hr": "HR-model", "sa": "SA-model", "falsehr": "SA w/ false HR",
          "frozen": "SA w/ frozen random teacher"}


def _present(rows: dict | list, hosts: list[str]) -> list[str]:
    """The rows of :data:`ROWS` that at least one host has (a control row exists for some hosts only)."""
    keys = set(rows)
    return [r for r in ROWS if any(f"{h}_{r}" in keys for h in hosts)]
HOSTS = {"latentmim": "LatentMIM", "ijepa": "I-JEPA", "mae": "MAE"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fig.savefig(tmp, format="png", dpi=90)
    _plt().close(fig)
    os.replace(tmp, path)
    return path


def bar_chart(stats: dict, hosts: list[str], path: Path) -> Path:
    """Mean test mIoU per row, grouped by host, error bars = std over seeds, dots = seeds; ceiling as a line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.6 + 2.4 * len(hosts), 4.6))
    colours = plt.get_cmap("tab10")
    rows = _present(stats, hosts)
    width = 0.8 / len(rows)
    labelled = set()
    for i, h in enumerate(hosts):
        for j, r in enumerate(rows):
            st = stats.get(f"{h}_{r}")
            if st is None:
                continue
            x = i + (j - (len(rows) - 1) / 2) * width
            ax.bar(x, st["mean"], width, yerr=st["std"], color=colours(ROWS.index(r)), capsize=3,
                   label=LABELS[r] if r not in labelled else None)
            labelled.add(r)
            ax.plot([x] * len(st["values"]), st["values"], "k.", ms=3)
    for key, ls, label in (("ceiling", "--", "supervised CNN"), ("vit_ceiling", "-.", "supervised ViT (fair ceiling)"),
                           ("pixels", ":", "linear on raw pixels (floor)")):
        if key in stats:
            ax.axhline(stats[key]["mean"], color="k", ls=ls, lw=1, label=f"{label} {stats[key]['mean']:.1f}")
    own = [(i, stats[f"{h}_vit"]["mean"]) for i, h in enumerate(hosts) if f"{h}_vit" in stats]
    for n, (i, y) in enumerate(own):  # a host with its own encoder: its own fair ceiling, over its bars only
        ax.hlines(y, i - 0.45, i + 0.45, colors="k", linestyles="-.", lw=2,
                  label=f"supervised ViT of {HOSTS.get(hosts[i], hosts[i])}'s own encoder {y:.1f}")
    ax.set_xticks(range(len(hosts)), [HOSTS.get(h, h) for h in hosts])
    ax.set_ylabel("test mIoU (%)")
    lo = min(st["mean"] - st["std"] for st in stats.values())
    ax.set_ylim(max(0.0, lo - 5), None)
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.1))  # below: clear of the bars and lines
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def loss_curves(results: list[dict], hosts: list[str], path: Path) -> Path:
    """``loss/total`` of every pretraining run against the step, one panel per host, one colour per row."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(hosts), figsize=(4.2 * len(hosts), 3.2), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, h in zip(axes[0], hosts):
        for r in results:
            if r["host"] != h or r["row"] not in LABELS or r["row"] == "init":
                continue
            f = Path(r["dir"]) / "logs" / "metrics.jsonl"
            rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()] if f.is_file() else []
            pts = [(x["step"], x["loss/total"]) for x in rows if "loss/total" in x]
            if pts:
                j = ROWS.index(r["row"])
                ax.plot(*zip(*pts), color=colours(j), lw=1.2 if r["seed"] == 0 else 0.6, alpha=1.0 if r["seed"] == 0 else 0.5,
                        label=LABELS[r["row"]] if r["seed"] == min(x["seed"] for x in results) else None)
        ax.set_title(f"{HOSTS.get(h, h)}: loss/total (host + gram for SA)", fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def cluster_maps(results: list[dict], hosts: list[str], settings, path: Path, k: int = 3) -> Path:
    """Ward cluster maps (k = 3) of one larger test-stream tile per row, side by side as in the paper's Fig. 3.

    One figure row per host: MR image (RGB), labels, then the patch-feature cluster map of each row's
    seed-0 encoder (lowest seed run present).
    """
    import torch

    from crossscale_kit.encoders.export import load_exported_encoder
    from crossscale_kit.eval.cluster import patch_brightness, rgb_image, ward_clusters
    from crossscale_kit.eval.minitask import CLASSES, encode, normalise

    plt = _plt()
    scene = settings.task.scene("figure", 0, mr_size=settings.figure_mr_size)
    mr = scene["mr"].astype(np.float32)
    first = {}
    for r in sorted(results, key=lambda r: r["seed"]):
        first.setdefault(r["key"], r)
    rows = _present(first, hosts)
    cols = 2 + len(rows)
    fig, axes = plt.subplots(len(hosts), cols, figsize=(2.1 * cols, 2.3 * len(hosts)), squeeze=False)
    cmap = plt.get_cmap("viridis", k)
    for i, h in enumerate(hosts):
        axes[i, 0].imshow(rgb_image(mr), interpolation="nearest")
        axes[i, 0].set_title("MR image", fontsize=8)
        axes[i, 0].set_ylabel(HOSTS.get(h, h))
        axes[i, 1].imshow(scene["label"], cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
        axes[i, 1].set_title("labels: " + ", ".join(f"{j}={c}" for j, c in enumerate(CLASSES)), fontsize=5)
        for j, row in enumerate(rows, start=2):
            r = first.get(f"{h}_{row}")
            axes[i, j].set_title(LABELS[row], fontsize=8)
            if r is None:  # a row this host does not have (a control run for some hosts only)
                axes[i, j].text(0.5, 0.5, "not run for this host", ha="center", va="center", fontsize=7,
                                color="0.4", transform=axes[i, j].transAxes)
                axes[i, j].set_frame_on(False)
                continue
            model, meta = load_exported_encoder(Path(r["dir"]) / "export")
            with torch.no_grad():
                tok = encode(model, normalise(mr[None], meta.get("normalization")))[0]
            g = int(round(tok.shape[0] ** 0.5))
            feats = tok.reshape(g, g, -1).numpy()
            cl = ward_clusters(feats, k, patch_brightness(mr, (g, g)))
            H = mr.shape[-1]
            axes[i, j].imshow(cl, cmap=cmap, vmin=-0.5, vmax=k - 0.5, interpolation="nearest", extent=(0, H, H, 0))
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Cluster maps (k = {k}) of one {settings.figure_mr_size} px MR tile from the task's held-out scene "
                 "stream, seed-0 encoders", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _metrics(run_dir: str | Path) -> list[dict]:
    f = Path(run_dir) / "logs" / "metrics.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()] if f.is_file() else []


def learning_curve(results: list[dict], hosts: list[str], stats: dict, path: Path) -> Path:
    """Probe test mIoU against pretraining steps, one panel per host: MR and SA of the curve seed (step 0 is
    the host's random-init floor of that seed), with the pixel floor and the fair ceiling as lines."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(hosts), figsize=(4.0 * len(hosts), 3.3), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, h in zip(axes[0], hosts):
        for r in results:
            if r["host"] != h or not r.get("curve"):
                continue
            init = next((x for x in results if x["key"] == f"{h}_init" and x["seed"] == r["seed"]), None)
            pts = ([(0, init["test_miou"])] if init else []) + [(p["step"], p["test_miou"]) for p in r["curve"]]
            steps, vals = zip(*pts)
            ax.plot(steps, [100 * v for v in vals], "o-", color=colours(ROWS.index(r["row"])), ms=4,
                    label=f"{LABELS[r['row']]} (seed {r['seed']})")
        own = f"{h}_vit" if f"{h}_vit" in stats else "vit_ceiling"  # the host's own fair ceiling where it has one
        for key, ls, label in ((own, "-.", "supervised ViT"), ("pixels", ":", "raw pixels")):
            if key in stats:
                ax.axhline(stats[key]["mean"], color="k", ls=ls, lw=1, label=label)
        ax.set_title(f"{HOSTS.get(h, h)}: probe mIoU vs pretraining", fontsize=9)
        ax.set_xlabel("pretraining step")
        ax.set_ylabel("test mIoU (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def collapse_curves(results: list[dict], hosts: list[str], path: Path) -> Path:
    """The collapse monitors logged while pretraining (lowest seed): effective rank (top row) and std of the
    L2-normalised features (bottom row) of the student and of the target / HR teacher, per host."""
    plt = _plt()
    fig, axes = plt.subplots(2, len(hosts), figsize=(4.2 * len(hosts), 6.0), squeeze=False)
    colours = plt.get_cmap("tab10")
    seed = min((r["seed"] for r in results), default=0)
    styles = {"student": "-", "target": "--", "teacher": ":"}
    for col, h in enumerate(hosts):
        for r in results:
            if r["host"] != h or r["seed"] != seed or r["row"] not in ("mr", "sa", "frozen"):
                continue
            rows = _metrics(r["dir"])
            for which, ls in styles.items():
                for i, metric in enumerate(("rankme", "std")):
                    key = f"collapse/{metric}_{which}"
                    pts = [(x["step"], x[key]) for x in rows if key in x]
                    if pts:
                        axes[i, col].plot(*zip(*pts), ls=ls, color=colours(ROWS.index(r["row"])), lw=1.2,
                                          label=f"{LABELS[r['row']]}: {which}")
        axes[0, col].set_title(f"{HOSTS.get(h, h)}: effective rank (RankMe)", fontsize=9)
        axes[1, col].set_title(f"{HOSTS.get(h, h)}: std of L2-normalised features", fontsize=9)
        for ax in axes[:, col]:
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path)
