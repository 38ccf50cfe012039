"""The paper's Tables I-IV: row layout, its published mIoU numbers, and our probe rows placed beside them.

A probe row belongs to a table row through its key: the row's explicit ``label`` if it has one, else
the stem of the recipe recorded in the encoder's ``meta.json`` (``gin/ablations/ijepa_sa_bicubic.gin`` ->
``ijepa_sa_bicubic``). Our numbers are mean and std (ddof 1) over seeds of the test mIoU, in percent.
"""
from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from pathlib import Path

DATASETS = (("m-cashew-plant", "m-Cashew"), ("m-SA-crop-type", "m-SA"), ("mados", "MADOS"))

# (table id, title, [(group, row name, recipe key, (cashew, SA, MADOS) mIoU of the paper)])
TABLES = [
    ("I", "Linear probing semantic segmentation performance comparison across frameworks", [
        ("I-JEPA", "MR-model", "ijepa_mr", (22.60, 18.82, 37.55)),
        ("I-JEPA", "HR-model", "ijepa_hr", (24.25, 19.46, 40.94)),
        ("I-JEPA", "SA-model", "ijepa_sa", (23.57, 21.14, 41.73)),
        ("LatentMIM", "MR-model", "latentmim_mr", (23.96, 20.80, 44.53)),
        ("LatentMIM", "HR-model", "latentmim_hr", (24.89, 21.95, 44.84)),
        ("LatentMIM", "SA-model", "latentmim_sa", (24.53, 23.01, 45.77)),
    ]),
    ("II", "Impact of real vs. false high-resolution imagery", [
        ("I-JEPA", "w/ real HR", "ijepa_sa", (23.57, 21.14, 41.73)),
        ("I-JEPA", "w/ false HR", "ijepa_sa_falsehr", (22.26, 19.70, 36.41)),
        ("LatentMIM", "w/ real HR", "latentmim_sa", (24.53, 23.01, 45.77)),
        ("LatentMIM", "w/ false HR", "latentmim_sa_falsehr", (24.40, 22.95, 43.60)),
    ]),
    ("III", "Downsampling methods in the spatial affinity component with I-JEPA", [
        ("I-JEPA", "Bilinear", "ijepa_sa", (23.57, 21.14, 41.73)),
        ("I-JEPA", "Bicubic", "ijepa_sa_bicubic", (22.06, 20.62, 40.31)),
        ("I-JEPA", "Linear projection", "ijepa_sa_linear", (24.17, 20.07, 39.43)),
    ]),
    ("IV", "Spatial affinity sampling strategy on LatentMIM", [
        ("LatentMIM", "Random", "latentmim_sa", (24.53, 23.01, 45.77)),
        ("LatentMIM", "Block", "latentmim_sa_block", (21.80, 20.65, 44.53)),
    ]),
]


def row_key(row: dict) -> str:
    """Table key of a probe row: its label, else the recipe file's stem, else the encoder folder name."""
    if row.get("label"):
        return str(row["label"])
    recipe = row.get("recipe")
    if isinstance(recipe, (list, tuple)):
        recipe = recipe[0] if recipe else None
    if recipe:
        return Path(str(recipe)).name.removesuffix(".gin")
    return Path(str(row.get("encoder", "unknown"))).name


def load_rows(paths: list[str | os.PathLike]) -> list[dict]:
    """Probe rows from result JSON files (``{"rows": [...]}``) or folders searched recursively."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(q for q in p.rglob("*.json") if "feature_cache" not in q.parts)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p} does not exist; pass probe result files or the folder given to probe.py --out.")
    rows = []
    for f in files:
        try:
            obj = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{f} is not valid JSON ({e}); re-run tools/probe.py for it.") from e
        if isinstance(obj, dict) and isinstance(obj.get("rows"), list):
            rows += obj["rows"]
    return rows


MODE_ORDER = ("faithful", "cached")  # a table cell shows the most faithful probe mode present


def aggregate(rows: list[dict], relabel: dict[str, str] | None = None) -> dict[tuple[str, str], dict]:
    """``{(key, dataset): {"mean", "std", "n", "mode", "protocol", "departures", provenance...}}``, mIoU in percent.

    Rows of one key and dataset probed in several modes are not mixed: the cell is the most faithful
    mode's rows, and ``"also"`` lists one such dict per other mode present (shown beside it, marked with
    its mode). A cell follows the paper's protocol only when every one of its rows does.
    """
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        key = row_key(r)
        key = (relabel or {}).get(key, key)
        v = r.get("test_miou")
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            groups[(key, r["dataset"])].append(r)
    out = {}
    rank = lambda m: MODE_ORDER.index(m) if m in MODE_ORDER else len(MODE_ORDER)  # noqa: E731
    for k, rs in groups.items():
        by_mode: dict[str, list[dict]] = defaultdict(list)
        for r in rs:
            by_mode[r.get("mode", "cached")].append(r)
        cells = [_cell(by_mode[m], m) for m in sorted(by_mode, key=rank)]
        out[k] = dict(cells[0], also=cells[1:])
    return out


def _cell(rs: list[dict], mode: str) -> dict:
    """Mean, std and provenance of the rows of one key, dataset and probe mode."""
    v = [100.0 * float(r["test_miou"]) for r in rs]
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    departures = sorted({d for r in rs for d in (r.get("departures") or [])})
    if any("protocol" not in r for r in rs):
        departures.append("row written without protocol information (older probe)")
    first = rs[0]
    return {"mean": m, "std": sd, "n": len(v), "mode": mode,
            "protocol": "paper" if not departures else "custom", "departures": departures,
            "recipe": first.get("recipe"), "presets": first.get("presets"), "steps": first.get("steps"),
            "data_root": first.get("data_root"), "pretrain_data": first.get("pretrain_data"),
            "probe_epochs": first.get("epochs"), "seeds": sorted({r.get("seed") for r in rs})}


def build_tables(agg: dict[tuple[str, str], dict]) -> list[dict]:
    """Tables I-IV with ours beside the paper's, plus an ``Other`` table for keys no paper row uses."""
    tables, used = [], set()
    for tid, title, rows in TABLES:
        trows = []
        for group, name, key, paper in rows:
            used.add(key)
            cells = {ds: {"paper": p, "ours": agg.get((key, ds))} for (ds, _), p in zip(DATASETS, paper)}
            trows.append({"group": group, "row": name, "key": key, "cells": cells})
        tables.append({"id": tid, "title": title, "rows": trows})
    others = sorted({k for k, _ in agg if k not in used})
    if others:
        trows = [{"group": "", "row": k, "key": k,
                  "cells": {ds: {"paper": None, "ours": agg.get((k, ds))} for ds, _ in DATASETS}} for k in others]
        tables.append({"id": "Other", "title": "Encoders without a row in the paper's tables", "rows": trows})
    return tables


def _fmt_one(o: dict, modes: bool) -> str:
    mark = "" if o.get("protocol") == "paper" else " †"
    return f"{o['mean']:.2f} ± {o['std']:.2f} (n={o['n']}{', ' + o['mode'] if modes else ''}){mark}"


def _fmt(ours: dict | None) -> str:
    """One cell; when the key was probed in several modes, every mode's number, each marked with its mode."""
    if not ours:
        return "-"
    also = ours.get("also") or []
    return "<br>".join(_fmt_one(o, bool(also)) for o in [ours, *also])


def to_markdown(tables: list[dict]) -> str:
    """One markdown table per paper table: ``ours (mean ± std, n seeds) | paper`` per dataset."""
    lines = []
    for t in tables:
        lines += [f"### Table {t['id']}: {t['title']}", "", "mIoU (%) on the test split, linear probe.", ""]
        head = ["Model"] + [f"{short} ours" for _, short in DATASETS] + [f"{short} paper" for _, short in DATASETS]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        group = None
        for r in t["rows"]:
            if r["group"] and r["group"] != group:
                group = r["group"]
                lines.append(f"| *{group}* |" + " |" * (len(head) - 1))
            cells = [r["row"] + (f" (`{r['key']}`)" if t["id"] != "Other" else "")]
            cells += [_fmt(r["cells"][ds]["ours"]) for ds, _ in DATASETS]
            cells += ["-" if r["cells"][ds]["paper"] is None else f"{r['cells'][ds]['paper']:.2f}" for ds, _ in DATASETS]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    notes = {}
    for t in tables:
        for r in t["rows"]:
            for ds, short in DATASETS:
                top = r["cells"][ds]["ours"]
                for o in ([top, *(top.get("also") or [])] if top else []):
                    if o.get("protocol") != "paper":
                        notes[(r["key"], short, o.get("mode"))] = o
    if notes:
        lines += ["† not the paper's protocol (a number beside the paper's is not comparable):", ""]
        for (key, short, _), o in sorted(notes.items(), key=lambda kv: (kv[0][0], kv[0][1], str(kv[0][2]))):
            prov = f"recipe {o.get('recipe')}, {o.get('steps')} steps, presets {o.get('presets') or []}, " \
                   f"probe {o.get('mode')} {o.get('probe_epochs')} epochs, seeds {o.get('seeds')}, data {o.get('data_root')}"
            lines.append(f"- `{key}` on {short}: {'; '.join(o['departures'])} ({prov})")
        lines.append("")
    return "\n".join(lines)


def to_csv_rows(tables: list[dict]) -> list[dict]:
    """Long format: one row per (table, model row, dataset)."""
    out = []
    for t in tables:
        for r in t["rows"]:
            for ds, short in DATASETS:
                c = r["cells"][ds]
                for o in ([c["ours"], *(c["ours"].get("also") or [])] if c["ours"] else [{}]):
                    out.append({"table": t["id"], "group": r["group"], "row": r["row"], "key": r["key"], "dataset": ds,
                                "ours_mean": o.get("mean"), "ours_std": o.get("std"), "n_seeds": o.get("n", 0),
                                "paper": c["paper"], "protocol": o.get("protocol"), "mode": o.get("mode"),
                                "departures": o.get("departures"), "recipe": o.get("recipe"), "presets": o.get("presets"),
                                "steps": o.get("steps"), "probe_epochs": o.get("probe_epochs"), "seeds": o.get("seeds"),
                                "data_root": o.get("data_root"), "pretrain_data": o.get("pretrain_data")})
    return out
