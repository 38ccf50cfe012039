"""The benchmarks' shared plumbing: timers called as documented, CSV rows kept in one file per benchmark.

No timing is asserted (the shared CPU makes it meaningless); only how often the timed function runs
and what comes back.
"""
from __future__ import annotations

import csv

import pytest
import torch

from benchmarks._common import append_csv, measure, time_fn


def test_time_fn_runs_exactly_warmup_plus_repeat_calls():
    calls = []
    res = time_fn(lambda: calls.append(1), warmup=2, repeat=5)
    assert len(calls) == 7
    assert set(res) == {"median_ms", "p20_ms", "p80_ms"}
    assert 0 <= res["p20_ms"] <= res["median_ms"] <= res["p80_ms"]


def test_time_fn_runs_the_given_sync_after_every_timed_call():
    syncs = []
    time_fn(lambda: None, warmup=1, repeat=3, sync=lambda: syncs.append(1))
    assert len(syncs) == 1 + 3  # once after the warm-up, once per timed call


def test_measure_on_cpu_uses_the_torch_timer():
    calls = []
    x = torch.randn(64, 64)
    res = measure(lambda: calls.append(x @ x), device="cpu", rep_ms=5)
    assert res["timer"] == "torch.utils.benchmark.Timer"
    assert res["runs"] >= 1 and len(calls) >= res["runs"]
    assert 0 < res["p20_ms"] <= res["median_ms"] <= res["p80_ms"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="do_bench needs a GPU")
def test_measure_on_cuda_uses_do_bench():
    x = torch.randn(256, 256, device="cuda")
    res = measure(lambda: x @ x, device="cuda", warmup_ms=5, rep_ms=10)
    assert res["timer"] == "triton.testing.do_bench" and res["runs"] >= 1


def test_append_csv_widens_the_header_instead_of_starting_another_file(tmp_path):
    path = tmp_path / "b.csv"
    append_csv(path, [{"device": "cpu", "ms": 1.0}])
    append_csv(path, [{"device": "cpu", "ms": 2.0, "error": "boom"}])
    append_csv(path, [{"ms": 3.0}])
    assert [p.name for p in tmp_path.iterdir()] == ["b.csv"]
    rows = list(csv.DictReader(open(path)))
    assert [r["ms"] for r in rows] == ["1.0", "2.0", "3.0"]
    assert [r["error"] for r in rows] == ["", "boom", ""]
    assert rows[2]["device"] == ""
