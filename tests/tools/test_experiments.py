"""tools/experiments.py: table selection, shared overrides, one real run in a subprocess."""
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

import experiments  # noqa: E402


def test_every_table_row_has_a_recipe_and_every_recipe_a_row():
    recipes = experiments.select(["all"], [])
    assert len(recipes) == len(set(recipes))
    for r in recipes:
        assert (REPO / r).is_file(), r
    shipped = {str(p.relative_to(REPO)) for p in [*REPO.glob("gin/*.gin"), *REPO.glob("gin/ablations/*.gin")]}
    paper = {r for r in shipped if Path(r).stem.startswith(("ijepa", "latentmim"))}
    assert paper <= set(recipes)
    assert len(experiments.select(["I"], [])) == 6
    assert experiments.select(["III"], []) [0] == "gin/ijepa_sa.gin"
    # Table II and IV rows reuse the SA-models: each recipe runs once
    assert experiments.select(["II", "IV"], []).count("gin/latentmim_sa.gin") == 1


def test_names_resolve_and_typos_are_reported():
    assert experiments.resolve_recipe("ijepa_sa") == "gin/ijepa_sa.gin"
    assert experiments.resolve_recipe("ablations/ijepa_sa_linear") == "gin/ablations/ijepa_sa_linear.gin"
    assert experiments.resolve_recipe("latentmim_sa_block") == "gin/ablations/latentmim_sa_block.gin"
    with pytest.raises(ValueError, match="ijepa_sa"):
        experiments.resolve_recipe("ijepa_sax")
    assert experiments.main(["nonexistent_recipe"]) == 2


def test_shared_overrides_reach_every_command(capsys, tmp_path):
    rc = experiments.main([
        "--table", "IV", "--dry_run", "--out", str(tmp_path), "--max_steps", "3", "--seed", "7",
        "--data", "/shards/root", "--gin_param", "train.batch_size = 8", "--preset", "gin/presets/test_tiny.gin",
    ])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for line, name in zip(lines, ["latentmim_sa", "latentmim_sa_block"]):
        assert "tools/train.py --gin gin/" in line and "--gin gin/presets/test_tiny.gin" in line
        assert "'train.batch_size = 8'" in line and "'train.seed = 7'" in line
        assert "PairedTiles.root = \"/shards/root\"" in line
        assert f"--workdir {tmp_path}/{name} " in line and line.endswith("--max_steps 3")
    assert not any(tmp_path.iterdir())  # a dry run writes nothing


def test_runs_a_recipe_in_a_subprocess_and_reports_its_encoder(capsys, tmp_path):
    rc = experiments.main(["ijepa_sa", "--preset", "gin/presets/test_tiny.gin", "--max_steps", "1", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    export = tmp_path / "ijepa_sa" / "export"
    assert export.is_dir() and str(export) in out
    assert "loss/gram" in out and "23.57 / 21.14 / 41.73" in out
    record = json.loads((tmp_path / "experiments.json").read_text())
    assert record[0]["status"] == "ok" and {"loss/host", "loss/gram", "loss/total"} <= set(record[0]["losses"])
