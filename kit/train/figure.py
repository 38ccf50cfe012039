"""The run's loss figure: every loss on its own scale, lr and EMA momentum beside them.

One panel per ``loss/*`` column (raw points and a centred running mean; a log y-axis when the
positive values span more than a decade), then the collapse monitors (one panel for the effective rank of
every watched feature, one for the std of their L2-normalised features), the online probe's mIoU when the
run has one, and one panel (linear) for the learning rate and one for the EMA momentum, all over the
optimizer step. The title names the recipe and the steps run out of the
schedule's horizon, so a figure says which run it shows without its folder.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from crossscale_kit.io import open_nofollow, temp_path


def _series(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["step"], r[key]) for r in rows if key in r and r[key] is not None and math.isfinite(float(r[key]))]
    if not pts:
        return np.zeros(0), np.zeros(0)
    steps, vals = zip(*pts)
    return np.asarray(steps, dtype=float), np.asarray(vals, dtype=float)


def spans_decades(values: np.ndarray) -> bool:
    """True when the positive ``values`` span more than a factor of 10 (then a log axis reads better)."""
    pos = values[values > 0]
    return pos.size == values.size and pos.size > 1 and pos.max() / pos.min() > 10.0


def running_mean(values: np.ndarray) -> tuple[int, np.ndarray]:
    """Centred running mean over about a tenth of the points (odd window; no lag, unlike an EMA)."""
    w = max(1, len(values) // 10) | 1
    if w == 1:
        return 1, values
    return w, np.convolve(values, np.ones(w) / w, mode="valid")


def plot_run(rows: list[dict], out: str | os.PathLike, title: str = "") -> Path | None:
    """Write the loss figure of logged ``rows`` (dicts with ``step`` and metric columns) to ``out`` (PNG).

    Returns:
        the path, or None when the rows hold no loss.
    """
    losses = sorted({k for r in rows for k in r if k.startswith("loss/")})
    if not losses:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {"collapse/rankme": "effective rank (RankMe)", "collapse/std": "std of L2-normalised features",
              "probe/": "online probe mIoU"}
    present = {g: sorted({k for r in rows for k in r if k.startswith(g)}) for g in groups}
    panels = losses + [g for g, keys in present.items() if keys] + [k for k in ("lr", "momentum") if any(k in r for r in rows)]
    cols = min(4, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, panels):
        if key in groups:  # several series in one panel, one line each
            for k in present[key]:
                steps, vals = _series(rows, k)
                ax.plot(steps, vals, lw=1.2, marker="." if steps.size < 30 else None, label=k[len(key):].lstrip("_/"))
            ax.set_title(groups[key])
            ax.set_xlabel("optimizer step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            continue
        steps, vals = _series(rows, key)
        if steps.size == 0:
            ax.set_title(f"{key} (no finite values)")
            continue
        is_loss = key.startswith("loss/")
        ax.plot(steps, vals, lw=0.8, alpha=0.5 if is_loss else 1.0, label="logged")
        if is_loss:
            w, sm = running_mean(vals)
            if w > 1:
                ax.plot(steps[w // 2 : len(steps) - w // 2], sm, lw=1.8, label=f"mean of {w}")
        if is_loss and spans_decades(vals):  # lr and momentum read best on a linear axis
            ax.set_yscale("log")
        ax.set_title(key + (" (log)" if ax.get_yscale() == "log" else ""))
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    tmp = temp_path(out)  # never through a link planted at the figure's name
    with open_nofollow(tmp, "xb") as f:
        fig.savefig(f, dpi=110, format="png")
    os.replace(tmp, out)
    plt.close(fig)
    return out
