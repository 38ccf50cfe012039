import ast
import json
import pickle

import h5py
import numpy as np
import pytest
import torch

from crossscale_kit.eval.geobench import BAND_NAMES, GeoBenchSegmentation, band_datasets
from crossscale_kit.io import CorruptSampleError

KIT4 = ("02 - Blue", "03 - Green", "04 - Red", "08 - NIR")


def test_fake_is_in_the_released_format(geobench_root):
    """The fake holds what the release holds: dated cashew keys varying per sample, dtypes, 13 bands, pickle."""
    cashew, sa = geobench_root / "m-cashew-plant", geobench_root / "m-SA-crop-type"
    dates = set()
    for i in (0, 1, 2):
        with h5py.File(cashew / f"sample_{i}.hdf5") as f:
            bands = [k for k in f if k != "label"]
            assert len(bands) == 13 and all(k.rsplit("_", 1)[1][:2] == "20" for k in bands if k != "label")
            dates.add(bands[0].rsplit("_", 1)[1])
            assert f[bands[0]].dtype == np.float32 and f["label"].dtype == np.int64 and f["label"].shape == (256, 256)
            with pytest.raises(ModuleNotFoundError, match="geobench"):  # as the real files: needs the geobench package
                pickle.loads(ast.literal_eval(f.attrs["pickle"]))
    assert len(dates) > 1, "cashew dates must differ per sample"
    with h5py.File(sa / "sample_0.hdf5") as f:
        assert "02 - Blue" in f and f["02 - Blue"].dtype == np.int16 and f["label"].dtype == np.int16
        assert "Cloud Probability" in f and "10 - SWIR - Cirrus" not in f
    stats = json.loads((cashew / "band_stats.json").read_text())
    assert "02 - Blue" in stats and {"mean", "std", "percentile_99"} <= set(stats["02 - Blue"])
    assert (cashew / "1.00x_train_partition.json").is_file() and (cashew / "task_specs.pkl").is_file()


def test_band_datasets_match_with_or_without_date():
    keys = ["02 - Blue_2019-11-15", "08 - NIR_2019-11-15", "08A - Vegetation Red Edge_2019-11-15", "label"]
    assert band_datasets(keys, ["08 - NIR", "02 - Blue"]) == ["08 - NIR_2019-11-15", "02 - Blue_2019-11-15"]
    assert band_datasets(["02 - Blue", "label"], ["02 - Blue"]) == ["02 - Blue"]
    with pytest.raises(CorruptSampleError, match="04 - Red"):
        band_datasets(keys, ["04 - Red"])
    with pytest.raises(CorruptSampleError, match="several dates"):
        band_datasets(["02 - Blue_2019-11-15", "02 - Blue_2019-11-20"], ["02 - Blue"])


def test_cashew_is_cut_into_4x4_tiles_and_normalised(geobench_root):
    ds = GeoBenchSegmentation(geobench_root / "m-cashew-plant", "train")
    assert ds.num_classes == 7 and ds.ignore_index == -1 and ds.tiles == 4
    assert len(ds) == 6 * 16
    img, lab = ds[16 + 5]  # sample 1, tile (1, 1)
    assert img.shape == (4, 64, 64) and lab.shape == (64, 64)
    stats = json.loads((geobench_root / "m-cashew-plant" / "band_stats.json").read_text())
    with h5py.File(geobench_root / "m-cashew-plant" / f"{ds.names[1]}.hdf5") as f:
        keys = band_datasets(list(f), list(KIT4))
        raw = np.stack([f[k][64:128, 64:128] for k in keys]).astype(np.float32)
        full_label = f["label"][64:128, 64:128]
    mean = np.array([stats[b]["mean"] for b in KIT4])[:, None, None]
    std = np.array([stats[b]["std"] for b in KIT4])[:, None, None]
    np.testing.assert_allclose(img.numpy(), (raw - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(lab.numpy(), full_label)


def test_class0_is_scored_unless_asked(geobench_root):
    ds = GeoBenchSegmentation(geobench_root, "val", task="m-SA-crop-type")
    assert ds.num_classes == 10 and ds.tiles == 4 and len(ds) == 3 * 16
    labels = np.concatenate([ds[i][1].numpy().ravel() for i in range(16)])
    assert (labels == 0).any() and labels.min() >= 0
    ig = GeoBenchSegmentation(geobench_root, "val", task="m-SA-crop-type", ignore_class0=True)
    labels_ig = np.concatenate([ig[i][1].numpy().ravel() for i in range(16)])
    np.testing.assert_array_equal(labels_ig, np.where(labels == 0, -1, labels))


def test_sa_crop_type_band_names_and_whole_images(geobench_root):
    ds = GeoBenchSegmentation(geobench_root, "val", task="m-SA-crop-type", bands=["02 - Blue", "cloud"], tiles=1)
    img, lab = ds[0]
    assert img.shape == (2, 256, 256) and lab.shape == (256, 256) and BAND_NAMES["cloud"] == "Cloud Probability"


def test_bad_inputs_are_clear_errors(geobench_root, tmp_path):
    with pytest.raises(ValueError, match="Pink"):
        GeoBenchSegmentation(geobench_root / "m-cashew-plant", "train", bands=["02 - Blue", "99 - Pink"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        GeoBenchSegmentation(tmp_path / "nope", "train")
    with pytest.raises(ValueError, match="unknown GEO-Bench task"):
        GeoBenchSegmentation(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        GeoBenchSegmentation(geobench_root / "m-cashew-plant", "holdout")
    with pytest.raises(ValueError, match="--dataset m-cashew-plant"):
        GeoBenchSegmentation(geobench_root / "m-cashew-plant", "train", task="m-SA-crop-type")


def test_class_count_disagreeing_with_the_task_is_an_error(geobench_root, tmp_path):
    import shutil

    other = tmp_path / "renamed"
    shutil.copytree(geobench_root / "m-cashew-plant", other)
    with pytest.raises(ValueError, match=r"describes \[7\] classes but m-SA-crop-type has 10"):
        GeoBenchSegmentation(other, "train", task="m-SA-crop-type")


def test_corrupt_hdf5_raises_or_is_counted(geobench_root):
    ds = GeoBenchSegmentation(geobench_root / "m-cashew-plant", "train", partition="corrupt")
    with pytest.raises(CorruptSampleError, match="sample_corrupt.hdf5"):
        ds[len(ds) - 1]
    ds = GeoBenchSegmentation(geobench_root / "m-cashew-plant", "train", partition="corrupt", skip_corrupt=True)
    assert ds.skipped == {"corrupt": 1} and len(ds) == 6 * 16


@pytest.mark.parametrize("task, ignore_class0", [("m-cashew-plant", False), ("m-SA-crop-type", True)])
def test_a_preloaded_split_gives_the_same_tiles_and_reads_each_sample_once(geobench_root, task, ignore_class0):
    """The faithful probe asks for tiles in random order: held in memory, every sample is read once,
    and each tile (image and label, class 0 ignored or not) equals what the per-item reader gives."""
    ref = GeoBenchSegmentation(geobench_root / task, "train", ignore_class0=ignore_class0)
    ds = GeoBenchSegmentation(geobench_root / task, "train", ignore_class0=ignore_class0)
    reads = []
    read = ds._read
    ds._read = lambda name: reads.append(name) or read(name)  # a spy on the real read
    assert ds.preload() and ds.preload()  # a second call does nothing
    assert sorted(reads) == sorted(ds.names)
    order = np.random.default_rng(0).permutation(len(ds))
    for i in order:
        (img, lab), (img_ref, lab_ref) = ds[i], ref[i]
        assert lab.dtype == lab_ref.dtype == torch.int64 and img.dtype == torch.float32
        assert torch.equal(img, img_ref) and torch.equal(lab, lab_ref), i
    assert len(reads) == len(ds.names)  # no read after the preload
    assert ignore_class0 == bool((torch.stack([ds[i][1] for i in range(len(ds))]) == -1).any())
    whole = GeoBenchSegmentation(geobench_root / task, "train", tiles=1)
    assert whole.preload()
    whole[0][0].fill_(7.0)  # an item changed in place (a whole image here) leaves the held sample as it was
    assert torch.equal(whole[0][0], GeoBenchSegmentation(geobench_root / task, "train", tiles=1)[0][0])


def test_a_split_too_large_for_the_budget_is_read_per_item(geobench_root):
    ds = GeoBenchSegmentation(geobench_root / "m-cashew-plant", "train")
    assert not ds.preload(max_gb=1e-4)  # one sample of 4 x 256 x 256 float32 is 1 MiB > 0.1 MiB in all
    assert ds._held is None and ds[0][0].shape == (4, 64, 64)
