"""Two runs on one folder: the second is refused while the first lives. A full disk: the save fails in
words and the previous checkpoint stays the resume point."""
import os
import signal
import subprocess
import sys
import time

import pytest

from crossscale_kit.train.checkpoint import list_checkpoints, load_latest
from crossscale_kit.train.config import REPO_ROOT
from tests.kit.train.helpers import losses

ARGS = ["--gin", "gin/latentmim_sa.gin", "--gin", "gin/presets/test_tiny.gin", "--gin_param", "train.total_steps = 100000"]


def _train(workdir, *extra, log=None):
    """The CLI in a subprocess; its stderr goes to ``log`` (a file: a long run's progress bar fills a pipe)."""
    return subprocess.Popen([sys.executable, "tools/train.py", *ARGS, "--workdir", str(workdir), *extra],
                            cwd=REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=open(log, "w") if log else subprocess.PIPE, text=True)


@pytest.mark.timeout(600)
def test_a_second_run_on_a_busy_folder_is_refused_and_the_first_goes_on(tmp_path):
    w, log = tmp_path / "run", tmp_path / "first.log"
    first = _train(w, "--resume", "auto", log=log)
    deadline = time.time() + 300
    while not losses(w) and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, log.read_text()[-3000:]
    for extra in (["--resume", "auto"], ["--overwrite"], []):
        second = _train(w, *extra)
        err = second.communicate(timeout=300)[1]
        assert second.returncode == 2, err[-3000:]
        assert f"in use by another run (pid {first.pid}" in err and "Traceback" not in err
    assert first.poll() is None, "the first run was disturbed"
    step = losses(w)[-1]["step"]
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=120) == 128 + signal.SIGTERM, log.read_text()[-3000:]
    rows = losses(w)
    assert [r["step"] for r in rows] == list(range(1, rows[-1]["step"] + 1)) and rows[-1]["step"] >= step
    assert list_checkpoints(w)[-1][0] == rows[-1]["step"] and "stopped by SIGTERM" in log.read_text()


@pytest.fixture
def small_disk(tmp_path):
    """A 1800 KiB tmpfs: two tiny checkpoints (~0.7 MiB each) fit, a third does not."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1800k", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


@pytest.mark.timeout(600)
def test_a_save_onto_a_full_disk_says_so_and_keeps_the_previous_checkpoint(small_disk):
    w = small_disk / "run"
    proc = _train(w, "--gin_param", "train.ckpt_every = 1", "--gin_param", "train.keep_checkpoints = 3",
                  "--max_steps", "6")
    err = proc.communicate(timeout=400)[1]
    assert proc.returncode == 2, err[-3000:]
    assert "the disk is full" in err and "could not write the checkpoint of step 3" in err, err[-3000:]
    assert "ckpt-00000002.pt is intact" in err and "Traceback" not in err and "inline_container" not in err
    assert [s for s, _ in list_checkpoints(w)] == [1, 2]
    assert not [p for p in (w / "checkpoints").iterdir() if ".tmp" in p.name], "no partial files remain"
    state, path = load_latest(w)
    assert state["step"] == 2
