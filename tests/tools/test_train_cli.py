"""tools/train.py and tools/export.py end a user error with one message and exit code 2, no traceback."""
import subprocess
import sys

import pytest

from crossscale_kit.train.config import REPO_ROOT

RECIPE = ["--gin", "gin/latentmim_sa.gin", "--gin", "gin/presets/test_tiny.gin"]


def _cli(*args):
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, expected", [
    (["--gin_param", "train.lr = = 3"], "--gin_param 'train.lr = = 3'"),                  # malformed binding
    (["--gin_param", "train.batch_size = 'big'"], "train.batch_size = 'big'"),           # wrong type
    (["--gin_param", "train.ckpt_every = 0"], "train.ckpt_every = 0: must be an integer >= 1"),
    (["--max_steps", "-5"], "max_steps = -5"),
])
def test_train_user_errors_are_one_message_and_exit_2(tmp_path, args, expected):
    done = _cli("tools/train.py", *RECIPE, "--workdir", str(tmp_path / "w"), *args)
    assert done.returncode == 2, done.stderr[-3000:]
    assert expected in done.stderr and done.stderr.startswith("error: ")
    assert "Traceback" not in done.stderr and "In call to configurable" not in done.stderr


def test_a_preset_without_a_recipe_says_what_to_pass(tmp_path):
    done = _cli("tools/train.py", "--gin", "gin/presets/test_tiny.gin", "--workdir", str(tmp_path / "w"))
    assert done.returncode == 2 and "Pass a recipe first" in done.stderr and "Traceback" not in done.stderr


def test_debug_shows_the_traceback(tmp_path):
    done = _cli("tools/train.py", *RECIPE, "--workdir", str(tmp_path / "w"), "--max_steps", "-5", "--debug")
    assert done.returncode == 1 and "Traceback" in done.stderr and "max_steps = -5" in done.stderr


def test_export_without_a_checkpoint_is_one_message(tmp_path):
    done = _cli("tools/export.py", "--workdir", str(tmp_path))
    assert done.returncode == 2 and "no checkpoint in" in done.stderr and "Traceback" not in done.stderr
    done = _cli("tools/export.py", "--checkpoint", str(tmp_path / "nope.pt"))
    assert done.returncode == 2 and "not found" in done.stderr and "Traceback" not in done.stderr


def test_main_guard_keeps_tracebacks_of_bugs(capsys):
    from tools._cli import main_guard

    @main_guard
    def user(argv):
        raise ValueError("bad value: use 3")

    @main_guard
    def bug(argv):
        raise ZeroDivisionError("a bug")

    assert user([]) == 2 and capsys.readouterr().err.startswith("error: bad value: use 3")
    with pytest.raises(ZeroDivisionError):
        bug([])


def test_print_config_shows_the_bindings_and_warns_about_a_full_recipe_on_cpu(tmp_path):
    import os

    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    run = lambda *a: subprocess.run([sys.executable, "tools/train.py", *a], cwd=REPO_ROOT, capture_output=True,  # noqa: E731
                                    text=True, timeout=300, env=env)
    full = run("--gin", "gin/latentmim_sa.gin", "--print_config")
    assert full.returncode == 0, full.stderr
    assert "train.batch_size = 128" in full.stdout and "train.accum_steps = 4" in full.stdout
    assert "SpatialAffinity" in full.stdout and not (tmp_path / "runs").exists()
    assert full.stderr.count("gin/presets/cpu_quick.gin") == 1 and "512 images per optimizer step" in full.stderr
    quick = run("--gin", "gin/latentmim_sa.gin", "--gin", "gin/presets/cpu_quick.gin", "--print_config",
                "--gin_param", "train.seed = 7")
    assert quick.returncode == 0 and "train.batch_size = 32" in quick.stdout and "train.seed = 7" in quick.stdout
    assert "cpu_quick" not in quick.stderr, quick.stderr


def test_list_configurables_names_components_and_their_parameters():
    done = _cli("tools/train.py", "--list_configurables")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(li.startswith("SensorNormalize(mr_mean, mr_std, hr_mean, hr_std") for li in lines)
    assert any(li.startswith("SpatialAffinity(") for li in lines) and any(li.startswith("train(") for li in lines)
