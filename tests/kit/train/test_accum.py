"""Gradient accumulation and compilation through the train loop."""
import json
import math
import os
import subprocess
import sys

import pytest

from crossscale_kit.train.config import REPO_ROOT
from tests.kit.train.helpers import assert_same_weights, final_state, losses, run

RECIPE = "gin/latentmim_sa.gin"
ACCUM = ["train.accum_steps = 2"]


def test_resume_with_accumulation_is_exact(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    run(RECIPE, straight, max_steps=4, bindings=ACCUM)
    run(RECIPE, split, max_steps=2, bindings=ACCUM)
    run(RECIPE, split, max_steps=2, resume=True, bindings=ACCUM)
    a, b = losses(straight), losses(split)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3, 4]  # optimizer steps
    assert [r["loss/total"] for r in a] == [r["loss/total"] for r in b]
    sa, sb = final_state(straight), final_state(split)
    assert sa["step"] == sb["step"] == 4
    assert_same_weights(sa["model"], sb["model"])
    assert sa["data"] == sb["data"]
    # every optimizer step took two micro-batches: 4 steps read 8 batches, one AdamW step each
    assert all(float(s["step"]) == 4.0 for s in sa["optimizer"]["state"].values())


def test_lr_scales_with_the_effective_batch_and_steps_count_optimizer_steps(tmp_path):
    common = ["train.lr_batch_ref = 8", "lr/WarmupCosine.warmup_fraction = 0.0", "lr/WarmupCosine.final_ratio = 0.25",
              "train.total_steps = 10"]
    one = run(RECIPE, tmp_path / "one", max_steps=2, bindings=common)
    two = run(RECIPE, tmp_path / "two", max_steps=2, bindings=common + ACCUM)
    assert one["steps"] == two["steps"] == 2
    la, lb = losses(tmp_path / "one"), losses(tmp_path / "two")
    # batch 4 of the tiny preset: effective 4 (scale 0.5) vs 8 (scale 1); peak 1e-3, cosine to 2.5e-4 over 10
    for ra, rb in zip(la, lb):
        k = ra["step"] - 1
        f = 2.5e-4 + 0.5 * (1 + math.cos(math.pi * k / 10)) * 7.5e-4
        assert ra["lr"] == pytest.approx(0.5 * f) and rb["lr"] == pytest.approx(f)


def test_bad_accum_steps_is_refused(tmp_path):
    with pytest.raises(ValueError, match="accum_steps"):
        run(RECIPE, tmp_path, max_steps=1, bindings=["train.accum_steps = 0"])


def test_compiled_and_eager_losses_agree(tmp_path):
    # aot_eager: dynamo capture and AOT autograd of every network and loss, without inductor's C++
    # code generation, which takes minutes on a shared 2-core CPU (the benchmark times inductor)
    eager = losses(run(RECIPE, tmp_path / "eager", max_steps=3)["workdir"])
    compiled = run(RECIPE, tmp_path / "compiled", max_steps=3, bindings=["train.compile = 'aot_eager'"])
    compiled = losses(compiled["workdir"])
    assert [r["step"] for r in compiled] == [1, 2, 3]
    for a, b in zip(eager, compiled):
        for k in ("loss/total", "loss/host", "loss/gram"):
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-6), (k, a["step"])


@pytest.mark.timeout(600)
def test_torchrun_with_accumulation_matches_single_process(tmp_path):
    from tests.kit.train.test_distributed import ARGS, _bindings, _shards

    shards = _shards(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    extra = ["--gin_param", "train.accum_steps = 2"]
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "tools/train.py",
         *ARGS, *_bindings(shards), *extra, "--workdir", str(ddp)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((ddp / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["rank_param_checksums"][0] == summary["rank_param_checksums"][1]
    done = subprocess.run(
        [sys.executable, "tools/train.py", *ARGS, *_bindings(shards), *extra, "--workdir", str(single)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = losses(ddp), losses(single)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b):
        for k in ("loss/total", "loss/host", "loss/gram"):
            assert ra[k] == pytest.approx(rb[k], rel=1e-4, abs=1e-6), (k, ra["step"])
