"""benchmarks/probe_reader.py runs end to end and writes one CSV row per reader."""
import csv

from benchmarks import probe_reader


def test_probe_reader_benchmark_rows(tmp_path):
    out = tmp_path / "probe_reader.csv"
    rows = probe_reader.main(["--samples", "2", "--size", "64", "--rounds", "2", "--csv", str(out)])
    assert [(r["dataset"], r["reader"]) for r in rows] == [("m-cashew-plant", "per_item"), ("m-cashew-plant", "held"),
                                                           ("mados", "per_item"), ("mados", "held")]
    assert [r["items_per_epoch"] for r in rows] == [2 * 16, 2 * 16, 2, 2]  # 4 x 4 tiles a sample; MADOS crops
    assert all(r["items_per_s"] > 0 and r["rounds"] == 2 for r in rows)
    assert rows[0]["vs_per_item"] == 1 and rows[1]["preload_s"] != "" and rows[2]["preload_s"] == ""
    with open(out, newline="") as f:
        written = list(csv.DictReader(f))
    assert [r["reader"] for r in written] == ["per_item", "held"] * 2
    assert {"device", "torch", "triton", "commit"} <= set(written[0])
