"""The collapse monitors and the online probe in real (tiny) training runs."""
import json

import numpy as np
import pytest

from crossscale_kit.eval.minitask import MiniTask, load_split
from crossscale_kit.train.online_probe import OnlineProbe
from tests.kit.train.helpers import losses, run


def test_every_host_logs_collapse_monitors_of_student_target_and_teacher(tmp_path):
    expect = {"gin/latentmim_sa.gin": {"student", "target", "teacher"}, "gin/ijepa_sa.gin": {"student", "target", "teacher"},
              "gin/mae_sa.gin": {"student", "teacher"}, "gin/mae_mr.gin": {"student"}}
    for recipe, names in expect.items():
        rows = losses(run(recipe, tmp_path / recipe.split("/")[-1], bindings=["train.total_steps = 3"])["workdir"])
        assert [r["step"] for r in rows] == [1, 2, 3]
        for r in rows:  # log_every = 1 in the tiny preset: every row has every reading
            got = {k.split("_", 1)[1] for k in r if k.startswith("collapse/rankme_")}
            assert got == names, recipe
            for n in names:
                assert 1.0 <= r[f"collapse/rankme_{n}"] <= 32.0 and 0.0 <= r[f"collapse/std_{n}"] <= 1.0


def _npz(tmp_path, task):
    tr, va = load_split(task, "train", tmp_path / "cache"), load_split(task, "val", tmp_path / "cache")
    path = tmp_path / "labelled.npz"
    np.savez(path, mr=np.concatenate([tr["mr"], va["mr"]]), label=np.concatenate([tr["label"], va["label"]]))
    return path, len(tr["mr"])


def test_online_probe_logs_miou_on_cadence_and_never_moves_the_training(tmp_path):
    task = MiniTask(mr_size=16, num_train=8, num_val=6, num_test=1)
    data, n = _npz(tmp_path, task)
    probe = [f"train.online_probe = @OnlineProbe()", "OnlineProbe.every = 2", f"OnlineProbe.data = '{data}'",
             f"OnlineProbe.num_train = {n}", "OnlineProbe.epochs = 2", "OnlineProbe.tiles_per_side = 2",
             "OnlineProbe.resize = 2.0", "train.total_steps = 5"]
    with_probe = losses(run("gin/latentmim_sa.gin", tmp_path / "a", bindings=probe)["workdir"])
    without = losses(run("gin/latentmim_sa.gin", tmp_path / "b", bindings=["train.total_steps = 5"])["workdir"])
    probed = [r["step"] for r in with_probe if "probe/miou" in r]
    assert probed == [2, 4, 5]
    assert all(0.0 <= r["probe/miou"] <= 100.0 and r["probe/seconds"] > 0 for r in with_probe if "probe/miou" in r)
    # the probe draws from its own random state: the training is bit-identical with and without it
    assert [r["loss/total"] for r in with_probe] == [r["loss/total"] for r in without]


def test_online_probe_refuses_a_bad_labelled_set(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((4, 4, 8, 8)))
    with pytest.raises(ValueError, match="'mr'"):
        OnlineProbe(data=bad).tiles()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        OnlineProbe(data=tmp_path / "missing.npz").tiles()
    with pytest.raises(ValueError, match="every"):
        OnlineProbe(every=0)
    short = tmp_path / "short.npz"
    np.savez(short, mr=np.zeros((2, 4, 8, 8), np.int16), label=np.zeros((2, 8, 8), np.int8))
    with pytest.raises(ValueError, match="num_train"):
        OnlineProbe(data=short, num_train=2).tiles()
