"""Red team, tool arguments and config files: one line with the file and the fix, exit 2, no traceback."""
from __future__ import annotations

import json
import shutil

import pytest

from tests.redteam.helpers import assert_user_error, cli, train


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    w = tmp_path_factory.mktemp("run") / "w"
    p = train(w, "--max_steps", "3")
    assert p.returncode == 0, p.stderr[-2000:]
    return w


def test_gin_syntax_error_is_one_line_with_the_file(tmp_path):
    bad = tmp_path / "bad.gin"
    bad.write_text("train.batch_size = (\n")
    p = train(tmp_path / "w", "--gin", bad)
    assert_user_error(p, str(bad), "syntax")


def test_undefined_gin_macro_is_one_line_with_the_fix(tmp_path):
    bad = tmp_path / "bad.gin"
    bad.write_text("train.batch_size = %NOT_DEFINED\n")
    p = train(tmp_path / "w", "--gin", bad)
    line = assert_user_error(p, "NOT_DEFINED", "--gin_param")
    assert len(line) < 400


def test_export_checkpoint_that_is_a_folder(finished, tmp_path):
    p = cli("export", "--checkpoint", finished / "checkpoints")
    assert_user_error(p, "--checkpoint", "is a folder", "--workdir")


def test_export_out_that_is_a_file(finished, tmp_path):
    (tmp_path / "f").write_text("x")
    p = cli("export", "--workdir", finished, "--out", tmp_path / "f")
    assert_user_error(p, "--out", "is a file")
    assert (tmp_path / "f").read_text() == "x"


def test_export_never_writes_through_a_planted_link(finished, tmp_path):
    victim = tmp_path / "precious.bin"
    victim.write_bytes(b"keep")
    out = tmp_path / "exp"
    out.mkdir()
    (out / "encoder.safetensors").symlink_to(victim)
    p = cli("export", "--workdir", finished, "--out", out)
    assert_user_error(p, "encoder.safetensors", "symbolic link")
    assert victim.read_bytes() == b"keep"


@pytest.mark.parametrize("damage", ["meta", "weights", "contradiction"])
def test_probe_of_a_broken_export_is_one_line_naming_the_file(finished, tmp_path, damage):
    exp = shutil.copytree(finished / "export", tmp_path / "exp")
    if damage == "meta":
        (exp / "meta.json").write_text("{not json")
    elif damage == "weights":
        (exp / "encoder.safetensors").write_bytes(b"\0" * 64)
    else:
        meta = json.loads((exp / "meta.json").read_text())
        meta["bands"] = ["nir", "red", "green", "blue"]
        (exp / "meta.json").write_text(json.dumps(meta))
    p = cli("probe", "--encoder", exp, "--dataset", "mados", "--root", tmp_path, "--out", tmp_path / "res")
    name = "encoder.safetensors" if damage == "weights" else "meta.json"
    assert_user_error(p, str(exp / name), "re-export")


def test_export_meta_records_the_shard_set_identity(finished):
    meta = json.loads((finished / "export" / "meta.json").read_text())
    assert len(meta["data"]["index_sha256"]) == 64
    assert meta["normalization"]["bands"] == meta["bands"] == ["blue", "green", "red", "nir"]


def test_gin_imports_are_refused_on_request(tmp_path):
    risky = tmp_path / "from_a_checkpoint.gin"
    risky.write_text("import os.path\ntrain.seed = 1\n")
    p = train(tmp_path / "w", "--gin", risky, "--no-gin-imports")
    assert_user_error(p, str(risky), "import", "--no-gin-imports")


@pytest.mark.parametrize("args, words", [(["--max_steps", "-1"], ["max_steps = -1", ">= 0"]),
                                         (["--workdir", "FILE"], ["--workdir", "is a file"])])
def test_train_arguments_are_checked_before_any_work(tmp_path, args, words):
    f = tmp_path / "file"
    f.write_text("x")
    args = [str(f) if a == "FILE" else a for a in args]
    p = train(tmp_path / "w", *args) if "--workdir" not in args else \
        cli("train", "--gin", "gin/latentmim_sa.gin", *args)
    assert_user_error(p, *words)


def test_a_user_error_is_exactly_one_line_on_stderr(tmp_path):
    p = cli("export", "--checkpoint", tmp_path / "missing.pt")
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert str(tmp_path / "missing.pt") in p.stderr and "--debug" in p.stderr
