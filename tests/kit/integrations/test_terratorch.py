"""The export as a TerraTorch backbone: found by name in TerraTorch's registry, multi-layer outputs, and a few CPU
steps of ``terratorch fit`` (SemanticSegmentationTask, FCN decoder) on a tiny GeoTIFF set from docs/'s YAML lower the
loss. Skipped where TerraTorch is not installed (CI installs only .[test]; pip install -e ".[terratorch]")."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from tests.data.fixtures import REPO

terratorch = pytest.importorskip("terratorch")


def test_backbone_is_found_by_name_with_multi_layer_outputs(export_dir):
    from terratorch.registry import BACKBONE_REGISTRY

    from crossscale_kit.eval.features import patch_features
    from crossscale_kit.integrations.terratorch import BACKBONE_NAME, datamodule_args

    assert BACKBONE_NAME in BACKBONE_REGISTRY
    bb = BACKBONE_REGISTRY.build(BACKBONE_NAME, export_dir=str(export_dir)).eval()
    assert bb.out_indices == [0, 1, 2] and bb.out_channels == [64, 64, 64]
    x = torch.randn(2, 4, 40, 40)
    with torch.no_grad():
        maps = bb(x)
        ref = patch_features(bb.model, x, None)
    assert [tuple(m.shape) for m in maps] == [(2, 64, 5, 5)] * 3
    torch.testing.assert_close(maps[-1].permute(0, 2, 3, 1), ref, rtol=1e-5, atol=1e-5)
    assert datamodule_args(export_dir)["dataset_bands"] == ["B2", "B3", "B4", "B8"]
    with pytest.raises(ValueError, match="do not match"):
        BACKBONE_REGISTRY.build(BACKBONE_NAME, export_dir=str(export_dir), model_bands=["B4", "B3", "B2", "B8"])


def _write_set(root, n, seed):
    """``n`` 32 px 4-band int16 GeoTIFFs (DN) with 2-class masks: class 1 where NIR is high (vegetation-like)."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    for i in range(n):
        veg = np.zeros((32, 32), bool)
        for _ in range(3):
            r, c, h, w = rng.integers(0, 24, 2).tolist() + rng.integers(6, 16, 2).tolist()
            veg[r:r + h, c:c + w] = True
        base = np.array([450, 720, 820, 1500])[:, None, None] + rng.normal(0, 60, (4, 32, 32))
        base[3] += 2200 * veg
        base[2] -= 300 * veg
        prof = dict(driver="GTiff", width=32, height=32, crs="EPSG:32632", transform=from_origin(500000, 0, 10, 10))
        with rasterio.open(root / f"s{i}_img.tif", "w", count=4, dtype="int16", **prof) as ds:
            ds.write(base.astype(np.int16))
        with rasterio.open(root / f"s{i}_mask.tif", "w", count=1, dtype="uint8", **prof) as ds:
            ds.write(veg.astype(np.uint8)[None])


def test_terratorch_fit_from_the_docs_config_lowers_the_loss(export_dir, tmp_path):
    data = tmp_path / "seg"
    for split, n, seed in (("train", 8, 0), ("val", 4, 1), ("test", 4, 2)):
        _write_set(data / split, n, seed)
    cfg = yaml.safe_load((REPO / "docs" / "terratorch" / "crossscale_fcn.yaml").read_text())
    from crossscale_kit.integrations.terratorch import datamodule_args

    args = cfg["data"]["init_args"]
    assert {k: args[k] for k in ("means", "stds")} == {k: datamodule_args(export_dir)[k] for k in ("means", "stds")}
    for split in ("train", "val", "test"):
        args[f"{split}_data_root"] = args[f"{split}_label_data_root"] = str(data / split)
    cfg["custom_modules_path"] = str(REPO / cfg["custom_modules_path"])
    cfg["model"]["init_args"]["model_args"]["backbone_export_dir"] = str(export_dir)
    cfg["trainer"].update(accelerator="cpu", max_epochs=6)
    cfg["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "logs")
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "terratorch", "fit", "--config", str(tmp_path / "cfg.yaml")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    metrics = next((tmp_path / "logs").rglob("metrics.csv"))
    with open(metrics) as f:
        loss = [float(row["train/loss"]) for row in csv.DictReader(f) if row.get("train/loss")]
    assert len(loss) == 12  # 6 epochs x 2 batches of 4
    assert np.mean(loss[-3:]) < 0.7 * np.mean(loss[:3]), loss
