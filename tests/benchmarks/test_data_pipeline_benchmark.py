"""benchmarks/data_pipeline.py runs end to end: one CSV row per case, ratios from the same run."""
import csv

from benchmarks import data_pipeline


def test_stages_give_one_row_per_stage_against_decode(tmp_path):
    out = tmp_path / "dp.csv"
    rows = data_pipeline.main(["--stages", "--pipelines", "latentmim", "--mr-size", "32", "--batch-size", "4",
                               "--batches", "3", "--rounds", "1", "--num-pairs", "16", "--csv", str(out)])
    assert [r["reader"] for r in rows] == ["decode"] + [f"stage:{s}" for s in data_pipeline.STAGES]
    assert rows[0]["vs_decode"] == 1 and all(r["pairs_per_s"] > 0 for r in rows)
    for r in rows[1:]:  # each ratio is the stage's rate over the decode rate of the same run
        assert abs(r["vs_decode"] - r["pairs_per_s"] / rows[0]["pairs_per_s"]) < 0.01
    with open(out, newline="") as f:
        written = list(csv.DictReader(f))
    assert len(written) == len(rows) and {"device", "torch", "commit", "load_avg_1m"} <= set(written[0])


def test_new_reader_against_decode_with_one_worker(tmp_path):
    rows = data_pipeline.main(["--workers", "1", "--pipelines", "ijepa", "--mr-size", "32", "--batch-size", "4",
                               "--batches", "2", "--warmup", "1", "--rounds", "1", "--num-pairs", "16",
                               "--baseline", "no-such-commit", "--no-csv"])
    new = next(r for r in rows if r["reader"] == "new")
    assert new["workers"] == 1 and new["pairs_per_s"] > 0 and new["vs_decode"] > 0
    # int16 MR 32 px and HR 64 px of 4 bands, plus the crop parameters
    assert 4 * (32 * 32 + 64 * 64) * 2 <= new["bytes_per_pair"] < 4 * (32 * 32 + 64 * 64) * 2 + 64


def test_root_urls_are_measured_side_by_side(tmp_path):
    """``--root`` (repeatable): the reader on the same set from a folder and over HTTP (a real http.server)."""
    from crossscale_kit.data.synthetic import SyntheticScenes, write_synthetic_shards
    from tests.servers import start_http

    root = tmp_path / "set"
    write_synthetic_shards(SyntheticScenes(num_pairs=16, mr_size=32, shard_size=4), root, shard_size=4, progress=False)
    with start_http(tmp_path) as url:
        rows = data_pipeline.main(["--root", str(root), "--root", f"{url}/set", "--workers", "1", "--pipelines",
                                   "ijepa", "--batch-size", "4", "--batches", "2", "--warmup", "1", "--rounds", "1",
                                   "--no-csv"])
    new = {r["source"]: r for r in rows if r["reader"] == "new"}
    assert set(new) == {"local", "http"} and all(r["pairs_per_s_per_worker"] > 0 for r in new.values())
    assert new["local"]["vs_local"] == 1 and new["http"]["vs_local"] > 0 and new["http"]["vs_decode"] > 0


def test_finish_times_each_set_of_views_against_both(tmp_path):
    """``--finish``: to_device for MR + HR, MR only and HR only on the same batches; ratios from the same rounds."""
    out = tmp_path / "dp.csv"
    rows = data_pipeline.main(["--finish", "--pipelines", "mini", "--mr-size", "48", "--batch-size", "4",
                               "--batches", "2", "--rounds", "2", "--num-pairs", "16", "--csv", str(out)])
    assert [r["reader"] for r in rows] == [f"to_device:{v}" for v in data_pipeline.FINISH_VIEWS]
    assert all(r["ms_per_batch"] > 0 and r["rounds"] == 2 for r in rows) and rows[0]["vs_both"] == 1
    with open(out, newline="") as f:
        written = list(csv.DictReader(f))
    assert len(written) == 3 and {"device", "torch", "commit", "ms_per_batch", "vs_both"} <= set(written[0])
