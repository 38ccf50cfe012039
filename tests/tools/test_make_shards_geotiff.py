"""Two GeoTIFFs -> pair shards: geometry, reprojection, and every kind of bad input."""
import argparse
import glob

import numpy as np
import pytest
import rasterio
import webdataset as wds

from kit.data.sources import geotiff


def run(pair, hr, out, *extra, mr="mr"):
    p = argparse.ArgumentParser()
    geotiff.add_arguments(p)
    return geotiff.run(p.parse_args(["--mr", str(pair[mr]), "--hr", str(pair[hr]), "--out", str(out), "--tile", "8", *extra]))


def read_shards(out):
    ds = wds.WebDataset(sorted(glob.glob(f"{out}/*.tar")), shardshuffle=False, empty_check=False).decode()
    return list(ds)


def test_block_mean_geometry(geotiff_pair, tmp_path):
    s = run(geotiff_pair, "hr", tmp_path / "o")
    assert s["scale"] == 2 and s["mode"] == "window" and s["written"] > 0 and s["skipped"].get("nodata", 0) > 0
    samples = read_shards(tmp_path / "o")
    assert len(samples) == s["written"]
    truth_mr, truth_hr = geotiff_pair["truth_mr"], geotiff_pair["truth_hr"]
    for smp in samples:
        mr, hr, meta = smp["mr.npy"], smp["hr.npy"], smp["json"]
        assert mr.shape == (4, 8, 8) and hr.shape == (4, 16, 16)
        # every MR tile is the 2 x 2 block mean of its HR tile
        np.testing.assert_array_equal(hr.astype(np.float64).reshape(4, 8, 2, 8, 2).mean((2, 4)), mr)
        # and both sit where the metadata says on the ground
        r, c = meta["mr_row"], meta["mr_col"]
        np.testing.assert_array_equal(mr, truth_mr[:, r:r + 8, c:c + 8])
        np.testing.assert_array_equal(hr, truth_hr[:, 2 * r:2 * r + 16, 2 * c:2 * c + 16])


def test_other_crs_is_warped_onto_the_mr_grid(geotiff_pair, tmp_path):
    s = run(geotiff_pair, "hr_utm32", tmp_path / "o")
    assert s["mode"] == "warp" and s["scale"] == 2 and s["written"] > 0
    for smp in read_shards(tmp_path / "o"):
        bm = smp["hr.npy"].astype(np.float64).reshape(4, 8, 2, 8, 2).mean((2, 4))
        mr = smp["mr.npy"].astype(np.float64)
        assert np.corrcoef(bm.ravel(), mr.ravel())[0, 1] > 0.99
        assert np.abs(bm - mr).mean() < 20


def test_explicit_band_mapping_matches_descriptions(geotiff_pair, tmp_path):
    a = run(geotiff_pair, "hr", tmp_path / "a")
    b = run(geotiff_pair, "hr", tmp_path / "b", "--mr-bands", "blue=2,green=B3,red=4,nir=b08", "--hr-bands", "1,2,3,4")
    assert a["written"] == b["written"]
    for x, y in zip(read_shards(tmp_path / "a"), read_shards(tmp_path / "b")):
        np.testing.assert_array_equal(x["mr.npy"], y["mr.npy"])


@pytest.mark.parametrize(
    "hr, extra, exc, match",
    [
        ("hr_far", [], ValueError, "do not overlap"),
        ("hr_4m", [], ValueError, "2.5000 is not an integer"),
        ("hr_3band", [], ValueError, r"no band for \['nir'\]"),
        ("corrupt", [], ValueError, "not a readable raster"),
        ("hr", ["--mr-bands", "blue=2,green=3,red=4,nir=9"], ValueError, "index 9"),
        ("hr", ["--mr-bands", "blue=2,green=3,red=4"], ValueError, "does not map"),
        ("hr", ["--tile", "64"], ValueError, "smaller than one"),
    ],
)
def test_bad_input_is_a_clear_error(geotiff_pair, tmp_path, hr, extra, exc, match):
    with pytest.raises(exc, match=match):
        run(geotiff_pair, hr, tmp_path / "o", *extra)
    assert not glob.glob(f"{tmp_path}/o/*.tar")


def test_missing_file(geotiff_pair, tmp_path):
    pair = dict(geotiff_pair, hr=tmp_path / "missing.tif")
    with pytest.raises(FileNotFoundError, match="missing.tif"):
        run(pair, "hr", tmp_path / "o")


def test_all_nodata_tiles_are_counted(geotiff_pair, tmp_path):
    with pytest.warns(UserWarning, match="nothing was written"):
        s = run(geotiff_pair, "hr_nodata", tmp_path / "o")
    assert s["written"] == 0 and s["skipped"] == {"nodata": s["tiles"]}


def test_max_nodata_threshold_admits_partial_tiles(geotiff_pair, tmp_path):
    strict = run(geotiff_pair, "hr", tmp_path / "a")
    loose = run(geotiff_pair, "hr", tmp_path / "b", "--max-nodata", "1.0")
    assert loose["written"] == strict["tiles"] > strict["written"]
    with rasterio.open(geotiff_pair["hr"]) as ds:
        assert ds.nodata == -10000
