"""Shard sets are written whole, never mixed; nodata counted and skipped at write time; bad tile sizes refused."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from crossscale_kit.data import DataError, PairedRandomResizedCrop, PairedTiles, PairShardWriter
from crossscale_kit.data.writer import nodata_fraction
from tests.kit.data.fakes import good_pair

REPO = Path(__file__).resolve().parents[3]


def write_set(root: Path, n: int, shard_size: int = 2, seed: int = 0, **kw) -> dict:
    rng = np.random.default_rng(seed)
    with PairShardWriter(root, shard_size, **kw) as w:
        for i in range(n):
            w.write(f"s{seed}-{i}", *good_pair(rng, h=8))
    return json.loads((root / "index.json").read_text())


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def siblings(root: Path) -> list[str]:
    return sorted(p.name for p in root.parent.iterdir() if p.name != root.name)


def test_a_failed_rewrite_leaves_the_old_set_whole(tmp_path):
    out = tmp_path / "set"
    write_set(out, 5)
    before = snapshot(out)
    rng = np.random.default_rng(1)
    with pytest.raises(RuntimeError, match="source died"):
        with PairShardWriter(out, 2) as w:
            for i in range(3):
                w.write(f"new{i}", *good_pair(rng, h=8))
            raise RuntimeError("source died")
    assert snapshot(out) == before and siblings(out) == []


def test_replace_swaps_the_whole_set(tmp_path):
    out = tmp_path / "set"
    write_set(out, 6)  # 3 shards
    index = write_set(out, 1, seed=1)  # 1 shard: nothing of the old set may remain
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "pairs-000000.tar"]
    assert index["num_samples"] == 1 and siblings(out) == []
    assert PairedTiles(str(out), normalize=False).check()["num_samples"] == 1


def test_non_empty_root_refused_without_replace(tmp_path):
    out = tmp_path / "set"
    write_set(out, 2)
    before = snapshot(out)
    with pytest.raises(ValueError, match="not empty.*--replace"):
        PairShardWriter(out, 2, replace=False)
    assert snapshot(out) == before and siblings(out) == []


def test_temporaries_of_killed_writers_are_removed(tmp_path):
    out = tmp_path / "set"
    r = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f".set.tmp-{int(r.stdout)}"  # a pid that has exited
    dead.mkdir()
    (dead / "pairs-000000.tar").write_bytes(b"half")
    alive = tmp_path / f".set.tmp-{os.getppid()}"  # a live process's set in progress is left alone
    alive.mkdir()
    write_set(out, 2)
    assert not dead.exists() and alive.exists()


def test_reader_refuses_a_mixed_set(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_set(a, 4)
    write_set(b, 6, seed=1)
    os.replace(b / "pairs-000002.tar", a / "pairs-000002.tar")  # a shard of another run
    with pytest.raises(DataError, match=r"not one shard set.*not in index.json \(pairs-000002.tar\).*--replace"):
        PairedTiles(str(a)).check()
    (a / "pairs-000002.tar").unlink()
    (a / "pairs-000001.tar").unlink()
    with pytest.raises(DataError, match=r"lists 1 shard\(s\) that are missing \(pairs-000001.tar\)"):
        PairedTiles(str(a)).check()


@pytest.mark.parametrize("kind", ["sentinel", "declared", "nan"])
def test_nodata_counted_per_tile_and_skipped_above_the_threshold(tmp_path, kind):
    rng = np.random.default_rng(0)
    dtype = np.float32 if kind == "nan" else np.int16
    value = {"sentinel": -10000, "declared": 0, "nan": np.nan}[kind]
    declared = 0 if kind == "declared" else None
    pairs = {}
    for name, frac in (("clean", 0.0), ("few", 0.05), ("many", 0.5)):
        mr, hr = good_pair(rng, h=20, dtype=dtype)
        hr[:, : int(round(frac * 40)), :] = value  # whole rows: frac of the HR pixels in every band
        assert nodata_fraction(hr, declared) == pytest.approx(frac)
        pairs[name] = (mr, hr)
    out = tmp_path / kind
    with PairShardWriter(out, 8, nodata=declared, max_nodata_fraction=0.1) as w:
        written = {name: w.write(name, *p) for name, p in pairs.items()}
    assert written == {"clean": True, "few": True, "many": False}
    index = json.loads((out / "index.json").read_text())
    assert index["skipped"] == {"nodata": 1} and index["num_samples"] == 2 and index["max_nodata_fraction"] == 0.1
    # the reader applies the index's rule: the tile with 5 % nodata is used, not rejected as bad
    tiles = PairedTiles(str(out), batch_size=2, num_workers=0, shuffle_buffer=1, normalize=False,
                        crop=PairedRandomResizedCrop(size=8))
    stream = tiles.stream(seed=0)
    batch = next(iter(stream))
    assert sorted(batch["key"]) == ["clean", "few"] and stream.stats == {}
    # its nodata pixels are filled with the tile's valid per-band mean before they reach the model
    few_hr = batch["hr"][batch["key"].index("few")].numpy()
    valid = pairs["few"][1][:, 2:, :].astype(np.float64)
    np.testing.assert_allclose(few_hr[:, :2, :], np.broadcast_to(valid.mean(axis=(1, 2))[:, None, None], (4, 2, 40)),
                               atol=0.5)
    np.testing.assert_array_equal(few_hr[:, 2:, :], valid)


def test_undeclared_nodata_is_counted_and_reported(tmp_path, caplog):
    rng = np.random.default_rng(0)
    mr, hr = good_pair(rng, h=8)
    mr[:, 0, 0] = -10000
    with caplog.at_level("WARNING", logger="crossscale_kit.data.writer"):
        with PairShardWriter(tmp_path / "o", 4) as w:
            w.write("holey", mr, hr)
            w.write("clean", *good_pair(rng, h=8))
    assert json.loads((tmp_path / "o" / "index.json").read_text())["nodata_pairs"] == 1
    assert "1 of 2 pairs" in caplog.text and "max_nodata_fraction" in caplog.text


def test_tile_sizes_the_reader_rejects_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="below the reader's minimum of 8 px"):
        with PairShardWriter(tmp_path / "o", 4) as w:
            w.write("tiny", *good_pair(rng, h=4))
    assert not (tmp_path / "o").exists()


def cli(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "tools/make_shards.py", *map(str, argv)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_cli_refuses_a_non_empty_out_unless_replace(tmp_path):
    out = tmp_path / "out"
    args = ["synthetic", "--out", out, "--mr-size", "8", "--shard-size", "2", "--no-progress"]
    assert cli(*args, "--num-pairs", "4").returncode == 0
    before = snapshot(out)
    r = cli(*args, "--num-pairs", "2")
    assert r.returncode == 2 and "--replace" in r.stderr and "Traceback" not in r.stderr
    assert snapshot(out) == before
    r = cli(*args, "--num-pairs", "2", "--replace")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "index.json").read_text())["num_samples"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "pairs-000000.tar"]


def test_cli_refuses_tiny_tiles_up_front(tmp_path):
    r = cli("synthetic", "--out", tmp_path / "o", "--mr-size", "4", "--num-pairs", "1000", "--no-progress")
    assert r.returncode == 2 and "mr_size must be >= 8" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()
