"""The shard reader: round trip, exact resume, node/worker split, actionable errors, bad samples."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from crossscale_kit.data import DataError, PairedRandomResizedCrop, PairedTiles, PairShardWriter, SyntheticScenes
from crossscale_kit.data.stream import _PairIterable
from crossscale_kit.data.reader import decode_pair, epoch_shards, resampled_shards, shard_samples
from crossscale_kit.data.transforms import false_hr_from_mr
from tests.kit.data.fakes import good_pair, npy_bytes, pair_members, synthetic_root, write_raw_shard

REPO = Path(__file__).resolve().parents[3]
SMALL = dict(crop=PairedRandomResizedCrop(size=12), shuffle_buffer=8)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """24 synthetic pairs, MR 16 px, 6 shards of 4."""
    return synthetic_root(tmp_path_factory.mktemp("pairs"), num_pairs=24, mr_size=16, shard_size=4)


def all_keys(root: Path) -> list[str]:
    cfg = SyntheticScenes(mr_size=16, num_pairs=24)
    return [cfg.key(i) for i in range(24)]


def take(stream, n):
    it = iter(stream)
    return [next(it) for _ in range(n)]


# -- round trip -------------------------------------------------------------------------------------

def test_writer_reader_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    pairs = {f"p{i}": good_pair(rng, h=8) for i in range(5)}
    with PairShardWriter(tmp_path, shard_size=2) as w:
        for k, (mr, hr) in pairs.items():
            w.write(k, mr, hr, {"site": "x"})
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["num_samples"] == 5 and [s["num_samples"] for s in index["shards"]] == [2, 2, 1]
    seen = {}
    for s in index["shards"]:
        for members in shard_samples(tmp_path / s["name"]):
            mr, hr, scale = decode_pair(members, bands=4, scale=2)
            assert json.loads(members["json"])["site"] == "x"
            seen[members["__key__"]] = (mr, hr)
    assert seen.keys() == pairs.keys()
    for k, (mr, hr) in pairs.items():
        np.testing.assert_array_equal(seen[k][0], mr)
        np.testing.assert_array_equal(seen[k][1], hr)
    # through the stream: an identity crop without normalisation gives back the stored pairs
    tiles = PairedTiles(str(tmp_path), batch_size=5, num_workers=0, shuffle_buffer=1, normalize=False,
                        crop=PairedRandomResizedCrop(size=8, scale=(1, 1), ratio=(1, 1)))
    assert tiles.num_samples == 5
    raw = take(tiles.stream(seed=0), 1)[0]
    assert raw["mr"].dtype == torch.int16 and raw["hr"].shape == (5, 4, 16, 16)  # tiles cross as stored
    batch = tiles.to_device(raw, "cpu")
    assert sorted(batch["key"]) == sorted(pairs)
    for i, k in enumerate(batch["key"]):
        assert torch.equal(batch["mr"][i], torch.from_numpy(pairs[k][0].astype(np.float32)))
        assert torch.equal(batch["hr"][i], torch.from_numpy(pairs[k][1].astype(np.float32)))


def test_check_reports(root):
    info = PairedTiles(str(root)).check()
    identity = info.pop("identity")
    assert len(identity["index_sha256"]) == 64 and identity["bands"] == ["blue", "green", "red", "nir"]
    assert info == {"root": str(root), "num_samples": 24, "scale": 2, "bands": 4, "mr_shape": (4, 16, 16),
                    "hr_shape": (4, 32, 32), "band_names": ["blue", "green", "red", "nir"], "mr_gsd": 10.0,
                    "hr_gsd": 5.0}


def test_batch_contract(root):
    tiles = PairedTiles(str(root), batch_size=5, num_workers=0, **SMALL)
    raw = take(tiles.stream(seed=1), 1)[0]
    assert set(raw) == {"mr", "hr", "key", "box", "flip"}
    assert raw["mr"].shape == (5, 4, 16, 16) and raw["hr"].shape == (5, 4, 32, 32) and raw["mr"].dtype == torch.int16
    b = tiles.to_device(raw, "cpu")
    assert set(b) == {"mr", "hr", "key"}
    assert b["mr"].shape == (5, 4, 12, 12) and b["hr"].shape == (5, 4, 24, 24)
    assert b["mr"].dtype == torch.float32 and len(b["key"]) == 5
    assert torch.isfinite(b["mr"]).all() and b["mr"].abs().mean() < 5  # normalised


def test_synthetic_default_root(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSSCALE_CACHE", str(tmp_path))
    tiles = PairedTiles(batch_size=2, num_workers=0, synthetic=SyntheticScenes(mr_size=8, num_pairs=4, shard_size=2),
                        crop=PairedRandomResizedCrop(size=8))
    info = tiles.check()
    assert info["root"].startswith(str(tmp_path)) and info["num_samples"] == 4
    assert tiles.to_device(take(tiles.stream(seed=0), 1)[0], "cpu")["hr"].shape == (2, 4, 16, 16)


# -- exact resume -----------------------------------------------------------------------------------

@pytest.mark.parametrize("workers", [0, 2])
def test_exact_resume(root, workers):
    tiles = PairedTiles(str(root), batch_size=3, num_workers=workers, **SMALL)
    total = 19  # > two epochs of 24 pairs / 3 per batch, with workers at different epochs
    stream = tiles.stream(seed=7)
    it = iter(stream)
    ref, states = [], {}
    for n in range(total):
        if n in (1, 2, 5, 8, 13):
            states[n] = json.loads(json.dumps(stream.state_dict()))  # survives a JSON checkpoint
        ref.append(next(it))
    stream.close()
    for n, state in states.items():
        resumed = tiles.stream(seed=7, state=state)
        it2 = iter(resumed)
        for k in range(n, total):
            if n == 2 and k == 9:  # resume a resumed stream
                state2 = json.loads(json.dumps(resumed.state_dict()))
                assert state2["batches"] == 9
                resumed.close()
                resumed = tiles.stream(seed=7, state=state2)
                it2 = iter(resumed)
            b = next(it2)
            assert b["key"] == ref[k]["key"], (workers, n, k)
            for name in ("mr", "hr", "box", "flip"):
                assert torch.equal(b[name], ref[k][name])
            if k == n:  # the device side is a pure function of the raw batch
                x, y = tiles.to_device(b, "cpu"), tiles.to_device(ref[k], "cpu")
                assert torch.equal(x["mr"], y["mr"]) and torch.equal(x["hr"], y["hr"])
        resumed.close()


def test_epochs_reshuffle(root):
    tiles = PairedTiles(str(root), batch_size=24, num_workers=0, **SMALL)
    e0, e1 = take(tiles.stream(seed=0), 2)
    assert sorted(e0["key"]) == sorted(e1["key"]) == sorted(all_keys(root))
    assert e0["key"] != e1["key"]
    other = take(tiles.stream(seed=1), 1)[0]
    assert other["key"] != e0["key"]


def test_resume_state_mismatch(root):
    tiles = PairedTiles(str(root), batch_size=3, num_workers=0, **SMALL)
    s = tiles.stream(seed=0)
    take(s, 2)
    with pytest.raises(DataError, match="seed"):
        tiles.stream(seed=1, state=s.state_dict())
    with pytest.raises(DataError, match="num_workers"):
        PairedTiles(str(root), batch_size=3, num_workers=2, **SMALL).stream(seed=0, state=s.state_dict())


# -- node / worker split ----------------------------------------------------------------------------

def test_split_covers_every_sample_once_per_epoch(root):
    tiles = PairedTiles(str(root), batch_size=4, num_workers=2, **SMALL)
    info = tiles.check()
    for epoch in range(3):
        keys = Counter()
        for rank in range(2):
            ds: _PairIterable = tiles.stream(seed=5, rank=rank, world_size=2)._dataset
            for w in range(2):
                keys.update(sample["__key__"] for sample in ds.raw_epoch(epoch, w))
        assert sorted(keys) == sorted(all_keys(root)) and set(keys.values()) == {1}
        assert info["num_samples"] == sum(keys.values())


def test_shard_order_is_a_function_of_seed_and_epoch():
    names = [f"s{i}" for i in range(11)]
    orders = [epoch_shards(names, seed=1, epoch=e) for e in range(3)]
    assert all(sorted(o) == sorted(names) for o in orders) and orders[0] != orders[1]
    assert orders == [epoch_shards(list(names), seed=1, epoch=e) for e in range(3)]  # pure: same inputs, same order
    assert epoch_shards(names, seed=2, epoch=0) != orders[0]
    a = resampled_shards(names, seed=1, epoch=0, rank=0, world_size=3, worker=0, num_workers=2)
    b = resampled_shards(names, seed=1, epoch=0, rank=0, world_size=3, worker=1, num_workers=2)
    assert len(a) == len(b) == 2 and all(n in names for n in a + b)


def test_ranks_see_disjoint_batches(root):
    tiles = PairedTiles(str(root), batch_size=4, num_workers=0, shuffle_buffer=8, crop=PairedRandomResizedCrop(size=8))
    k0 = {k for b in take(tiles.stream(seed=2, rank=0, world_size=2), 3) for k in b["key"]}
    k1 = {k for b in take(tiles.stream(seed=2, rank=1, world_size=2), 3) for k in b["key"]}
    assert k0.isdisjoint(k1) and len(k0 | k1) == 24


def test_too_few_shards(root):
    tiles = PairedTiles(str(root), batch_size=2, num_workers=4, **SMALL)
    with pytest.raises(DataError, match="resampled"):
        tiles.stream(seed=0, world_size=2)
    resampled = PairedTiles(str(root), batch_size=2, num_workers=0, resampled=True, **SMALL)
    assert len(take(resampled.stream(seed=0, rank=1, world_size=8), 2)) == 2


# -- actionable errors ------------------------------------------------------------------------------

def test_missing_root(tmp_path):
    with pytest.raises(DataError, match=r"does not exist.*make_shards.py synthetic --out"):
        PairedTiles(str(tmp_path / "nope")).check()


def test_empty_root(tmp_path):
    with pytest.raises(DataError, match=r"no shards \(\*\.tar\) under .*PairedTiles.root"):
        PairedTiles(str(tmp_path)).check()


def test_wrong_band_count(tmp_path):
    rng = np.random.default_rng(0)
    with PairShardWriter(tmp_path, bands=("blue", "green", "red")) as w:
        w.write("a", *good_pair(rng, bands=3))
    with pytest.raises(DataError, match=r"3 bands but PairedTiles.bands = 4.*PairedTiles.bands = 3"):
        PairedTiles(str(tmp_path)).check()
    assert PairedTiles(str(tmp_path), bands=3, normalize=False).check()["bands"] == 3


def test_non_integer_ratio(tmp_path):
    mr = np.zeros((4, 16, 16), np.int16)
    hr = np.zeros((4, 24, 24), np.int16)
    write_raw_shard(tmp_path / "pairs-000000.tar", [("a", pair_members(mr, hr))])
    with pytest.raises(DataError, match=r"not an exact integer multiple.*\(ratio 1.5"):
        PairedTiles(str(tmp_path)).check()


def test_scale_mismatch(root):
    with pytest.raises(DataError, match=r"scale is 2 .* PairedTiles.scale = 3"):
        PairedTiles(str(root), scale=3).check()


def test_non_finite_first_pair(tmp_path):
    mr, hr = good_pair(np.random.default_rng(0), dtype=np.float32)
    hr[1, 3, 3] = np.nan
    write_raw_shard(tmp_path / "pairs-000000.tar", [("a", pair_members(mr, hr))])
    with pytest.raises(DataError, match="NaN or inf"):
        PairedTiles(str(tmp_path)).check()


# -- bad samples ------------------------------------------------------------------------------------

def _corrupt_root(tmp_path: Path, n_good: int = 10) -> Path:
    rng = np.random.default_rng(0)
    samples = [(f"g{i:03d}", pair_members(*good_pair(rng))) for i in range(n_good)]
    mr, hr = good_pair(rng)
    bad = [
        ("badnpy", {"mr.npy": b"\x93NUMPY garbage", "hr.npy": npy_bytes(hr)}),
        ("shortnpy", {"mr.npy": npy_bytes(mr)[:-100], "hr.npy": npy_bytes(hr)}),
        ("bands", pair_members(mr[:3], hr[:3])),
        ("ratio", pair_members(mr, hr[:, :24, :24])),
        ("nan", pair_members(mr.astype(np.float32), np.where(hr == hr.max(), np.nan, hr).astype(np.float32))),
        ("nodata", pair_members(np.where(mr == mr.min(), -10000, mr).astype(np.int16), hr)),
        ("nohr", {"mr.npy": npy_bytes(mr)}),
    ]
    write_raw_shard(tmp_path / "pairs-000000.tar", samples[:5] + bad[:4])
    write_raw_shard(tmp_path / "pairs-000001.tar", bad[4:] + samples[5:])
    # a third shard cut in the middle of a member: its readable samples count, the rest is "truncated"
    full = write_raw_shard(tmp_path / "full.tmp", [(f"t{i}", pair_members(*good_pair(rng))) for i in range(3)])
    data = full.read_bytes()
    (tmp_path / "pairs-000002.tar").write_bytes(data[: len(data) // 2])
    full.unlink()
    return tmp_path


def test_corrupt_members_skipped_and_counted(tmp_path, caplog):
    root = _corrupt_root(tmp_path)
    tiles = PairedTiles(str(root), batch_size=1, num_workers=0, shuffle_buffer=1, max_bad_fraction=0.9,
                        crop=PairedRandomResizedCrop(size=8))
    stream = tiles.stream(seed=0)
    with caplog.at_level("WARNING", logger="crossscale_kit.data"):
        batches = take(stream, 22)  # 11 readable pairs per epoch (10 good + 1 before the truncation)
    keys = [b["key"][0] for b in batches]
    assert set(keys[:11]) == set(keys[11:]) == {f"g{i:03d}" for i in range(10)} | {"t0"}
    # every bad sample of epoch 0 is counted; those of epoch 1 after its last good pair are not consumed yet
    once = {"unreadable_npy": 2, "band_count": 1, "shape": 1, "non_finite": 1, "nodata": 1, "missing_member": 1,
            "truncated": 1}
    assert set(stream.stats) == set(once)
    assert all(once[k] <= v <= 2 * once[k] for k, v in stream.stats.items()), stream.stats
    assert "pairs-000000.tar" in caplog.text and "badnpy" in caplog.text
    # the counts travel with the state
    assert tiles.stream(seed=0, state=stream.state_dict()).stats == stream.stats


def test_too_many_bad_samples_stop_the_run(tmp_path):
    rng = np.random.default_rng(0)
    mr, hr = good_pair(rng, h=8)
    samples = [(f"g{i:03d}", pair_members(mr, hr)) for i in range(110)]
    for i in range(0, 110, 10):
        samples[i] = (f"b{i:03d}", {"mr.npy": b"junk", "hr.npy": npy_bytes(hr)})
    samples[0], samples[1] = samples[1], samples[0]  # check() needs a good first pair
    write_raw_shard(tmp_path / "pairs-000000.tar", samples)
    tiles = PairedTiles(str(tmp_path), batch_size=8, num_workers=0, shuffle_buffer=1,
                        crop=PairedRandomResizedCrop(size=8))
    with pytest.raises(DataError, match="max_bad_fraction"):
        take(tiles.stream(seed=0), 20)


def test_false_hr_stream(root):
    tiles = PairedTiles(str(root), batch_size=4, num_workers=0, false_hr="bilinear", normalize=False,
                        crop=PairedRandomResizedCrop(size=16, scale=(1, 1), ratio=(1, 1)))
    raw = take(tiles.stream(seed=0), 1)[0]
    assert "hr" not in raw  # false HR is made from MR on the device: HR tiles never cross
    b = tiles.to_device(raw, "cpu")
    for mr, hr in zip(b["mr"], b["hr"]):  # identity crop: HR is MR upsampled by s
        torch.testing.assert_close(hr, false_hr_from_mr(mr, 2, "bilinear"), atol=1e-2, rtol=1e-5)


def test_config_validation():
    with pytest.raises(ValueError, match="false_hr"):
        PairedTiles(false_hr="nearest")
    with pytest.raises(ValueError, match="batch_size"):
        PairedTiles(batch_size=0)


# -- the CLI ------------------------------------------------------------------------------------------

def test_make_shards_cli(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "tools/make_shards.py", "synthetic", "--out", str(out), "--num-pairs", "5",
                        "--mr-size", "8", "--shard-size", "2", "--no-progress"], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["written"] == 5 and summary["shards"] == 3
    assert PairedTiles(str(out), normalize=False).check()["num_samples"] == 5


def test_make_shards_missing_source(monkeypatch, capsys):
    sys.path.insert(0, str(REPO))
    from tools import make_shards

    monkeypatch.setitem(make_shards.SOURCES, "nosuch", "crossscale_kit.data.sources.nosuch")
    assert make_shards.main(["nosuch", "--out", "x"]) == 2
    assert "'nosuch' is not available" in capsys.readouterr().err


def test_gin_wiring():
    import gin

    gin.clear_config()  # earlier tests may have parsed and finalized (locked) a recipe

    @gin.configurable
    def _data_fn(data=None):
        return data

    with gin.unlock_config():
        gin.parse_config("""
            _data_fn.data = @PairedTiles()
            PairedTiles.synthetic = @SyntheticScenes()
            PairedTiles.crop = @PairedRandomResizedCrop()
            PairedTiles.false_hr = 'bicubic'
            SyntheticScenes.num_pairs = 24
            PairedRandomResizedCrop.size = 16
        """)
    try:
        tiles = _data_fn()
        assert tiles.synthetic.num_pairs == 24 and tiles.crop.size == 16 and tiles.false_hr == "bicubic"
    finally:
        gin.clear_config()


def test_shard_shorter_than_its_index_is_counted_once_per_epoch(tmp_path):
    """A shard cut at a member boundary reads cleanly; the index's sample count exposes it: up front (sizes,
    or a header scan of an older set's shards), and mid-run for a shard cut after the check."""
    rng = np.random.default_rng(0)
    with PairShardWriter(tmp_path, shard_size=4) as w:
        for i in range(8):
            w.write(f"p{i}", *good_pair(rng, h=8))
    full = (tmp_path / "pairs-000001.tar").read_bytes()
    kept = list(shard_samples(tmp_path / "pairs-000001.tar"))[:2]

    def cut():
        write_raw_shard(tmp_path / "pairs-000001.tar",
                        [(m["__key__"], {k: v for k, v in m.items() if not k.startswith("__")}) for m in kept])

    cut()
    with pytest.raises(DataError, match=r"pairs-000001.tar is \d+ bytes but index.json records"):
        PairedTiles(str(tmp_path), crop=PairedRandomResizedCrop(size=8)).check()  # up front, with sizes indexed
    index = json.loads((tmp_path / "index.json").read_text())  # a set of an older writer: no sizes to compare
    index["shards"] = [{"name": x["name"], "num_samples": x["num_samples"]} for x in index["shards"]]
    (tmp_path / "index.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match=r"pairs-000001.tar holds 2 samples but index.json lists 4"):
        PairedTiles(str(tmp_path), crop=PairedRandomResizedCrop(size=8)).check()  # up front, from the tar headers
    (tmp_path / "pairs-000001.tar").write_bytes(full)
    tiles = PairedTiles(str(tmp_path), batch_size=1, num_workers=0, shuffle_buffer=1, max_bad_fraction=0.9,
                        crop=PairedRandomResizedCrop(size=8))
    tiles.check()
    cut()  # after the check: the reader counts it
    stream = tiles.stream(seed=0)
    take(stream, 6 * 2 + 1)  # two epochs of 6 readable pairs
    assert stream.stats == {"truncated": 2}


def test_tiles_of_different_sizes_share_a_batch(tmp_path):
    """Smaller tiles are zero-padded in the hand-over; the crop box keeps the padding out of the result."""
    rng = np.random.default_rng(0)
    small, large = good_pair(rng, h=8), good_pair(rng, h=12)
    with PairShardWriter(tmp_path, shard_size=4) as w:
        w.write("small", *small)
        w.write("large", *large)
    crop = PairedRandomResizedCrop(size=8, scale=(1, 1), ratio=(1, 1))
    tiles = PairedTiles(str(tmp_path), batch_size=2, num_workers=0, shuffle_buffer=1, normalize=False, crop=crop)
    raw = take(tiles.stream(seed=0), 1)[0]
    assert raw["mr"].shape == (2, 4, 12, 12) and raw["hr"].shape == (2, 4, 24, 24)
    out = tiles.to_device(raw, "cpu")
    i = raw["key"].index("small")
    torch.testing.assert_close(out["mr"][i], torch.from_numpy(small[0].astype(np.float32)), atol=0.02, rtol=0)
    torch.testing.assert_close(out["hr"][i], crop(*small, np.random.default_rng(0))[1], atol=0.02, rtol=0)


def test_to_device_finishes_only_the_views_the_framework_reads(root):
    """The training loop passes its framework's ``views``: an MR-only run never builds the HR crop, and what it
    does build is bit for bit what a run reading both images gets."""
    from types import SimpleNamespace

    from crossscale_kit.train.step import to_device

    crop = PairedRandomResizedCrop(size=20, patch_jitter=(5, 4), hflip=0.5, vflip=0.5)
    tiles = PairedTiles(str(root), batch_size=6, num_workers=0, crop=crop, shuffle_buffer=8)
    raw = take(tiles.stream(seed=3), 1)[0]
    both = tiles.to_device(raw, "cpu")
    for views in (("mr",), ("hr",)):
        run = SimpleNamespace(data=tiles, info=SimpleNamespace(device="cpu"), model=SimpleNamespace(views=views))
        out = to_device(run, raw)
        assert set(out) == {*views, "key"} and out["key"] == both["key"]
        assert all(torch.equal(out[v], both[v]) for v in views)
