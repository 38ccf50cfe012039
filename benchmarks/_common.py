"""Shared plumbing of the benchmarks: environment row, CSV append, table print, robust timing."""
from __future__ import annotations

import csv
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable

RESULTS = Path(__file__).resolve().parent / "results"


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=Path(__file__).parent, capture_output=True,
            text=True, timeout=10,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def env_info(device: str | None = None) -> dict[str, str]:
    """Device name, torch/triton versions, git commit: the columns every benchmark row carries."""
    import torch

    try:
        import triton

        triton_version = triton.__version__
    except Exception:  # triton is optional on CPU-only installs
        triton_version = "none"
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
    else:
        name = f"cpu:{platform.processor() or platform.machine()}x{os.cpu_count()}"
    return {
        "device": name,
        "torch": torch.__version__,
        "triton": triton_version,
        "commit": git_commit(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def append_csv(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """Append rows to a CSV (header written when the file is new or its columns changed)."""
    rows = list(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not rows:
        return path
    fields = list(rows[0].keys())
    for r in rows[1:]:
        fields += [k for k in r if k not in fields]
    new = not path.exists()
    if not new:
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
        if header != fields:
            path = path.with_name(f"{path.stem}-{abs(hash(tuple(fields))) % 10**6}{path.suffix}")
            new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        if new:
            w.writeheader()
        w.writerows(rows)
    return path


def print_table(rows: list[dict], columns: list[str] | None = None) -> None:
    """Print rows as an aligned text table."""
    if not rows:
        print("(no rows)")
        return
    columns = columns or list(rows[0].keys())

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def time_fn(fn: Callable[[], object], *, warmup: int = 2, repeat: int = 10, sync: Callable[[], None] | None = None) -> dict:
    """Median, p20 and p80 wall time in ms of ``fn`` over ``repeat`` runs after ``warmup``."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    q = lambda p: times[min(len(times) - 1, int(p * (len(times) - 1) + 0.5))]  # noqa: E731
    return {"median_ms": statistics.median(times), "p20_ms": q(0.2), "p80_ms": q(0.8)}
