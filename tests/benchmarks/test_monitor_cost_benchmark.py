"""benchmarks/monitor_cost.py runs end to end at the tiny size and writes its CSV rows."""
import csv

from benchmarks import monitor_cost


def test_monitor_cost_writes_one_row_per_variant(tmp_path, capsys):
    out = tmp_path / "cost.csv"
    rc = monitor_cost.main(["--recipe", "gin/ijepa_sa.gin", "--preset", "gin/presets/test_tiny.gin", "--steps", "4",
                            "--log_every", "2", "--probe_every", "2", "--repeats", "1", "--csv", str(out)])
    assert rc == 0
    rows = list(csv.DictReader(open(out)))
    assert [r["variant"] for r in rows] == ["bare", "monitors", "monitors+probe"]
    assert float(rows[0]["cost_vs_bare"]) == 1.0
    assert float(rows[2]["probe_ms_per_step"]) > 0.0 and float(rows[0]["probe_ms_per_step"]) == 0.0
    assert all(r["commit"] and r["torch"] and r["device"] for r in rows)
    assert "monitors+probe" in capsys.readouterr().out


def test_monitor_cost_refuses_bad_arguments(capsys):
    assert monitor_cost.main(["--steps", "1"]) == 2
    assert "--steps" in capsys.readouterr().err
