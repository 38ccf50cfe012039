"""Shared plumbing of the benchmarks: environment row, CSV append, table print, timing with the library timers."""
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
    """Append rows to a CSV; a new column widens the header (the file is rewritten, old rows get blanks).

    One file per benchmark however its columns grow; columns a row lacks are left empty.
    """
    rows = list(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not rows:
        return path
    fields = list(rows[0].keys())
    for r in rows[1:]:
        fields += [k for k in r if k not in fields]
    old: list[dict] = []
    header: list[str] = []
    if path.exists():
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            if not set(fields) <= set(header):
                old = list(reader)
    if header and set(fields) <= set(header):  # the common case: plain append under the existing header
        with open(path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=header, restval="").writerows(rows)
        return path
    header += [k for k in fields if k not in header]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header, restval="", extrasaction="ignore")
        w.writeheader()
        w.writerows(old + rows)
    os.replace(tmp, path)
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


def _quantile(sorted_times: list[float], p: float) -> float:
    return sorted_times[min(len(sorted_times) - 1, int(p * (len(sorted_times) - 1) + 0.5))]


def measure(fn: Callable[[], object], *, device: str = "cpu", warmup_ms: float = 25.0, rep_ms: float = 100.0) -> dict:
    """Time ``fn`` with the library timer of the device: median, p20 and p80 ms per call.

    CUDA: ``triton.testing.do_bench`` -- CUDA events around every call, the L2 cache flushed before each,
    ``warmup_ms`` of warm-up and about ``rep_ms`` of timed calls. CPU: ``torch.utils.benchmark.Timer``
    (at the current torch thread count; the Timer's default is one thread) with ``adaptive_autorange``:
    blocks of calls long enough to hide the timer's overhead, repeated until at least ``rep_ms`` has run
    and the spread is small, at most ten times that. A function slower than the budget gets one timed
    call after the Timer's own sizing call.

    Args:
        fn: the call to time (no arguments); every call must be a full, self-contained case.
        device: ``"cuda"`` (any ``cuda:<i>``) or ``"cpu"``.
        warmup_ms: CUDA warm-up budget (do_bench's ``warmup``).
        rep_ms: the timed budget (do_bench's ``rep``; the Timer's ``min_run_time`` in ms).

    Returns:
        ``{"median_ms", "p20_ms", "p80_ms", "runs", "timer"}``.
    """
    if str(device).startswith("cuda"):
        from triton.testing import do_bench

        times = sorted(do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="all"))
        timer = "triton.testing.do_bench"
    else:
        import torch
        from torch.utils.benchmark import Timer

        m = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads()).adaptive_autorange(
            threshold=0.1, min_run_time=rep_ms / 1e3, max_run_time=10 * rep_ms / 1e3)
        times = sorted(t * 1e3 for t in m.times)
        timer = "torch.utils.benchmark.Timer"
    return {"median_ms": statistics.median(times), "p20_ms": _quantile(times, 0.2), "p80_ms": _quantile(times, 0.8),
            "runs": len(times), "timer": timer}


def time_fn(fn: Callable[[], object], *, warmup: int = 2, repeat: int = 10, sync: Callable[[], None] | None = None) -> dict:
    """Exactly ``warmup`` untimed and ``repeat`` timed calls of ``fn``: median, p20 and p80 ms per call.

    For comparisons that interleave variants one call at a time (``benchmarks/train_step.py``), where a
    sample must be exactly one call: :func:`measure`'s library timers run calls in blocks, after warm-ups
    of their own. Each call is bracketed by ``torch.utils.benchmark.timer``, the Timer's own clock, which
    synchronises the accelerator before reading the time; ``sync``, if given, also runs after each call.
    """
    from torch.utils.benchmark import timer

    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = []
    for _ in range(repeat):
        t0 = timer()
        fn()
        if sync:
            sync()
        times.append((timer() - t0) * 1e3)
    times.sort()
    return {"median_ms": statistics.median(times), "p20_ms": _quantile(times, 0.2), "p80_ms": _quantile(times, 0.8)}
