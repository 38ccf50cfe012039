"""benchmarks/probe_reader.py runs end to end and writes one CSV row per reader."""
import csv

from benchmarks import probe_reader


def test_probe_reader_benchmark_rows(tmp_path):
    out = tmp_path / "probe_reader.csv"
    rows = probe_reader.main(["--samples", "2", "--size", "64", "--rounds", "2", "--csv", str(out)])
    assert [r["reader"] for r in rows] == ["per_item", "held"]
    assert all(r["tiles_per_epoch"] == 2 * 16 and r["tiles_per_s"] > 0 and r["rounds"] == 2 for r in rows)
    assert rows[0]["vs_per_item"] == 1 and rows[1]["preload_s"] != ""
    with open(out, newline="") as f:
        written = list(csv.DictReader(f))
    assert [r["reader"] for r in written] == ["per_item", "held"]
    assert {"device", "torch", "triton", "commit"} <= set(written[0])
