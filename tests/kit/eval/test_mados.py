import numpy as np
import pytest
import rasterio
import torch

from crossscale_kit.eval.mados import MADOS
from crossscale_kit.io import CorruptSampleError


def test_reads_bands_labels_and_nan(mados_root):
    ds = MADOS(mados_root, "train")
    assert ds.num_classes == 15 and ds.ignore_index == -1
    for i in range(len(ds)):
        img, lab = ds[i]
        assert img.shape == (4, 240, 240) and lab.shape == (240, 240)
        assert np.isfinite(img.numpy()).all()
        scene, crop = ds.crops[i]
        with rasterio.open(mados_root / scene / "10" / f"{scene}_L2R_cl_{crop}.tif") as f:
            raw = f.read(1).astype(np.int64)
        nan = ~np.isfinite(rasterio.open(ds.band_paths(scene, crop)[0]).read(1))
        assert (lab.numpy()[nan] == -1).all()
        np.testing.assert_array_equal(lab.numpy()[~nan], raw[~nan] - 1)
    # scene 1 names green 559 nm (Sentinel-2B); it is matched within the tolerance
    assert any(p.name.endswith("_559_1.tif") for p in ds.band_paths("Scene_1", "1"))


def test_official_nan_handling_keeps_labels(mados_root):
    ign, fill = MADOS(mados_root, "val"), MADOS(mados_root, "val", nan_mode="fill")
    img_i, lab_i = ign[0]
    img_f, lab_f = fill[0]
    np.testing.assert_array_equal(img_i.numpy(), img_f.numpy())
    scene, crop = fill.crops[0]
    with rasterio.open(mados_root / scene / "10" / f"{scene}_L2R_cl_{crop}.tif") as f:
        raw = f.read(1).astype(np.int64)
    nan = ~np.isfinite(rasterio.open(fill.band_paths(scene, crop)[0]).read(1))
    assert nan.any() and (lab_i.numpy()[nan] == -1).all()
    np.testing.assert_array_equal(lab_f.numpy(), raw - 1)  # fill: every label kept (0 unlabelled -> -1 only)
    with pytest.raises(ValueError, match="nan_mode"):
        MADOS(mados_root, "val", nan_mode="drop")


def test_red_edge_from_the_20m_folder_resampled_to_10m(mados_root):
    ds = MADOS(mados_root, "train", bands=["red", "rededge1", "rededge3", "nir"], stats=([0] * 4, [1] * 4))
    paths = ds.band_paths("Scene_1", "1")
    assert [p.parent.name for p in paths] == ["10", "20", "20", "10"] and paths[2].name.endswith("_780_1.tif")
    scene, crop = ds.crops[0]
    with rasterio.open(ds.band_paths(scene, crop)[1]) as f:
        re20 = f.read(1)
    assert re20.shape == (120, 120)
    img = ds[0][0].numpy()
    assert img.shape == (4, 240, 240)
    up = np.repeat(np.repeat(re20, 2, 0), 2, 1)  # each 20 m pixel onto its 2 x 2 10 m pixels
    finite = np.isfinite(up)
    np.testing.assert_allclose(img[1][finite], up[finite])
    # the authors' "NIR" (B7, 783 nm) on request
    assert MADOS(mados_root, "train", nir_nm=783, stats=([0] * 4, [1] * 4)).band_paths("Scene_0", "1")[3].parent.name == "20"


def test_missing_20m_folder_is_named(mados_root, tmp_path):
    import shutil

    root = tmp_path / "m"
    shutil.copytree(mados_root, root)
    for scene in root.glob("Scene_*"):
        shutil.rmtree(scene / "20", ignore_errors=True)
    ds = MADOS(root, "train", bands=["rededge1"], stats=([0], [1]))
    with pytest.raises(FileNotFoundError, match="20 m folder 20/"):
        ds[0]


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


@pytest.mark.parametrize("nan_mode", ["ignore", "fill"])
def test_a_preloaded_split_gives_the_same_items_without_reading_again(mados_root, nan_mode):
    ref = MADOS(mados_root, "train", nan_mode=nan_mode)
    ds = MADOS(mados_root, "train", nan_mode=nan_mode, stats=(ref.mean.ravel(), ref.std.ravel()))
    reads = []
    read = ds._read_raw
    ds._read_raw = lambda crop: reads.append(crop) or read(crop)  # a spy on the real read
    assert ds.preload() and sorted(reads) == sorted(ds.crops)
    for i in np.random.default_rng(0).permutation(len(ds)):
        (img, lab), (img_ref, lab_ref) = ds[i], ref[i]
        assert img.dtype == img_ref.dtype == torch.float32 and lab.dtype == lab_ref.dtype == torch.int64
        assert torch.equal(img, img_ref) and torch.equal(lab, lab_ref), i
    assert len(reads) == len(ds.crops)
    ds[0][0].fill_(7.0)  # an item changed in place leaves the held one as it was
    assert torch.equal(ds[0][0], ref[0][0])
    assert not MADOS(mados_root, "train", stats=(ref.mean.ravel(), ref.std.ravel())).preload(max_gb=1e-6)
