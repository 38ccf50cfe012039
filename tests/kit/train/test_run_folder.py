"""A run folder has one owner and one run: fresh runs never clobber a run, resumes are checked."""
import json
import os
import socket

import pytest
import torch

from crossscale_kit.train.checkpoint import CheckpointError, list_checkpoints, save_checkpoint
from crossscale_kit.train.fingerprint import ResumeMismatchError
from crossscale_kit.train.preflight import ConfigError
from crossscale_kit.train.rundir import RunFolderError
from tests.kit.train.helpers import assert_same_weights, final_state, losses, run

RECIPE = "gin/latentmim_sa.gin"


@pytest.fixture(scope="module")
def done_run(tmp_path_factory):
    """A finished 3-step run, copied by tests that change it."""
    w = tmp_path_factory.mktemp("done") / "run"
    run(RECIPE, w, max_steps=3)
    return w


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_fresh_run_in_a_used_folder_is_refused_and_leaves_it_untouched(done_run, tmp_path):
    w = _copy(done_run, tmp_path / "w")
    before = {p.name: p.stat().st_mtime_ns for p in (w / "checkpoints").iterdir()}
    rows = losses(w)
    with pytest.raises(RunFolderError) as err:
        run(RECIPE, w, max_steps=2)
    msg = str(err.value)
    assert "already holds a run" in msg and "--resume" in msg and "--workdir" in msg and "--overwrite" in msg
    assert {p.name: p.stat().st_mtime_ns for p in (w / "checkpoints").iterdir()} == before
    assert losses(w) == rows


def test_overwrite_moves_the_old_run_aside(done_run, tmp_path):
    w = _copy(done_run, tmp_path / "w")
    old = final_state(w)
    run(RECIPE, w, max_steps=2, bindings=["train.seed = 1"], overwrite=True)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("w.old-")]
    assert len(aside) == 1, list(tmp_path.iterdir())
    assert [s for s, _ in list_checkpoints(aside[0])] == [3] and [s for s, _ in list_checkpoints(w)] == [2]
    assert_same_weights(final_state(aside[0])["model"], old["model"])
    assert [r["step"] for r in losses(w)] == [1, 2]


def test_resume_without_a_checkpoint_is_an_error(tmp_path):
    with pytest.raises(RunFolderError, match="no checkpoint to resume"):
        run(RECIPE, tmp_path, max_steps=2, resume=True)
    assert not (tmp_path / "checkpoints").exists()


def test_resume_when_every_checkpoint_is_corrupt_is_an_error_and_prunes_nothing(done_run, tmp_path):
    w = _copy(done_run, tmp_path / "w")
    for _, p in list_checkpoints(w):
        p.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        run(RECIPE, w, max_steps=2, resume=True)
    assert [p.read_bytes() for _, p in list_checkpoints(w)] == [b"garbage"]


def test_resume_with_a_changed_lr_is_refused_with_a_diff(done_run, tmp_path):
    w = _copy(done_run, tmp_path / "w")
    with pytest.raises(ResumeMismatchError) as err:
        run(RECIPE, w, max_steps=2, resume=True, bindings=["lr/WarmupCosine.peak = 0.47"])
    msg = str(err.value)
    assert "lr/WarmupCosine.peak: run has 0.001, now 0.47" in msg and "train.log_every" in msg
    assert [s for s, _ in list_checkpoints(w)] == [3]


def test_resume_with_a_changed_architecture_is_refused_with_a_diff(done_run, tmp_path):
    w = _copy(done_run, tmp_path / "w")
    with pytest.raises(ResumeMismatchError, match="ViTEncoder.depth: run has 1, now 2"):
        run(RECIPE, w, max_steps=2, resume=True, bindings=["ViTEncoder.depth = 2"])


def test_resume_may_change_the_cadences(done_run, tmp_path, caplog):
    w = _copy(done_run, tmp_path / "w")
    with caplog.at_level("INFO"):
        result = run(RECIPE, w, max_steps=2, resume=True, bindings=["train.log_every = 2", "train.ckpt_every = 7"])
    assert result["steps"] == 5 and "train.log_every: 1 -> 2" in caplog.text


def test_pruning_never_removes_the_checkpoint_just_written(tmp_path):
    for step in (10, 11, 12):  # higher steps left by another run
        save_checkpoint(tmp_path, step, {"step": step}, "cfg", keep=3)
    save_checkpoint(tmp_path, 3, {"step": 3}, "cfg", keep=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3, 12]


def test_temp_files_of_interrupted_saves_are_removed_at_the_next_start(done_run, tmp_path):
    w = _copy(done_run, tmp_path / "w")
    junk = [w / "checkpoints" / ".ckpt-00000006.pt.tmp4242", w / "checkpoints" / ".ckpt-00000006.gin.tmp4242",
            w / "export" / ".encoder.safetensors.tmp4242"]
    for p in junk:
        p.write_bytes(b"partial")
    run(RECIPE, w, max_steps=1, resume=True)
    assert not any(p.exists() for p in junk)


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)  # a pid that no longer runs
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / ".lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "state": "running"}))
    with caplog.at_level("WARNING"):
        assert run(RECIPE, tmp_path, max_steps=1)["steps"] == 1
    assert "stale lock" in caplog.text and str(pid) in caplog.text and "no longer running" in caplog.text
    assert json.loads((tmp_path / ".lock").read_text())["state"] == "released"


@pytest.mark.parametrize("binding, expected", [
    ("lr/WarmupCosine.peak = -0.001", "train.lr is -"),
    ("train.ckpt_every = 0", "train.ckpt_every = 0"),
    ("train.log_every = 0", "train.log_every = 0"),
    ("train.total_steps = -5", "train.total_steps = -5"),
    ("train.batch_size = 'big'", "train.batch_size = 'big'"),
    ("train.lr = 0.001", "must be a schedule"),
    ("momentum/Cosine.start = 1.5", "EMA momentum is 1.5"),
])
def test_schedule_and_cadence_values_are_checked_before_anything_is_written(tmp_path, binding, expected):
    with pytest.raises(ConfigError, match="cannot start") as err:
        run(RECIPE, tmp_path / "w", max_steps=2, bindings=[binding])
    assert expected in str(err.value)
    assert not (tmp_path / "w").exists()


def test_negative_max_steps_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="max_steps = -5"):
        run(RECIPE, tmp_path / "w", max_steps=-5)


def test_crafted_checkpoint_is_never_unpickled(done_run, tmp_path):
    """A checkpoint whose unpickling would create a file: resume and export refuse it, the file never appears."""
    import subprocess
    import sys

    from crossscale_kit.train.config import REPO_ROOT

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    w = _copy(done_run, tmp_path / "w")
    for _, p in list_checkpoints(w):
        p.unlink()
    evil = w / "checkpoints" / "ckpt-00000009.pt"
    torch.save({"step": 9, "model": Payload()}, evil)
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        run(RECIPE, w, max_steps=1, resume=True)
    done = subprocess.run([sys.executable, "tools/export.py", "--checkpoint", str(evil), "--out", str(tmp_path / "e")],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "refused to unpickle" in done.stderr and "Traceback" not in done.stderr
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # the payload is real: an unsafe load does create the file
    assert marker.exists()
