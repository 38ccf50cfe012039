"""torchrun --nproc_per_node=2 on CPU (gloo): ranks stay in sync and match one process on the same global batch."""
import json
import os
import subprocess
import sys

import pytest

from crossscale_kit.train.config import REPO_ROOT
from tests.kit.train.helpers import losses

ARGS = ["--gin", "gin/latentmim_sa.gin", "--gin", "gin/presets/test_tiny.gin", "--max_steps", "4"]


def _shards(tmp_path):
    out = tmp_path / "shards"
    # one shard per rank-batch (2 pairs), no shuffle buffer: the global batch of 2 ranks is then exactly
    # the batch of a single process reading the same shard order
    subprocess.run(
        [sys.executable, "tools/make_shards.py", "synthetic", "--out", str(out), "--num-pairs", "16",
         "--mr-size", "32", "--shard-size", "2"],
        cwd=REPO_ROOT, check=True, capture_output=True,
    )
    return out


def _bindings(shards):
    return ["--gin_param", f"PairedTiles.root = '{shards}'", "--gin_param", "PairedTiles.shuffle_buffer = 0"]


@pytest.mark.timeout(600)
def test_torchrun_two_ranks_matches_single_process(tmp_path):
    shards = _shards(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
         "tools/train.py", *ARGS, *_bindings(shards), "--workdir", str(ddp)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=500,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((ddp / "summary.json").read_text())
    assert summary["world_size"] == 2
    sums = summary["rank_param_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1], "ranks hold different weights"

    run = subprocess.run(
        [sys.executable, "tools/train.py", *ARGS, *_bindings(shards), "--workdir", str(single)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    a, b = losses(ddp), losses(single)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b):
        for k in ("loss/total", "loss/host", "loss/gram"):
            assert ra[k] == pytest.approx(rb[k], rel=1e-4, abs=1e-6), (k, ra["step"])


@pytest.mark.timeout(900)
def test_torchrun_sigterm_then_the_same_command_resumes_to_the_same_weights(tmp_path):
    """What a requeued cluster job does: SIGTERM -> checkpoint -> the same command (--resume auto) goes on."""
    import signal
    import time

    from tests.kit.train.helpers import assert_same_weights, final_state

    shards = _shards(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    steps = 10
    args = ["--gin", "gin/latentmim_sa.gin", "--gin", "gin/presets/test_tiny.gin", "--gin_param",
            f"train.total_steps = {steps}", "--gin_param", "train.ckpt_every = 100", *_bindings(shards), "--resume", "auto"]

    def launch(workdir):
        log = open(tmp_path / f"{workdir.name}.log", "a")
        return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
                                 "tools/train.py", *args, "--workdir", str(workdir)],
                                cwd=REPO_ROOT, env=env, stdout=log, stderr=log)

    termed, straight = tmp_path / "termed", tmp_path / "straight"
    proc = launch(termed)
    deadline = time.time() + 400
    while (not losses(termed) or losses(termed)[-1]["step"] < 3) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, (tmp_path / "termed.log").read_text()[-3000:]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=200) != 0
    log = (tmp_path / "termed.log").read_text()
    reached = losses(termed)[-1]["step"]
    assert "stopped by SIGTERM" in log and reached < steps
    assert sorted(p.name for p in (termed / "checkpoints").glob("*.pt")) == [f"ckpt-{reached:08d}.pt"]
    assert launch(termed).wait(timeout=400) == 0, (tmp_path / "termed.log").read_text()[-3000:]
    assert launch(straight).wait(timeout=400) == 0, (tmp_path / "straight.log").read_text()[-3000:]
    assert [r["step"] for r in losses(termed)] == list(range(1, steps + 1))
    assert [r["loss/total"] for r in losses(termed)] == [r["loss/total"] for r in losses(straight)]
    a, b = final_state(termed), final_state(straight)
    assert a["step"] == b["step"] == steps
    assert_same_weights(a["model"], b["model"])
