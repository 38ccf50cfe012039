"""Every shipped preset shrinks every host's SA recipe into something that trains (two CPU steps)."""
import math
from pathlib import Path

import pytest

from tests.kit.train.helpers import TINY, losses, run

PRESETS = sorted(str(p.relative_to(Path(__file__).resolve().parents[3])) for p in
                 (Path(__file__).resolve().parents[3] / "gin" / "presets").glob("*.gin"))


def test_presets_are_found():
    assert {"gin/presets/cpu_quick.gin", "gin/presets/cpu_mini.gin", "gin/presets/test_tiny.gin"} <= set(PRESETS)


@pytest.mark.parametrize("preset", [p for p in PRESETS if not p.endswith("test_tiny.gin")])  # tiny: test_recipes.py
@pytest.mark.parametrize("recipe", ["gin/latentmim_sa.gin", "gin/ijepa_sa.gin", "gin/mae_sa.gin"])
def test_preset_trains_two_steps(recipe, preset, tmp_path):
    # as_released.gin changes behaviour, not size: it runs on the tiny shapes
    after = [TINY] if preset.endswith("as_released.gin") else []
    result = run(recipe, tmp_path, max_steps=2, preset=preset, files_after=after)
    assert result["steps"] == 2
    rows = losses(tmp_path)
    assert [r["step"] for r in rows] == [1, 2]
    assert all(math.isfinite(r["loss/total"]) and math.isfinite(r["loss/gram"]) for r in rows)
