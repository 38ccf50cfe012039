import numpy as np
import pytest
import rasterio

from kit.eval.mados import MADOS, CorruptSampleError


def test_reads_bands_labels_and_nan(mados_root):
    ds = MADOS(mados_root, "train")
    assert ds.num_classes == 15 and ds.ignore_index == -1
    for i in range(len(ds)):
        img, lab = ds[i]
        assert img.shape == (4, 48, 48) and lab.shape == (48, 48)
        assert np.isfinite(img.numpy()).all()
        scene, crop = ds.crops[i]
        with rasterio.open(mados_root / scene / "10" / f"{scene}_L2R_cl_{crop}.tif") as f:
            raw = f.read(1).astype(np.int64)
        nan = ~np.isfinite(rasterio.open(ds.band_paths(scene, crop)[0]).read(1))
        assert (lab.numpy()[nan] == -1).all()
        np.testing.assert_array_equal(lab.numpy()[~nan], raw[~nan] - 1)
    # scene 1 names green 559 nm (Sentinel-2A); it is matched within the tolerance
    assert any(p.name.endswith("_559_1.tif") for p in ds.band_paths("Scene_1", "1"))


def test_val_uses_train_statistics(mados_root):
    tr, va = MADOS(mados_root, "train"), MADOS(mados_root, "val")
    np.testing.assert_allclose(tr.mean, va.mean)


def test_bad_inputs(mados_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="split file"):
        MADOS(mados_root, "holdout")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MADOS(tmp_path / "x", "train")
    with pytest.raises(FileNotFoundError, match="559"):
        MADOS(mados_root, "train", bands=[559], tolerance_nm=0, stats=([0], [1])).band_paths("Scene_0", "1")
    with pytest.raises(ValueError, match="swir"):
        MADOS(mados_root, "train", bands=["swir"])


def test_corrupt_tif_raises_or_is_counted(mados_root):
    ds = MADOS(mados_root, "corrupt", stats=([0] * 4, [1] * 4))
    with pytest.raises(CorruptSampleError, match="Scene_99"):
        ds[0]
    ds = MADOS(mados_root, "corrupt", stats=([0] * 4, [1] * 4), skip_corrupt=True)
    assert ds.skipped == {"corrupt": 1} and len(ds) == 1
