"""Resume parity: 6 steps straight == 3 steps + resume + 3 steps, bit for bit on CPU."""
from tests.kit.train.helpers import assert_same_weights, final_state, losses, run

RECIPE = "gin/latentmim_sa.gin"


def test_resume_gives_identical_losses_and_weights(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    run(RECIPE, straight, max_steps=6)
    run(RECIPE, split, max_steps=3)
    first = losses(split)
    run(RECIPE, split, max_steps=3, resume=True)
    a, b = losses(straight), losses(split)
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    assert [r["loss/total"] for r in a] == [r["loss/total"] for r in b]
    assert [r["loss/gram"] for r in a] == [r["loss/gram"] for r in b]
    assert first == b[:3]
    sa, sb = final_state(straight), final_state(split)
    assert sa["step"] == sb["step"] == 6
    assert_same_weights(sa["model"], sb["model"])  # student, EMA target, HR teacher
    assert sa["data"] == sb["data"]


def test_checkpoints_are_pruned_and_resume_auto_without_checkpoint_starts_fresh(tmp_path):
    run(RECIPE, tmp_path, max_steps=7, resume="auto", bindings=["train.ckpt_every = 2", "train.keep_checkpoints = 2"])
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("ckpt-*.pt"))
    assert names == ["ckpt-00000006.pt", "ckpt-00000007.pt"]
    assert not list((tmp_path / "checkpoints").glob(".*tmp*"))


def test_tools_export_writes_the_checkpoint_encoder(tmp_path):
    import subprocess
    import sys

    from safetensors.torch import load_file

    from crossscale_kit.train.config import REPO_ROOT

    run(RECIPE, tmp_path / "run", max_steps=4, bindings=["train.ckpt_every = 2"])
    ckpt = tmp_path / "run" / "checkpoints" / "ckpt-00000002.pt"
    out = tmp_path / "exp2"
    done = subprocess.run([sys.executable, "tools/export.py", "--checkpoint", str(ckpt), "--out", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    import json

    meta = json.loads((out / "meta.json").read_text())
    assert meta["step"] == 2 and meta["recipe"][0] == RECIPE
    state = final_state(tmp_path / "run")  # step 4
    early = load_file(str(out / "encoder.safetensors"))
    final = load_file(str(tmp_path / "run" / "export" / "encoder.safetensors"))
    assert early.keys() == final.keys()
    assert any(not (early[k] == final[k]).all() for k in early), "step 2 and step 4 weights should differ"
    # the end-of-run export equals the student weights in the last checkpoint
    prefix = state["export"]["prefix"]
    for k, v in final.items():
        assert (state["model"][prefix + k] == v).all()


def test_identical_runs_write_byte_identical_checkpoints(tmp_path):
    """The global Python/NumPy generator states a checkpoint saves are seeded by the run, not inherited
    from whatever the process drew before, so two identical runs write the same bytes."""
    import random

    import numpy as np

    run(RECIPE, tmp_path / "a", max_steps=2)
    random.random(), np.random.rand(3)  # the process's global generators move on between the runs
    run(RECIPE, tmp_path / "b", max_steps=2)
    a, b = (sorted((tmp_path / r / "checkpoints").glob("ckpt-*.pt")) for r in "ab")
    assert [p.name for p in a] == [p.name for p in b] and a
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
