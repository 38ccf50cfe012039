"""A run SIGKILLed at a random step after its first checkpoint resumes to the same end as an uninterrupted run."""
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from kit.train.config import REPO_ROOT
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


@pytest.mark.timeout(600)
def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    kill_after = random.Random().randint(7, 40)
    killed = tmp_path / "killed"
    proc = _train(killed)
    deadline = time.time() + 300
    while _last_step(killed) < kill_after and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (killed / "checkpoints").is_dir() and 0 < _last_step(killed) < STEPS
    resumed = _train(killed, "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()[-3000:]

    straight = tmp_path / "straight"
    ref = _train(straight)
    assert ref.wait(timeout=300) == 0, ref.stderr.read().decode()[-3000:]

    a, b = losses(straight), losses(killed)
    assert [r["step"] for r in b] == list(range(1, STEPS + 1)), "the log reads as one run after the restart"
    assert [r["loss/total"] for r in a] == [r["loss/total"] for r in b]
    sa, sb = final_state(straight), final_state(killed)
    assert sa["step"] == sb["step"] == STEPS
    assert_same_weights(sa["model"], sb["model"])
