"""The GPU benchmark's code path, run end to end on the CPU with the Triton kernels interpreted.

``python benchmarks/gram_kernel.py`` is meant to be one command on a GPU machine; this runs its
Triton providers (``ours_nxn``, ``ours_dxd``) on a tiny case under ``--interpret`` so that a broken
provider, column or CSV row shows up here rather than in a GPU session.
"""
from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed (the [test] extra)")
def test_benchmark_runs_the_triton_providers_and_writes_rows(tmp_path):
    out = tmp_path / "gram.csv"
    proc = subprocess.run(
        [sys.executable, "benchmarks/gram_kernel.py", "--interpret", "--shapes", "2x23x12", "--dtypes", "float32",
         "--modes", "forward,full", "--rep-ms", "1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(out)))
    providers = {r["provider"] for r in rows}
    assert {"eager", "torch_dxd", "ours", "ours_nxn", "ours_dxd"} <= providers
    assert len(rows) == len(providers) * 2
    for r in rows:
        assert r["device"].startswith("cpu") and r["torch"] and r["triton"] and r["commit"]
        assert float(r["median_ms"]) > 0, r
        assert float(r["err_loss"]) < 1e-5 and float(r["err_grad"]) < 1e-4, r
    assert {r["form"] for r in rows if r["provider"] == "ours_dxd"} == {"dxd"}
