"""tools/probe.py on the fake GEO-Bench / MADOS data, then tools/report.py over its rows."""
import csv
import json
import subprocess
import sys

import pytest

from tests.data.fixtures import REPO, load_tool

FAST = ["--img-size", "32", "--epochs", "12", "--lr", "1e-2", "--batch-size", "16", "--no-progress"]


@pytest.fixture(scope="module")
def cashew_results(tiny_encoder, geobench_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("probe")
    probe = load_tool("probe")
    summaries = probe.run(["--encoder", str(tiny_encoder), "--dataset", "m-cashew-plant", "--root",
                            str(geobench_root / "m-cashew-plant"), "--seeds", "2", "--out", str(out), "--mode", "cached", *FAST])
    return out, summaries[0]


def test_probe_beats_chance_and_writes_rows(cashew_results):
    out, summary = cashew_results
    # 7 classes, class 0 scored: chance mIoU is about 1/7 * 1/2; a frozen tiny ViT separates them
    assert summary["test_miou_mean"] > 0.6, summary
    data = json.loads((out / "ijepa_sa__m-cashew-plant__cached.json").read_text())
    assert [r["seed"] for r in data["rows"]] == [0, 1]
    for r in data["rows"]:
        assert r["recipe"] == "gin/ijepa_sa.gin" and r["dataset"] == "m-cashew-plant" and r["mode"] == "cached"
        assert len(r["per_class_iou"]) == 7 and r["per_class_iou"][0] is not None and 0 <= r["val_miou"] <= 1
        assert r["protocol"] == "custom" and any("mode='cached'" in d for d in r["departures"])
        assert r["num_train"] == 6 * 16  # both tasks cut into 4 x 4 tiles
    with open(out / "ijepa_sa__m-cashew-plant__cached.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and {"encoder", "dataset", "seed", "val_miou", "test_miou", "iou_1"} <= set(rows[0])
    assert list((out / "feature_cache").rglob("features.npy"))


def test_report_puts_ours_beside_the_paper(cashew_results, tmp_path):
    out, summary = cashew_results
    report = load_tool("report")
    tables = report.run([str(out), "--out", str(tmp_path), "--quiet"])
    md = (tmp_path / "report.md").read_text()
    assert "### Table I:" in md and "### Table IV:" in md
    sa = next(r for r in tables[0]["rows"] if r["key"] == "ijepa_sa")
    ours = sa["cells"]["m-cashew-plant"]["ours"]
    assert ours["n"] == 2 and ours["mean"] == pytest.approx(100 * summary["test_miou_mean"])
    assert sa["cells"]["m-cashew-plant"]["paper"] == 23.57
    line = next(li for li in md.splitlines() if li.startswith("| SA-model (`ijepa_sa`)"))
    assert f"{ours['mean']:.2f}" in line and "23.57" in line and "41.73" in line
    with open(tmp_path / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"table", "row", "dataset", "ours_mean", "paper"} <= set(rows[0])


def test_report_labels_and_other_table(tmp_path):
    rows = [{"encoder": "e", "recipe": "gin/ablations/latentmim_sa_block.gin", "label": None, "dataset": "mados",
             "seed": s, "test_miou": v} for s, v in enumerate([0.40, 0.42])]
    rows.append({"encoder": "x", "recipe": None, "label": "my_run", "dataset": "m-SA-crop-type", "seed": 0, "test_miou": 0.2})
    (tmp_path / "r.json").write_text(json.dumps({"rows": rows}))
    report = load_tool("report")
    tables = report.run([str(tmp_path / "r.json"), "--out", str(tmp_path / "o"), "--quiet"])
    block = next(r for r in tables[3]["rows"] if r["row"] == "Block")
    assert block["cells"]["mados"]["ours"]["mean"] == pytest.approx(41.0)
    assert tables[-1]["id"] == "Other" and tables[-1]["rows"][0]["key"] == "my_run"
    tables = report.run(["--runs", str(tmp_path / "r.json"), "--out", str(tmp_path / "rep.md"), "--quiet",
                          "--relabel", "my_run=ijepa_hr"])
    assert (tmp_path / "rep.md").is_file() and (tmp_path / "rep.csv").is_file()
    hr = next(r for r in tables[0]["rows"] if r["key"] == "ijepa_hr")
    assert hr["cells"]["m-SA-crop-type"]["ours"]["mean"] == pytest.approx(20.0)


def test_probe_corrupt_sample_stops_or_is_counted(tiny_encoder, geobench_root, tmp_path):
    probe = load_tool("probe")
    args = ["--encoder", str(tiny_encoder), "--dataset", "m-cashew-plant", "--root", str(geobench_root),
            "--partition", "corrupt", "--seeds", "1", "--out", str(tmp_path), *FAST[:2], "--epochs", "1",
            "--no-progress"]
    with pytest.raises(ValueError, match="sample_corrupt"):
        probe.run(args)
    (summary,) = probe.run(args + ["--skip-corrupt"])
    assert summary["skipped"]["train"] == {"corrupt": 1}


def test_probe_mados_and_sa(tiny_encoder, geobench_root, mados_root, tmp_path):
    probe = load_tool("probe")
    common = ["--encoder", str(tiny_encoder), "--seeds", "1", "--out", str(tmp_path), "--img-size", "32",
              "--epochs", "2", "--no-progress"]
    (m,) = probe.run(["--dataset", "mados", "--root", str(mados_root), *common])
    (s,) = probe.run(["--dataset", "m-SA-crop-type", "--root", str(geobench_root), *common, "--label", "sa_run"])
    assert 0 <= m["test_miou_mean"] <= 1 and 0 <= s["test_miou_mean"] <= 1
    assert m["mode"] == s["mode"] == "faithful"
    rows = json.loads((tmp_path / "sa_run__m-SA-crop-type__faithful.json").read_text())["rows"]
    assert rows[0]["num_train"] == 6 * 16 and len(rows[0]["per_class_iou"]) == 10  # SA tiled 4 x 4, class 0 scored


def test_faithful_mode_scores_class0_and_learns(tiny_encoder, geobench_root, tmp_path):
    probe = load_tool("probe")
    (s,) = probe.run(["--encoder", str(tiny_encoder), "--dataset", "m-SA-crop-type", "--root", str(geobench_root),
                       "--seeds", "1", "--out", str(tmp_path), *FAST])
    row = json.loads((tmp_path / "ijepa_sa__m-SA-crop-type__faithful.json").read_text())["rows"][0]
    assert row["per_class_iou"][0] is not None and row["per_class_iou"][0] > 0.3
    assert s["test_miou_mean"] > 0.4, s


def test_class_count_mismatch_exits_2(tiny_encoder, geobench_root, tmp_path):
    r = subprocess.run([sys.executable, "tools/probe.py", "--encoder", str(tiny_encoder), "--dataset", "m-SA-crop-type",
                        "--root", str(geobench_root / "m-cashew-plant"), "--out", str(tmp_path), "--epochs", "1"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "m-cashew-plant" in r.stderr and "Traceback" not in r.stderr


def test_tools_run_from_repo_root_without_install():
    for tool in ("probe", "report", "cluster_map"):
        r = subprocess.run([sys.executable, f"tools/{tool}.py", "--help"], cwd=REPO, capture_output=True, text=True,
                           timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ""})
        assert r.returncode == 0, r.stderr


def test_report_marks_rows_off_the_paper_protocol(tmp_path):
    base = {"encoder": "e", "recipe": "gin/latentmim_sa.gin", "label": None, "dataset": "m-cashew-plant"}
    paper = [dict(base, seed=s, test_miou=0.25, mode="faithful", protocol="paper", departures=[]) for s in range(3)]
    quick = [dict(base, recipe="gin/ijepa_sa.gin", seed=0, test_miou=0.6, mode="cached", protocol="custom",
                  departures=["epochs=5 (paper 100)", "preset cpu_quick"], steps=300, presets=["cpu_quick"])]
    (tmp_path / "r.json").write_text(json.dumps({"rows": paper + quick}))
    report = load_tool("report")
    tables = report.run([str(tmp_path / "r.json"), "--out", str(tmp_path / "o"), "--quiet"])
    md = (tmp_path / "o" / "report.md").read_text()
    lm = next(li for li in md.splitlines() if li.startswith("| SA-model (`latentmim_sa`)"))
    ij = next(li for li in md.splitlines() if li.startswith("| SA-model (`ijepa_sa`)"))
    assert "25.00 ± 0.00 (n=3) |" in lm and "†" not in lm
    assert "60.00 ± 0.00 (n=1) †" in ij and "- `ijepa_sa` on m-Cashew: epochs=5 (paper 100); preset cpu_quick" in md
    cell = next(r for r in tables[0]["rows"] if r["key"] == "ijepa_sa")["cells"]["m-cashew-plant"]["ours"]
    assert cell["mode"] == "cached" and cell["steps"] == 300 and cell["protocol"] == "custom"


def test_report_bad_input_exits_2(tmp_path, capsys):
    report = load_tool("report")
    assert report.main([str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_report_shows_cached_and_faithful_rows_of_one_encoder_both_marked(tmp_path):
    """A cached row beside a faithful one of the same encoder and dataset is shown, marked with its mode (it used
    to be dropped silently); the faithful number stays first and is the cell's headline; the CSV has both."""
    import csv

    base = {"encoder": "e", "recipe": "gin/latentmim_sa.gin", "label": None, "dataset": "m-cashew-plant"}
    faithful = [dict(base, seed=s, test_miou=v, mode="faithful", protocol="paper", departures=[])
                for s, v in enumerate([0.24, 0.26])]
    cached = [dict(base, seed=0, test_miou=0.30, mode="cached", protocol="custom", departures=["mode cached"])]
    (tmp_path / "r.json").write_text(json.dumps({"rows": faithful + cached}))
    report = load_tool("report")
    tables = report.run([str(tmp_path / "r.json"), "--out", str(tmp_path / "o"), "--quiet"])
    md = (tmp_path / "o" / "report.md").read_text()
    lm = next(li for li in md.splitlines() if li.startswith("| SA-model (`latentmim_sa`)"))
    assert "25.00 ± 1.41 (n=2, faithful)<br>30.00 ± 0.00 (n=1, cached) †" in lm
    assert "- `latentmim_sa` on m-Cashew: mode cached" in md
    cell = next(r for r in tables[0]["rows"] if r["key"] == "latentmim_sa")["cells"]["m-cashew-plant"]["ours"]
    assert cell["mode"] == "faithful" and [o["mode"] for o in cell["also"]] == ["cached"]
    with open(tmp_path / "o" / "report.csv") as f:
        got = [(r["mode"], r["ours_mean"]) for r in csv.DictReader(f)
               if r["table"] == "I" and r["key"] == "latentmim_sa" and r["dataset"] == "m-cashew-plant"]
    assert [(m, round(float(v), 2)) for m, v in got] == [("faithful", 25.0), ("cached", 30.0)]
