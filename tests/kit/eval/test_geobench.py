import h5py
import numpy as np
import pytest

from kit.eval.geobench import CorruptSampleError, GeoBenchSegmentation


def test_cashew_is_cut_into_4x4_tiles_and_normalised(geobench_root):
    ds = GeoBenchSegmentation(geobench_root / "m-cashew-plant", "train")
    assert ds.num_classes == 7 and ds.ignore_index == 0 and ds.tiles == 4
    assert len(ds) == 8 * 16
    img, lab = ds[16 + 5]  # sample 1, tile (1, 1)
    assert img.shape == (4, 16, 16) and lab.shape == (16, 16)
    import json

    stats = json.loads((geobench_root / "m-cashew-plant" / "band_stats.json").read_text())
    with h5py.File(geobench_root / "m-cashew-plant" / f"{ds.names[1]}.hdf5") as f:
        raw = np.stack([f[b][16:32, 16:32] for b in ("02 - Blue", "03 - Green", "04 - Red", "08 - NIR")]).astype(np.float32)
        full_label = f["label"][16:32, 16:32]
    mean = np.array([stats[b]["mean"] for b in ("02 - Blue", "03 - Green", "04 - Red", "08 - NIR")])[:, None, None]
    std = np.array([stats[b]["std"] for b in ("02 - Blue", "03 - Green", "04 - Red", "08 - NIR")])[:, None, None]
    np.testing.assert_allclose(img.numpy(), (raw - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(lab.numpy(), full_label)


def test_sa_crop_type_whole_and_band_names(geobench_root):
    ds = GeoBenchSegmentation(geobench_root, "val", task="m-SA-crop-type", bands=["02 - Blue", "04 - Red"])
    assert ds.num_classes == 10 and ds.tiles == 1 and len(ds) == 4
    img, lab = ds[0]
    assert img.shape == (2, 64, 64) and lab.shape == (64, 64)


def test_bad_inputs_are_clear_errors(geobench_root, tmp_path):
    with pytest.raises(ValueError, match="Pink"):
        GeoBenchSegmentation(geobench_root / "m-cashew-plant", "train", bands=["02 - Blue", "99 - Pink"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        GeoBenchSegmentation(tmp_path / "nope", "train")
    with pytest.raises(FileNotFoundError, match="partition"):
        GeoBenchSegmentation(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        GeoBenchSegmentation(geobench_root / "m-cashew-plant", "holdout")


def test_corrupt_hdf5_raises_or_is_counted(geobench_root):
    ds = GeoBenchSegmentation(geobench_root / "m-cashew-plant", "train", partition="corrupt")
    with pytest.raises(CorruptSampleError, match="sample_corrupt.hdf5"):
        ds[len(ds) - 1]
    ds = GeoBenchSegmentation(geobench_root / "m-cashew-plant", "train", partition="corrupt", skip_corrupt=True)
    assert ds.skipped == {"corrupt": 1} and len(ds) == 8 * 16
