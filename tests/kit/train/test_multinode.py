"""Two torchrun agents on one machine, as on two nodes (c10d rendezvous, one worker each, gloo on CPU).

The commands are the README's (docs/scaling.md): ``torchrun --nnodes=2 --nproc_per_node=1 --rdzv-backend=c10d
--rdzv-endpoint=HOST:PORT --rdzv-id=ID tools/train.py ... --resume auto`` started once per node. Two agents
give the weights of one process on the same global batch; with ``--max-restarts=1`` a worker killed after a
checkpoint makes the agents restart the group, which resumes from that checkpoint and ends bit for bit where
the uninterrupted two-node run ends.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from crossscale_kit.train.config import REPO_ROOT
from tests.kit.train.helpers import assert_same_weights, final_state, losses

STEPS = 40
ZERO_GRADIENT = ("attn.qkv.bias", "in_proj_bias", "decoder.norm.bias", "decoder.head.bias")


def _weights(workdir, step):
    return torch.load(workdir / "checkpoints" / f"ckpt-{step:08d}.pt", weights_only=True)["model"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}


def _args(shards, workdir):
    return ["tools/train.py", "--gin", "gin/latentmim_sa.gin", "--gin", "gin/presets/test_tiny.gin",
            "--gin_param", f"PairedTiles.root = '{shards}'", "--gin_param", "PairedTiles.shuffle_buffer = 0",
            "--gin_param", f"train.total_steps = {STEPS}", "--gin_param", "train.ckpt_every = 5", "--gin_param", "train.keep_checkpoints = 0",
            "--workdir", str(workdir), "--resume", "auto"]


def _agents(tmp_path, shards, workdir, *extra):
    """Start the two 'nodes': the same command twice, each its own process group (torchrun agent + worker)."""
    port, rdzv_id = _free_port(), f"t{os.getpid()}-{workdir.name}"
    procs = []
    for node in range(2):
        log = open(tmp_path / f"{workdir.name}-node{node}.log", "w")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1", *extra,
             "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", f"--rdzv-id={rdzv_id}",
             *_args(shards, workdir)],
            cwd=REPO_ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    return procs


def _wait(procs, tmp_path, workdir, timeout=240):
    try:
        codes = [p.wait(timeout=timeout) for p in procs]
    finally:
        for p in procs:  # a hung agent (and its worker) must not outlive the test
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    logs = "\n".join((tmp_path / f"{workdir.name}-node{n}.log").read_text() for n in range(2))
    assert codes == [0, 0], logs[-4000:]
    return logs


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("mn") / "shards"
    subprocess.run([sys.executable, "tools/make_shards.py", "synthetic", "--out", str(out), "--num-pairs", "16",
                    "--mr-size", "32", "--shard-size", "2", "--no-progress"],
                   cwd=REPO_ROOT, env=_env(), check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory, shards):
    """The uninterrupted two-node run."""
    tmp = tmp_path_factory.mktemp("two_nodes")
    workdir = tmp / "straight"
    _wait(_agents(tmp, shards, workdir), tmp, workdir)
    return workdir


@pytest.mark.timeout(600)
def test_two_agents_match_one_process(tmp_path, shards, two_nodes):
    summary = json.loads((two_nodes / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert len(set(summary["rank_param_checksums"])) == 1, "the two nodes hold different weights"
    single = tmp_path / "single"
    run = subprocess.run([sys.executable, *_args(shards, single)], cwd=REPO_ROOT, env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    a, b = losses(two_nodes), losses(single)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, STEPS + 1))
    for ra, rb in zip(a, b):
        assert ra["loss/total"] == pytest.approx(rb["loss/total"], rel=1e-4, abs=1e-6), ra["step"]
    # Weights after 5 steps (the first checkpoint). DDP averages the two halves' gradients, so they agree up to
    # float summation order -- except biases whose gradient is zero in exact arithmetic (softmax ignores the key
    # bias; the loss normalises the decoder output, so its shift is free): there the gradient is rounding
    # noise, which Adam turns into steps of about lr either way.
    wa, wb = (_weights(w, 5) for w in (two_nodes, single))
    assert wa.keys() == wb.keys()
    diff = {k: (wa[k].float() - wb[k].float()).abs().max().item() for k in wa}
    free = {k for k in diff if k.endswith(ZERO_GRADIENT)}
    assert len(free) < len(diff) // 4, sorted(free)
    assert max(diff[k] for k in diff if k not in free) < 1e-4, sorted(diff.items(), key=lambda kv: kv[1])[-5:]
    assert max(diff[k] for k in free) < 2 * 5 * 1e-3  # at most about lr per step either way


@pytest.mark.timeout(600)
def test_killed_worker_restarts_the_group_and_resumes_to_the_same_weights(tmp_path, shards, two_nodes):
    workdir = tmp_path / "killed"
    procs = _agents(tmp_path, shards, workdir, "--max-restarts=1")
    try:
        deadline = time.time() + 200
        while (not losses(workdir) or losses(workdir)[-1]["step"] < 7) and time.time() < deadline \
                and all(p.poll() is None for p in procs):
            time.sleep(0.01)
        reached = losses(workdir)[-1]["step"] if losses(workdir) else 0
        workers = subprocess.run(["pgrep", "-P", str(procs[1].pid)], capture_output=True, text=True).stdout.split()
        assert 5 < reached < STEPS and len(workers) == 1, (reached, workers)
        os.kill(int(workers[0]), signal.SIGKILL)  # node 1's worker dies after the step-5 checkpoint
    except BaseException:
        for p in procs:
            os.killpg(p.pid, signal.SIGKILL)
        raise
    logs = _wait(procs, tmp_path, workdir)
    resumed = re.findall(r"resumed from \S+ at step (\d+)", logs)
    assert "exitcode: -9" in logs and len(resumed) == 1 and int(resumed[0]) % 5 == 0, logs[-4000:]
    assert [r["step"] for r in losses(workdir)] == list(range(1, STEPS + 1)), "the log reads as one run"
    assert [r["loss/total"] for r in losses(workdir)] == [r["loss/total"] for r in losses(two_nodes)]
    a, b = final_state(workdir), final_state(two_nodes)
    assert a["step"] == b["step"] == STEPS
    assert_same_weights(a["model"], b["model"])
