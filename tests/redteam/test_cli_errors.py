"""Red team, tool arguments and config files: one line with the file and the fix, exit 2, no traceback."""
from __future__ import annotations

import json
import os
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
    outer = tmp_path / "outer.gin"  # an import one include away is refused too
    outer.write_text(f"include '{risky}'\n")
    p = train(tmp_path / "w", "--gin", outer, "--no-gin-imports")
    assert_user_error(p, str(risky), "import", "--no-gin-imports")
    assert not (tmp_path / "w").exists()


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


# -- every tool, as an adversarial user drives it: each case is one line with the path and the fix, exit 2 --------
# (D: a folder, F: a plain file, M: a path that does not exist, all under tmp_path)
CASES = {
    "missing file": [
        (["train", "--gin", "M/x.gin"], ["M/x.gin", "not found"]),
        (["export", "--checkpoint", "M/ckpt.pt"], ["M/ckpt.pt", "ckpt-*.pt"]),
        (["cluster_map", "--image", "M/i.npy", "--encoder", "D"], ["M/i.npy", "GeoTIFF"]),
        (["make_shards", "geotiff", "--mr", "M/a.tif", "--hr", "M/b.tif", "--out", "D/o"], ["M/a.tif", "check the path"]),
        (["probe", "--encoder", "M", "--dataset", "mados", "--root", "D", "--out", "D/r"], ["M/encoder.safetensors",
                                                                                            "tools/export.py"]),
        (["train", "--gin", "gin/latentmim_sa.gin", "--gin", "gin/presets/test_tiny.gin", "--resume", "--workdir", "M"],
         ["M", "does not exist", "without --resume"]),
    ],
    "folder where a file is expected": [
        (["train", "--gin", "D"], ["D", "is a folder", ".gin"]),
        (["cluster_map", "--image", "D", "--encoder", "D"], ["D", "is a folder"]),
        (["cluster_map", "--image", "F.npy", "--encoder", "D", "--out", "D"], ["--out", "is a folder", ".png"]),
        (["make_shards", "geotiff", "--mr", "D", "--hr", "D", "--out", "D/o"], ["D", "is a folder"]),
    ],
    "file where a folder is expected": [
        (["probe", "--encoder", "F", "--dataset", "mados", "--root", "D", "--out", "D/r"], ["--encoder", "F", "is a file"]),
        (["probe", "--encoder", "D", "--dataset", "mados", "--root", "F", "--out", "D/r"], ["--root", "F", "is a file"]),
        (["probe", "--encoder", "D", "--dataset", "mados", "--root", "D", "--out", "F"], ["--out", "F", "is a file"]),
        (["experiments", "ijepa_sa", "--dry_run", "--out", "F"], ["--out", "F", "is a file"]),
        (["experiments", "ijepa_sa", "--dry_run", "--data", "F"], ["--data", "F", "is a file"]),
        (["make_shards", "synthetic", "--out", "F", "--num-pairs", "8", "--mr-size", "32"], ["--out", "F", "is a file"]),
    ],
    "negative or zero numbers": [
        (["probe", "--encoder", "D", "--dataset", "mados", "--root", "D", "--out", "D/r", "--epochs", "0"], ["epochs", ">= 1"]),
        (["probe", "--encoder", "D", "--dataset", "mados", "--root", "D", "--out", "D/r", "--img-size", "-5"],
         ["--img-size -5", ">= 0"]),
        (["probe", "--encoder", "D", "--dataset", "mados", "--root", "D", "--out", "D/r", "--workers", "-1"],
         ["--workers -1", ">= 0"]),
        (["cluster_map", "--image", "F.npy", "--encoder", "D", "--img-size", "0"], ["--img-size 0", "positive"]),
        (["experiments", "--table", "mini", "--jobs", "0", "--dry_run"], ["--jobs 0", ">= 1"]),
        (["experiments", "ijepa_sa", "--max_steps", "-1", "--dry_run"], ["--max_steps -1", ">= 0"]),
        (["make_shards", "synthetic", "--out", "D/o", "--num-pairs", "0", "--mr-size", "32"], ["num_pairs", ">= 1"]),
    ],
    "a file that is not what it claims": [
        (["export", "--checkpoint", "F"], ["F", "not a checkpoint", "ckpt-*.pt"]),
        (["cluster_map", "--image", "B.npy", "--encoder", "D"], ["B.npy", "not a readable .npy", "numpy.save"]),
        (["train", "--gin", "I.gin"], ["I.gin", "nonexistent/base.gin", "include path"]),
        (["train", "--gin", "F"], ["F", "gin syntax error (line 1", "Fix the binding"]),
    ],
}


@pytest.mark.parametrize("args, words", [c for cs in CASES.values() for c in cs],
                         ids=[f"{k}:{' '.join(a[:2])}" for k, cs in CASES.items() for a, _ in cs])
def test_every_tool_refuses_bad_paths_and_numbers_in_one_line(tmp_path, args, words):
    import numpy as np

    (tmp_path / "D").mkdir()
    (tmp_path / "F").write_text("not what it should be\n")
    np.save(tmp_path / "F.npy", np.full((4, 32, 32), 1000, np.float32))
    (tmp_path / "B.npy").write_bytes(b"\x93NUMPY broken")
    (tmp_path / "I.gin").write_text("include 'nonexistent/base.gin'\n")

    def real(a):
        head = a.split("/")[0]
        return str(tmp_path / a) if head in ("D", "F", "M", "F.npy", "B.npy", "I.gin") else a
    p = cli(args[0], *map(real, args[1:]))
    assert_user_error(p, *[real(w) if w[:1] in "DFMBI" and not w[1:2].isalpha() else w for w in words])
    assert not (tmp_path / "M").exists()  # a refused command leaves nothing behind where it was pointed


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_recipe_is_one_line_naming_it(tmp_path):
    g = tmp_path / "secret.gin"
    g.write_text("train.seed = 1\n")
    g.chmod(0)
    p = cli("train", "--gin", g)
    assert_user_error(p, str(g))
