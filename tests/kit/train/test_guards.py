"""Survival: corrupt shard members are skipped and reported, non-finite steps are skipped and stop the run."""
import io
import json
import tarfile

import numpy as np
import pytest
import torch

from crossscale_kit.data.writer import PairShardWriter
from crossscale_kit.train.checkpoint import list_checkpoints, load_latest, save_checkpoint
from crossscale_kit.train.loop import NonFiniteError
from tests.kit.train.helpers import losses, run

RECIPE = "gin/latentmim_sa.gin"


def _corrupt_shards(root, n=24, bad=("p3", "p11")):
    rng = np.random.default_rng(0)
    with PairShardWriter(root, 8) as w:
        for i in range(n):
            mr = rng.integers(100, 3000, (4, 32, 32), dtype=np.int16)
            w.write(f"p{i}", mr, np.kron(mr, np.ones((1, 2, 2), dtype=np.int16)))
    # rewrite the first shard with a truncated npy member and a non-finite float member
    shard = root / "pairs-000000.tar"
    members = []
    with tarfile.open(shard) as tar:
        for m in tar.getmembers():
            members.append((m.name, tar.extractfile(m).read()))
    with tarfile.open(shard, "w") as tar:
        for name, payload in members:
            key = name.split(".")[0]
            if key == bad[0] and name.endswith("hr.npy"):
                payload = payload[: len(payload) // 2]  # truncated array
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    # a set from before shard sizes were indexed: the corrupt members are found while reading, not up front
    index = json.loads((root / "index.json").read_text())
    index["shards"] = [{"name": x["name"], "num_samples": x["num_samples"]} for x in index["shards"]]
    (root / "index.json").write_text(json.dumps(index))
    # a non-finite sample in another shard
    shard = root / "pairs-000001.tar"
    with tarfile.open(shard) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(shard, "w") as tar:
        for name, payload in members:
            if name == f"{bad[1]}.mr.npy":
                arr = np.full((4, 32, 32), np.nan, dtype=np.float32)
                buf = io.BytesIO()
                np.save(buf, arr)
                payload = buf.getvalue()
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def test_corrupt_members_are_skipped_counted_and_reported(tmp_path, caplog):
    data = tmp_path / "data"
    _corrupt_shards(data)
    with caplog.at_level("WARNING"):
        result = run(RECIPE, tmp_path / "w", max_steps=8,
                     bindings=[f"PairedTiles.root = '{data}'", "PairedTiles.max_bad_fraction = 0.5"])
    assert result["steps"] == 8
    skipped = result["data_skipped"][0]
    assert sum(skipped.values()) >= 2, skipped
    text = caplog.text
    assert "p3" in text and "p11" in text and "pairs-000000.tar" in text
    assert losses(tmp_path / "w")[-1]["data/skipped"] >= 2


def test_too_many_bad_samples_stop_the_run(tmp_path):
    data = tmp_path / "data"
    _corrupt_shards(data, n=24, bad=("p1", "p9"))
    from crossscale_kit.data.errors import DataError

    with pytest.raises(DataError, match="max_bad_fraction"):
        run(RECIPE, tmp_path / "w", max_steps=60, bindings=[
            f"PairedTiles.root = '{data}'", "PairedTiles.max_bad_fraction = 0.0", "train.total_steps = 60"])


def test_non_finite_steps_are_skipped_and_stop_with_the_last_good_checkpoint(tmp_path):
    # a learning rate of 1e30 blows the weights up after the first update: every later loss is NaN
    with pytest.raises(NonFiniteError, match="last good"):
        run(RECIPE, tmp_path, max_steps=12, bindings=[
            "lr/WarmupCosine.peak = 1e30", "lr/WarmupCosine.warmup_fraction = 0.0", "train.max_nonfinite = 3",
            "train.ckpt_every = 1"])
    rows = losses(tmp_path)
    skipped = [r for r in rows if r["skipped"]]
    assert len(skipped) == 3 and all(not np.isfinite(r["loss/total"]) for r in skipped)
    state, path = load_latest(tmp_path)
    last_good = state["step"]
    assert last_good == rows[-1]["step"] - 3
    # EMA copies were not touched by the skipped steps: they are finite
    ema = {k: v for k, v in state["model"].items() if k.startswith(("host.target_", "teacher."))}
    assert ema and all(torch.isfinite(v).all() for v in ema.values())


def test_an_interrupted_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    save_checkpoint(tmp_path, 1, {"step": 1, "w": torch.ones(3)}, "cfg", keep=3)
    save_checkpoint(tmp_path, 2, {"step": 2, "w": torch.ones(3) * 2}, "cfg", keep=3)
    # a kill during a save leaves only a temporary file; a corrupt newest file is skipped with a warning
    (tmp_path / "checkpoints" / ".ckpt-00000003.pt.tmp123").write_bytes(b"partial")
    (tmp_path / "checkpoints" / "ckpt-00000002.pt").write_bytes(b"garbage")
    assert [s for s, _ in list_checkpoints(tmp_path)] == [1, 2]
    state, path = load_latest(tmp_path)
    assert state["step"] == 1 and path.name == "ckpt-00000001.pt"
