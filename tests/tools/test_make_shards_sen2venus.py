"""Sen2Venus v1/v2 -> pair shards through the source module's argparse entry (as make_shards.py calls it)."""
import argparse
import glob
import json

import numpy as np
import pytest
import webdataset as wds

from kit.data.sources import sen2venus


def run(*argv):
    p = argparse.ArgumentParser()
    sen2venus.add_arguments(p)
    return sen2venus.run(p.parse_args([str(a) for a in argv]))


def read_shards(out):
    ds = wds.WebDataset(sorted(glob.glob(f"{out}/*.tar")), shardshuffle=False, empty_check=False).decode()
    return {s["__key__"]: s for s in ds}


def test_v1_counts_contents_and_rerun(sen2venus_fake, tmp_path):
    e = sen2venus_fake
    out = tmp_path / "v1"
    s = run(e["v1"], "--out", out, "--shard-size", "3")
    assert s["written"] == e["v1_written"] and s["skipped"] == e["v1_skipped"]
    index = json.loads((out / "index.json").read_text())
    assert index["num_samples"] == s["written"] and index["scale"] == 2
    samples = read_shards(out)
    assert len(samples) == s["written"]
    for key, smp in samples.items():
        meta = smp["json"]
        mr_all, hr_all = e["stacks"][f"{meta['site']}/{meta['mr_file']}"]
        j = meta["patch"]
        assert smp["mr.npy"].dtype == np.int16 and smp["mr.npy"].shape == (4, 8, 8) and smp["hr.npy"].shape == (4, 16, 16)
        np.testing.assert_array_equal(smp["mr.npy"], mr_all[j])
        np.testing.assert_array_equal(smp["hr.npy"], hr_all[j])
    # re-run into the same folder with a larger shard size: stale shards are removed, content identical
    s2 = run(e["v1"], "--out", out, "--shard-size", "100", "--no-shuffle")
    assert s2["written"] == s["written"] and len(glob.glob(f"{out}/*.tar")) == 1
    assert set(read_shards(out)) == set(samples)


def test_v1_site_selection(sen2venus_fake, tmp_path):
    e = sen2venus_fake
    s = run(e["v1"], "--out", tmp_path / "a", "--sites", "SITE-A")
    assert set(s["sites"]) == {"SITE-A"} and "unreadable" not in s["skipped"]
    s = run(e["v1"], "--out", tmp_path / "b", "--holdout-sites", "SITE-A", "--bands", "B4", "B8")
    assert set(s["sites"]) == {"SITE-B"} and s["written"] == 3
    smp = next(iter(read_shards(tmp_path / "b").values()))
    assert smp["mr.npy"].shape[0] == 2
    with pytest.raises(ValueError, match="SITE-Z.*available sites"):
        run(e["v1"], "--out", tmp_path / "c", "--sites", "SITE-Z")
    with pytest.raises(ValueError, match="B11"):
        run(e["v1"], "--out", tmp_path / "c", "--bands", "B11")


def test_v2_zip(sen2venus_fake, tmp_path):
    e = sen2venus_fake
    s = run(e["v2"], "--out", tmp_path / "v2")
    assert s["written"] == e["v2_written"] and s["skipped"] == e["v2_skipped"]
    for key, smp in read_shards(tmp_path / "v2").items():
        pid = key.rsplit("-", 1)[1]
        mr, hr = e["v2_pairs"][pid]
        np.testing.assert_array_equal(smp["mr.npy"], mr)
        np.testing.assert_array_equal(smp["hr.npy"], hr)
    # configurable member names: a pattern matching nothing writes nothing and says so
    with pytest.warns(UserWarning, match="no member matches"):
        s = run(e["v2"], "--out", tmp_path / "v2b", "--v2-mr-pattern", "{id}_S2.tif")
    assert s["written"] == 0


def test_missing_root_and_empty_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run(tmp_path / "nope", "--out", tmp_path / "o")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "SITE.7z").write_bytes(b"7z")
    with pytest.raises(FileNotFoundError, match="extract them first"):
        run(tmp_path / "empty", "--out", tmp_path / "o")
