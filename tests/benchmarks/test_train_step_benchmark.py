"""benchmarks/train_step.py: the CSV carries eager and compiled rows with their host-sync counts."""
import csv

import pytest
import torch

from benchmarks import train_step as bench


def test_sync_counter_tells_device_reads_from_sampler_draws():
    class Sampler:
        def sample(self, n):
            return int(torch.randint(0, 5, (1,)))  # a scalar read of a CPU draw

    class Owner:
        sampler = Sampler()

    owner = Owner()
    counter = bench.SyncCounter()
    with counter, counter.samplers(owner):
        owner.sampler.sample(3)
        x = torch.ones(3)
        bool(x.sum() > 0)
        torch.nonzero(x)
    assert counter.sampler_reads == 1 and counter.host_syncs == 2
    assert set(counter.sites) == {"other"}  # issued from this test, not from kit/
    assert "sample" not in vars(owner.sampler)  # the wrapper is removed again


def test_csv_has_compiled_beside_eager_and_sync_counts(tmp_path):
    out = tmp_path / "train_step.csv"
    assert bench.main(["--hosts", "latentmim", "--batch", "2", "--repeat", "1", "--warmup", "1", "--compile",
                       "--compile-backend", "aot_eager", "--csv", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [(r["variant"], r["mode"]) for r in rows] == [
        ("host", "eager"), ("host+SA", "eager"), ("host", "compiled:aot_eager"), ("host+SA", "compiled:aot_eager")]
    for r in rows:
        assert float(r["median_ms"]) > 0 and r["host_syncs"] != "" and r["device"] and r["commit"] and r["torch"]
    assert rows[1]["sa_ratio"] and rows[2]["eager_over_compiled"]
    # the SA teacher's encoder pass over the HR patches is arithmetic the host does not do
    assert float(rows[1]["gflop_per_step"]) > float(rows[0]["gflop_per_step"]) > 0
    assert float(rows[1]["sa_flop_ratio"]) > 1.05 and rows[0]["sa_flop_ratio"] == ""


def test_bf16_on_cpu_is_refused_with_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--bf16", "--device", "cpu"])
    assert e.value.code == 2 and "--bf16" in capsys.readouterr().err
