"""Sen2Venus v1 and v2 (real nested-zip layout) -> pair shards, through the source and through the CLI."""
import glob
import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import webdataset as wds

from crossscale_kit.data.sources import sen2venus
from tests.data.fixtures import REPO


def run(root, out, **kw):
    return sen2venus.run(sen2venus.Sen2VenusOptions(root=root, out=out, **kw))


def read_shards(out):
    ds = wds.WebDataset(sorted(glob.glob(f"{out}/*.tar")), shardshuffle=False, empty_check=False).decode()
    return {s["__key__"]: s for s in ds}


def test_v1_counts_contents_and_rerun(sen2venus_fake, tmp_path):
    e = sen2venus_fake
    out = tmp_path / "v1"
    s = run(e["v1"], out, shard_size=3)
    assert s["written"] == e["v1_written"] and s["skipped"] == e["v1_skipped"]
    index = json.loads((out / "index.json").read_text())
    assert index["num_samples"] == s["written"] and index["scale"] == 2
    samples = read_shards(out)
    assert len(samples) == s["written"]
    mrs = []
    for key, smp in samples.items():
        meta = smp["json"]
        mr_all, hr_all = e["stacks"][f"{meta['site']}/{meta['mr_file']}"]
        j = meta["patch"]
        assert smp["mr.npy"].dtype == np.int16 and smp["mr.npy"].shape == (4, 8, 8) and smp["hr.npy"].shape == (4, 16, 16)
        np.testing.assert_array_equal(smp["mr.npy"], mr_all[j])
        np.testing.assert_array_equal(smp["hr.npy"], hr_all[j])
        mrs.append(smp["mr.npy"])
    # per-band statistics of the written MR tiles go into the index
    mrs = np.stack(mrs).astype(np.float64)
    assert index["band_stats"]["nir"]["mean"] == pytest.approx(mrs[:, 3].mean())
    assert index["band_stats"]["blue"]["max"] == mrs[:, 0].max()
    # re-run into the same folder with a larger shard size: stale shards are removed, content identical
    s2 = run(e["v1"], out, shard_size=100, shuffle=False)
    assert s2["written"] == s["written"] and len(glob.glob(f"{out}/*.tar")) == 1
    assert set(read_shards(out)) == set(samples)


def test_v1_site_selection(sen2venus_fake, tmp_path):
    e = sen2venus_fake
    s = run(e["v1"], tmp_path / "a", sites=["SITE-A"])
    assert set(s["sites"]) == {"SITE-A"} and "unreadable" not in s["skipped"]
    s = run(e["v1"], tmp_path / "b", holdout_sites=["SITE-A"], bands=["B4", "B8"])
    assert set(s["sites"]) == {"SITE-B"} and s["written"] == 3
    smp = next(iter(read_shards(tmp_path / "b").values()))
    assert smp["mr.npy"].shape[0] == 2
    with pytest.raises(ValueError, match="SITE-Z.*available sites"):
        run(e["v1"], tmp_path / "c", sites=["SITE-Z"])
    with pytest.raises(ValueError, match="B11"):
        run(e["v1"], tmp_path / "c", bands=["B11"])


def _check_v2(e, out):
    samples = read_shards(out)
    assert len(samples) == e["v2_written"]
    for key, smp in samples.items():
        mr, hr = e["v2_pairs"][int(smp["json"]["patch"])]
        np.testing.assert_array_equal(smp["mr.npy"], mr)
        np.testing.assert_array_equal(smp["hr.npy"], hr)
        assert smp["json"]["mr_file"].startswith("/vsizip/{/vsizip/") or smp["json"]["mr_file"].startswith("/vsizip/")


def test_v2_nested_zips_are_read_in_place(sen2venus_fake, tmp_path):
    e = sen2venus_fake
    before = sorted(p.name for p in e["v2"].iterdir())
    s = run(e["v2"], tmp_path / "v2")
    assert s["written"] == e["v2_written"] and s["skipped"] == e["v2_skipped"], s
    _check_v2(e, tmp_path / "v2")
    assert sorted(p.name for p in e["v2"].iterdir()) == before  # nothing extracted beside the zip
    # a looser nodata threshold keeps the patch with a quarter-nodata corner
    s = run(e["v2"], tmp_path / "v2b", max_nodata=0.3)
    assert s["written"] == e["v2_written"] + 1 and s["skipped"]["nodata"] == 1


def test_v2_extracted_outer_zip_reads_the_same(sen2venus_fake, tmp_path):
    e = sen2venus_fake
    root = tmp_path / "extracted"
    with zipfile.ZipFile(e["v2"] / "SITE-C.zip") as z:
        z.extractall(root)
    assert (root / "SITE-C" / "index.csv").is_file()
    s = run(root, tmp_path / "out")
    assert s["written"] == e["v2_written"] and s["skipped"] == e["v2_skipped"]
    _check_v2(e, tmp_path / "out")


def test_v2_cli_and_bad_column(sen2venus_fake, tmp_path):
    e = sen2venus_fake
    r = subprocess.run([sys.executable, "tools/make_shards.py", "sen2venus", str(e["v2"]), "--out", str(tmp_path / "o"),
                        "--v2-mr-column", "b2b3b4b8_20m"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "b2b3b4b8_20m" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "tools/make_shards.py", "sen2venus", str(e["v2"]), "--out", str(tmp_path / "o")],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["written"] == e["v2_written"]


def test_missing_root_and_empty_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run(tmp_path / "nope", tmp_path / "o")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "SITE.7z").write_bytes(b"7z")
    with pytest.raises(FileNotFoundError, match="extract them first"):
        run(tmp_path / "empty", tmp_path / "o")
    shutil.rmtree(tmp_path / "empty")
