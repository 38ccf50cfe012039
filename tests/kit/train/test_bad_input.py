"""Bad input stops before step 1 with a message that names the fix."""
import io
import tarfile

import numpy as np
import pytest

from crossscale_kit.data.writer import PairShardWriter
from crossscale_kit.train.config import GinConfigError, parse
from crossscale_kit.train.preflight import ConfigError
from tests.kit.train.helpers import run

RECIPE = "gin/latentmim_sa.gin"


def _tar_with_pair(path, mr, hr):
    with tarfile.open(path, "w") as tar:
        for name, arr in (("a0.mr.npy", mr), ("a0.hr.npy", hr)):
            buf = io.BytesIO()
            np.save(buf, arr)
            info = tarfile.TarInfo(name)
            info.size = len(buf.getvalue())
            tar.addfile(info, io.BytesIO(buf.getvalue()))
        payload = b'{"key": "a0"}'
        info = tarfile.TarInfo("a0.json")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))


def test_missing_shards(tmp_path):
    with pytest.raises(ConfigError, match="make_shards"):
        run(RECIPE, tmp_path / "w", bindings=[f"PairedTiles.root = '{tmp_path / 'nowhere'}'"], max_steps=1)
    assert not (tmp_path / "w" / "checkpoints").exists()


def test_hr_not_an_integer_multiple_of_mr(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    _tar_with_pair(data / "pairs-000000.tar", rng.integers(0, 3000, (4, 32, 32), dtype=np.int16),
                   rng.integers(0, 3000, (4, 48, 48), dtype=np.int16))
    with pytest.raises(ConfigError, match="(?i)integer"):
        run(RECIPE, tmp_path / "w", bindings=[f"PairedTiles.root = '{data}'"], max_steps=1)


def test_wrong_band_count(tmp_path):
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    with PairShardWriter(data, 4, bands=("blue", "green", "red")) as w:
        for i in range(4):
            w.write(f"p{i}", rng.integers(0, 3000, (3, 32, 32), dtype=np.int16),
                    rng.integers(0, 3000, (3, 64, 64), dtype=np.int16))
    with pytest.raises(ConfigError, match="band"):
        run(RECIPE, tmp_path / "w", bindings=[f"PairedTiles.root = '{data}'"], max_steps=1)


def test_gin_typos_suggest_the_right_name():
    with pytest.raises(GinConfigError, match="Did you mean 'encoder'"):
        parse([RECIPE], ["LatentMIM.encodr = @ViTEncoder()"])
    with pytest.raises(GinConfigError, match="Did you mean 'SpatialAffinity'"):
        parse([RECIPE], ["SpatialAfinity.weight = 2.0"])
    with pytest.raises(FileNotFoundError, match="not found"):
        parse(["gin/no_such_recipe.gin"])


def test_image_size_not_divisible_by_patch_size(tmp_path):
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        run(RECIPE, tmp_path, bindings=["IMG_SIZE = 30"], max_steps=1)


def test_problems_are_collected_into_one_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        run(RECIPE, tmp_path, max_steps=1, bindings=[
            "latentmim/RandomSplit.num_visible = 16", f"PairedTiles.root = '{tmp_path / 'nowhere'}'"])
    msg = str(err.value)
    assert "data:" in msg and "make_shards" in msg
    assert "model:" in msg and "do not fit" in msg


def test_cli_reports_configuration_errors_without_a_traceback(tmp_path, capsys):
    import importlib.util

    from crossscale_kit.train.config import REPO_ROOT

    spec = importlib.util.spec_from_file_location("train_cli", REPO_ROOT / "tools" / "train.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    base = ["--gin", RECIPE, "--gin", "gin/presets/test_tiny.gin", "--workdir", str(tmp_path)]
    assert cli.main(base + ["--gin_param", "IMG_SIZE = 30"]) == 2
    assert "multiple of the patch size" in capsys.readouterr().err
    assert cli.main(base + ["--gin_param", "LatentMIM.encodr = 3"]) == 2
    assert "Did you mean 'encoder'" in capsys.readouterr().err
