#!/usr/bin/env python
"""Run the paper's experiments: every row of Tables I-IV is one gin recipe, one work folder, one subprocess.

    python tools/experiments.py --table I --out runs/paper                       # Table I, paper settings
    python tools/experiments.py --table all --preset gin/presets/cpu_quick.gin   # every row, ~5 min each on CPU
    python tools/experiments.py ijepa_sa ablations/ijepa_sa_linear --max_steps 100 --data /data/shards
    python tools/experiments.py --table III --gin_param 'train.batch_size = 32' --seed 1 --dry_run
    python tools/experiments.py --list                                           # tables, rows, recipes
    python tools/experiments.py --table mini --out results/mini --jobs 2         # Tables I-II in miniature (~3 h on 2 idle cores)
    python tools/experiments.py --table mini --fast --out runs/mini_fast         # one seed, half the steps, one probe head (about 13.5 min)

Each run is ``python tools/train.py --gin RECIPE [--gin PRESET] [--gin_param ...] --workdir OUT/<name>``
in its own process (gin state never leaks between runs), its output kept in ``OUT/<name>.log``.
At the end a table says where each run's encoder landed and its final logged losses, and
``OUT/experiments.json`` records the same. The paper's mIoU (m-cashew / m-SA-crop / MADOS) of each row is
listed for reference: evaluate the exported encoders with ``tools/probe.py``.

``--table mini`` is different: it pretrains CPU-sized models for every row of Tables I-II and every host,
over 7 seeds, probes them on a synthetic downstream task where HR detail matters and writes a report with
bootstrap intervals and figures (see ``kit/experiments/mini.py``). It resumes where a killed run stopped;
``--dry_run`` lists its runs and runs nothing.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
from crossscale_kit.cli import main_guard, parser  # noqa: E402
from crossscale_kit.io import write_json_atomic  # noqa: E402


@dataclass(frozen=True)
class Row:
    """One row of a paper table: its label, the recipe that reproduces it, the paper's mIoU."""

    table: str
    label: str
    recipe: str  # path relative to the repository root
    miou: tuple[float, float, float] | None  # m-cashew, m-SA-crop, MADOS; None: not a paper row


TABLES: dict[str, list[Row]] = {
    "I": [
        Row("I", "I-JEPA MR-model", "gin/ijepa_mr.gin", (22.60, 18.82, 37.55)),
        Row("I", "I-JEPA HR-model", "gin/ijepa_hr.gin", (24.25, 19.46, 40.94)),
        Row("I", "I-JEPA SA-model", "gin/ijepa_sa.gin", (23.57, 21.14, 41.73)),
        Row("I", "LatentMIM MR-model", "gin/latentmim_mr.gin", (23.96, 20.80, 44.53)),
        Row("I", "LatentMIM HR-model", "gin/latentmim_hr.gin", (24.89, 21.95, 44.84)),
        Row("I", "LatentMIM SA-model", "gin/latentmim_sa.gin", (24.53, 23.01, 45.77)),
    ],
    "II": [
        Row("II", "I-JEPA w/ real HR", "gin/ijepa_sa.gin", (23.57, 21.14, 41.73)),
        Row("II", "I-JEPA w/ false HR", "gin/ijepa_sa_falsehr.gin", (22.26, 19.70, 36.41)),
        Row("II", "LatentMIM w/ real HR", "gin/latentmim_sa.gin", (24.53, 23.01, 45.77)),
        Row("II", "LatentMIM w/ false HR", "gin/latentmim_sa_falsehr.gin", (24.40, 22.95, 43.60)),
    ],
    "III": [
        Row("III", "I-JEPA SA, bilinear (block mean)", "gin/ijepa_sa.gin", (23.57, 21.14, 41.73)),
        Row("III", "I-JEPA SA, bicubic (per block)", "gin/ablations/ijepa_sa_bicubic.gin", (22.06, 20.62, 40.31)),
        Row("III", "I-JEPA SA, linear projection", "gin/ablations/ijepa_sa_linear.gin", (24.17, 20.07, 39.43)),
        Row("III", "I-JEPA SA, bicubic (whole grid; not in the paper)", "gin/ablations/ijepa_sa_gridbicubic.gin", None),
        Row("III", "I-JEPA SA, frozen random teacher (a control; not in the paper)",
            "gin/ablations/ijepa_sa_frozenteacher.gin", None),
    ],
    "IV": [
        Row("IV", "LatentMIM SA, random sampling", "gin/latentmim_sa.gin", (24.53, 23.01, 45.77)),
        Row("IV", "LatentMIM SA, block sampling", "gin/ablations/latentmim_sa_block.gin", (21.80, 20.65, 44.53)),
    ],
}


def run_name(recipe: str) -> str:
    """Work-folder name of a recipe: its file stem (stems are unique across gin/ and gin/ablations/)."""
    return Path(recipe).stem


def resolve_recipe(name: str) -> str:
    """A recipe path relative to the repo root from a path or a short name (``ijepa_sa``, ``ablations/ijepa_sa_linear``)."""
    candidates = [Path(name)]
    stem = name[:-4] if name.endswith(".gin") else name
    candidates += [Path("gin") / f"{stem}.gin", Path("gin") / "ablations" / f"{stem}.gin"]
    for c in candidates:
        full = c if c.is_absolute() else REPO_ROOT / c
        if full.is_file():
            try:
                return str(full.resolve().relative_to(REPO_ROOT))
            except ValueError:
                return str(full.resolve())
    known = sorted({run_name(r.recipe) for rows in TABLES.values() for r in rows})
    raise ValueError(f"recipe {name!r} not found (tried {', '.join(map(str, candidates))}); known rows: {', '.join(known)}.")


def select(tables: list[str], names: list[str]) -> list[str]:
    """Recipes of the chosen tables, then the named ones, each once, in table order."""
    chosen: list[str] = []
    keys = list(TABLES) if "all" in tables else tables
    for key in keys:
        if key not in TABLES:
            raise ValueError(f"unknown table {key!r}; choose from {', '.join(TABLES)} or all.")
        chosen += [r.recipe for r in TABLES[key]]
    chosen += [resolve_recipe(n) for n in names]
    seen: set[str] = set()
    return [r for r in chosen if not (r in seen or seen.add(r))]


def paper_miou(recipe: str) -> tuple[float, float, float] | None:
    for rows in TABLES.values():
        for r in rows:
            if r.recipe == recipe:
                return r.miou
    return None


def build_command(recipe: str, workdir: Path, args: argparse.Namespace) -> list[str]:
    """The ``tools/train.py`` command line of one run with the shared overrides."""
    cmd = [args.python, str(REPO_ROOT / "tools" / "train.py"), "--gin", recipe]
    for preset in args.preset:
        cmd += ["--gin", preset]
    params = list(args.gin_param)
    if args.data is not None:
        params.append(f"PairedTiles.root = {json.dumps(str(args.data))}")
    if args.seed is not None:
        params.append(f"train.seed = {int(args.seed)}")
    for p in params:
        cmd += ["--gin_param", p]
    cmd += ["--workdir", str(workdir)]
    if args.max_steps is not None:
        cmd += ["--max_steps", str(int(args.max_steps))]
    if args.resume:
        cmd += ["--resume", "auto"]  # a row that has not started yet starts fresh
    return cmd


def run_one(recipe: str, args: argparse.Namespace) -> dict:
    """Run one recipe in a subprocess; return its status, encoder path and final losses."""
    name = run_name(recipe)
    workdir = Path(args.out) / name
    cmd = build_command(recipe, workdir, args)
    result = {"name": name, "recipe": recipe, "workdir": str(workdir), "command": cmd, "paper_miou": paper_miou(recipe)}
    if args.dry_run:
        print(" ".join(_quote(c) for c in cmd))
        return {**result, "status": "dry-run"}
    workdir.parent.mkdir(parents=True, exist_ok=True)
    log = workdir.with_name(f"{name}.log")  # beside the run folder: train.py refuses foreign files in a fresh one
    print(f"[{name}] running -> {workdir} (log: {log})", flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, stdout=f, stderr=subprocess.STDOUT)
    result.update(rc=proc.returncode, seconds=round(time.perf_counter() - t0, 1))
    summary = workdir / "summary.json"
    if proc.returncode == 0 and summary.is_file():
        s = json.loads(summary.read_text())
        logs = s.get("logs", {})
        result.update(status="ok", steps=s.get("steps"), total_steps=s.get("total_steps"), export=s.get("export"),
                      losses={k: v for k, v in logs.items() if k.startswith("loss/")})
    else:
        tail = log.read_text(errors="replace").strip().splitlines()[-15:]
        result.update(status="failed")
        print(f"[{name}] FAILED (exit {proc.returncode}); last lines of {log}:\n  " + "\n  ".join(tail), flush=True)
    return result


def _quote(s: str) -> str:
    return s if s and all(c.isalnum() or c in "/._-=:" for c in s) else "'" + s.replace("'", "'\"'\"'") + "'"


def format_table(results: list[dict]) -> str:
    """Text table: run, status, steps, final losses, exported encoder, paper mIoU."""
    cols = ["run", "status", "steps", "loss/host", "loss/gram", "loss/total", "encoder", "paper mIoU (cashew/SA/MADOS)"]
    rows = []
    for r in results:
        losses = r.get("losses", {})
        fmt = lambda k: f"{losses[k]:.4f}" if k in losses else "-"  # noqa: E731
        miou = r.get("paper_miou")
        rows.append([
            r["name"], r["status"], f"{r['steps']}/{r['total_steps']}" if "steps" in r else "-",
            fmt("loss/host"), fmt("loss/gram"), fmt("loss/total"), r.get("export") or "-",
            " / ".join(f"{v:.2f}" for v in miou) if miou else "-",
        ])
    widths = [max(len(c), *(len(row[i]) for row in rows)) if rows else len(c) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def list_tables() -> str:
    lines = []
    for key, rows in TABLES.items():
        lines.append(f"Table {key}")
        for r in rows:
            miou = " / ".join(f"{v:.2f}" for v in r.miou) if r.miou else "-"
            lines.append(f"  {r.label:<52} {r.recipe:<42} {miou}")
    return "\n".join(lines)


def check_args(args: argparse.Namespace) -> None:
    """Numbers and folders of the command line, checked before any run starts (ValueError: exit 2)."""
    for name, low in (("max_steps", 0), ("seed", 0), ("jobs", 1)):
        v = getattr(args, name)
        if v is not None and v < low:
            raise ValueError(f"--{name} {v}: must be an integer >= {low}.")
    for name in ("out", "runs"):
        v = getattr(args, name)
        if v and Path(v).exists() and not Path(v).is_dir():
            raise ValueError(f"--{name} {v} is a file; pass a folder (the runs are written under it).")
    if args.data is not None and Path(args.data).is_file():  # a URL or a folder made later is each run's to check
        raise ValueError(f"--data {args.data} is a file; pass the folder of a shard set (tools/make_shards.py --out).")
    for r in args.recipes:
        if Path(r).is_file() and Path(r).suffix != ".gin":
            raise ValueError(f"recipe {r} is not a .gin file; name a recipe (e.g. ijepa_sa) or a gin/*.gin path.")


@main_guard
def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__)
    ap.add_argument("recipes", nargs="*", help="recipes by path or name (ijepa_sa, ablations/ijepa_sa_linear)")
    ap.add_argument("--table", action="append", default=[], choices=[*TABLES, "all", "mini"],
                    help="all rows of a table (repeatable); 'mini': the miniature experiment of Tables I-II")
    ap.add_argument("--out", default="runs/experiments", help="parent folder; each run goes to OUT/<recipe name>")
    ap.add_argument("--max_steps", type=int, default=None, help="stop every run after N steps (schedules keep their length)")
    ap.add_argument("--gin_param", action="append", default=[], help="binding added to every run (repeatable)")
    ap.add_argument("--data", default=None, help="shard root for every run (binds PairedTiles.root)")
    ap.add_argument("--seed", type=int, default=None, help="train.seed of every run")
    ap.add_argument("--preset", action="append", default=[], help="gin file included after every recipe (repeatable)")
    ap.add_argument("--resume", action="store_true", help="resume every run from its newest checkpoint (runs without one start fresh)")
    ap.add_argument("--stop_on_error", action="store_true", help="stop at the first failed run")
    ap.add_argument("--dry_run", action="store_true", help="print the commands (--table mini: the runs), run nothing")
    ap.add_argument("--list", action="store_true", help="print the tables, their recipes and the paper's mIoU")
    ap.add_argument("--fast", action="store_true", help="--table mini: one seed at half the steps and one probe head, a check of the pipeline (about 13.5 min on 2 CPU cores)")
    ap.add_argument("--runs", default=None, help="--table mini: folder of the per-run work folders (default OUT/runs)")
    ap.add_argument("--jobs", type=int, default=1, help="--table mini: runs at a time (2 on a 2-core machine)")
    ap.add_argument("--hosts", default=None, help="--table mini: comma-separated hosts (default: every host with recipes)")
    ap.add_argument("--size", default=None, choices=["full", "fast", "tiny"], help=argparse.SUPPRESS)
    ap.add_argument("--python", default=sys.executable, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    check_args(args)

    if "mini" in args.table:
        if len(args.table) > 1 or args.recipes:
            print("error: --table mini runs on its own; drop the other tables and recipes.", file=sys.stderr)
            return 2
        from crossscale_kit.experiments import mini

        try:
            return mini.main(args)
        except ValueError as exc:  # a user error (hosts, folders): one line, exit 2
            raise ValueError(str(exc)) from None
        except RuntimeError as exc:  # a run of the experiment failed
            print(f"error: {exc}", file=sys.stderr)
            return 1

    if args.list:
        print(list_tables())
        return 0
    try:
        recipes = select(args.table, args.recipes)
        args.preset = [resolve_recipe(p) for p in args.preset]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not recipes:
        print("error: nothing to run; name recipes or pass --table I|II|III|IV|all (see --list).", file=sys.stderr)
        return 2

    results = []
    for recipe in recipes:
        results.append(run_one(recipe, args))
        if args.stop_on_error and results[-1]["status"] == "failed":
            break
    if args.dry_run:
        return 0
    print()
    print(format_table(results))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "experiments.json", json.loads(json.dumps(results, default=str)))  # never through a link
    failed = [r["name"] for r in results if r["status"] != "ok"]
    if failed:
        print(f"\n{len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
