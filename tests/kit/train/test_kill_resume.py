"""A run killed mid-way resumes to the same end as an uninterrupted run.

SIGKILL at a random step after the first checkpoint loses the steps since that checkpoint; SIGTERM (what a
cluster scheduler sends) finishes the step, writes a checkpoint there and exits non-zero with a message.
"""
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from crossscale_kit.train.config import REPO_ROOT
from crossscale_kit.train.checkpoint import list_checkpoints
from tests.kit.train.helpers import assert_same_weights, final_state, losses

STEPS = 60
ARGS = ["--gin", "gin/latentmim_sa.gin", "--gin", "gin/presets/test_tiny.gin",
        "--gin_param", f"train.total_steps = {STEPS}", "--gin_param", "train.ckpt_every = 5",
        "--gin_param", "IMG_SIZE = 64"]


def _train(workdir, *extra, **kw):
    return subprocess.Popen([sys.executable, "tools/train.py", *ARGS, "--workdir", str(workdir), *extra],
                            cwd=REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


def _last_step(workdir):
    rows = losses(workdir)
    return rows[-1]["step"] if rows else 0


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted reference run."""
    w = tmp_path_factory.mktemp("straight")
    ref = _train(w)
    assert ref.wait(timeout=400) == 0, ref.stderr.read().decode()[-3000:]
    return w


def _wait_for_step(proc, workdir, step):
    deadline = time.time() + 300
    while _last_step(workdir) < step and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"


def _assert_same_as(straight, resumed):
    a, b = losses(straight), losses(resumed)
    assert [r["step"] for r in b] == list(range(1, STEPS + 1)), "the log reads as one run after the restart"
    assert [r["loss/total"] for r in a] == [r["loss/total"] for r in b]
    sa, sb = final_state(straight), final_state(resumed)
    assert sa["step"] == sb["step"] == STEPS
    assert_same_weights(sa["model"], sb["model"])


@pytest.mark.timeout(900)
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, straight):
    kill_after = random.Random().randint(7, 40)
    killed = tmp_path / "killed"
    proc = _train(killed)
    _wait_for_step(proc, killed, kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (killed / "checkpoints").is_dir() and 0 < _last_step(killed) < STEPS
    resumed = _train(killed, "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()[-3000:]
    _assert_same_as(straight, resumed=killed)


@pytest.mark.timeout(900)
def test_sigterm_checkpoints_the_step_then_resume_equals_uninterrupted(tmp_path, straight):
    stop_after = random.Random().choice([s for s in range(6, 40) if s % 5])  # off the checkpoint cadence
    termed = tmp_path / "termed"
    proc = _train(termed)
    _wait_for_step(proc, termed, stop_after)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    err = proc.stderr.read().decode()
    reached = _last_step(termed)
    assert f"stopped by SIGTERM after step {reached}" in err and "--resume" in err and "Traceback" not in err
    assert list_checkpoints(termed)[-1][0] == reached, "the signal wrote a checkpoint at the step it stopped"
    resumed = _train(termed, "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()[-3000:]
    _assert_same_as(straight, resumed=termed)
