"""Every shipped recipe is parsed, built and trained for two CPU steps (dopamine's gin_config_test habit)."""
import json
import math

import pytest

from tests.kit.train.helpers import losses, recipes, run

RECIPES = recipes()


def test_recipes_are_found():
    assert "gin/latentmim_sa.gin" in RECIPES and "gin/latentmim_mr.gin" in RECIPES and "gin/latentmim_hr.gin" in RECIPES


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_trains_two_steps(recipe, tmp_path):
    result = run(recipe, tmp_path, max_steps=2)
    assert result["steps"] == 2
    rows = losses(tmp_path)
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert math.isfinite(r["loss/total"]) and math.isfinite(r["loss/host"])
    is_sa = "_sa" in recipe
    assert ("loss/gram" in rows[-1]) == is_sa, "SA recipes log the gram loss separately, others do not"
    meta = json.loads((tmp_path / "export" / "meta.json").read_text())
    assert meta["recipe"][0] == recipe and (tmp_path / "export" / "encoder.safetensors").is_file()
    assert meta["gsd"] == (5.0 if meta["view"] == "hr" else 10.0)
    assert len(meta["normalization"]["mean"]) == len(meta["bands"]) == 4
    assert (tmp_path / "checkpoints" / "ckpt-00000002.pt").is_file()
    assert (tmp_path / "checkpoints" / "ckpt-00000002.gin").read_text().strip()
