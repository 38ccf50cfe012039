"""Two GeoTIFFs -> pair shards: geometry, reprojection, and every kind of bad input."""
import argparse
import glob
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import rasterio
import webdataset as wds
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin

from crossscale_kit.data.sources import geotiff
from tests.data.fixtures import REPO, load_tool
from tests.data.make_geotiff_pair import CRS, X0, Y0, truth
from tests.data.real_s2 import s2_tile

make_shards = load_tool("make_shards")


def run(pair, hr, out, *extra, mr="mr"):
    """Parse the flags as ``make_shards.py geotiff`` does and run the source with its typed options."""
    p = argparse.ArgumentParser()
    make_shards._geotiff_arguments(p)
    args = p.parse_args(["--mr", str(pair[mr]), "--hr", str(pair[hr]), "--out", str(out), "--tile", "8", *extra])
    return geotiff.run(geotiff.Options(**vars(args)))


def write(path, arr, gsd, *, descriptions=None, colorinterp=None, nodata=None):
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                       dtype=arr.dtype, crs=CRS, transform=from_origin(X0, Y0, gsd, gsd), nodata=nodata) as ds:
        ds.write(arr)
        if descriptions:
            ds.descriptions = tuple(descriptions)
        if colorinterp:
            ds.colorinterp = colorinterp
    return path


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


def test_all_nodata_tiles_are_an_error_that_says_why(geotiff_pair, tmp_path):
    with pytest.raises(ValueError, match=r"no tile pair .* passed the checks \(skipped: \{'nodata': \d+\}.*nothing "
                                         r"was written.*--max-nodata"):
        run(geotiff_pair, "hr_nodata", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_max_nodata_threshold_admits_partial_tiles(geotiff_pair, tmp_path):
    strict = run(geotiff_pair, "hr", tmp_path / "a")
    loose = run(geotiff_pair, "hr", tmp_path / "b", "--max-nodata", "1.0")
    assert loose["written"] == strict["tiles"] > strict["written"]
    with rasterio.open(geotiff_pair["hr"]) as ds:
        assert ds.nodata == -10000


def test_description_less_raster_gets_a_loud_notice(geotiff_pair, tmp_path):
    with pytest.warns(UserWarning, match=r"hr.tif .*ASSUMING blue=1,green=2,red=3,nir=4.*--hr-bands blue=<i>"):
        run(geotiff_pair, "hr", tmp_path / "o")


def test_colour_interpretation_gives_the_band_order(tmp_path):
    mr, hr = truth(3)
    order = [2, 0, 3, 1]  # the file stores red, blue, nir, green
    ci = [ColorInterp.red, ColorInterp.blue, ColorInterp.nir, ColorInterp.green]
    pair = {"mr": write(tmp_path / "mr.tif", mr[order], 10, colorinterp=ci),
            "hr": write(tmp_path / "hr.tif", hr[order], 5, colorinterp=ci)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "ASSUMING" notice: the file says what its bands are
        s = run(pair, "hr", tmp_path / "o")
    assert s["mr_bands"] == [2, 4, 1, 3] and s["written"] == 36
    smp = read_shards(tmp_path / "o")[0]
    r, c = smp["json"]["mr_row"], smp["json"]["mr_col"]
    np.testing.assert_array_equal(smp["mr.npy"], mr[:, r:r + 8, c:c + 8])


def test_unit_float_reflectance_is_scaled_never_rounded_to_zero(tmp_path):
    mr, hr = truth(4)
    d = ["B2", "B3", "B4", "B8"]
    pair = {"mr": write(tmp_path / "mr.tif", (mr / 10000).astype(np.float32), 10, descriptions=d),
            "hr": write(tmp_path / "hr.tif", (hr / 10000).astype(np.float32), 5, descriptions=d)}
    s = run(pair, "hr", tmp_path / "o")
    assert s["reflectance_scale"] == {"mr": 10000.0, "hr": 10000.0} and s["units_warning"] is None
    for smp in read_shards(tmp_path / "o"):
        r, c = smp["json"]["mr_row"], smp["json"]["mr_col"]
        np.testing.assert_array_equal(smp["mr.npy"], mr[:, r:r + 8, c:c + 8])
        np.testing.assert_array_equal(smp["hr.npy"], hr[:, 2 * r:2 * r + 16, 2 * c:2 * c + 16])
    with pytest.raises(ValueError, match="round to zero.*--reflectance-scale 10000"):
        run(pair, "hr", tmp_path / "p", "--reflectance-scale", "1")
    assert not glob.glob(f"{tmp_path}/p/*.tar")


def test_uint8_data_is_written_with_a_units_warning(tmp_path):
    mr, hr = truth(5)
    d = ["Blue", "Green", "Red", "NIR"]
    pair = {"mr": write(tmp_path / "mr.tif", (mr // 16).astype(np.uint8), 10, descriptions=d),
            "hr": write(tmp_path / "hr.tif", (hr // 16).astype(np.uint8), 5, descriptions=d)}
    with pytest.warns(UserWarning, match="8-bit"):
        s = run(pair, "hr", tmp_path / "o")
    assert "8-bit" in s["units_warning"] and s["written"] == 36
    index = json.loads((tmp_path / "o" / "index.json").read_text())
    assert index["band_stats"]["nir"]["max"] <= 255


def test_real_sentinel2_pixels_pair_exactly(tmp_path):
    """Real MR pixels (spyndex's S2 tile): an HR raster whose 2 x 2 block means are that tile pairs back exactly."""
    mr = s2_tile()[:, :96, :96].astype(np.int64)
    rng = np.random.default_rng(0)
    a, b = rng.integers(-50, 50, size=(2, *mr.shape))
    hr = np.repeat(np.repeat(mr, 2, -1), 2, -2)
    hr[:, 0::2, 0::2] += a
    hr[:, 0::2, 1::2] -= a
    hr[:, 1::2, 0::2] += b
    hr[:, 1::2, 1::2] -= b
    d = ["B02", "B03", "B04", "B08"]
    pair = {"mr": write(tmp_path / "mr.tif", mr.astype(np.int16), 10, descriptions=d, nodata=-10000),
            "hr": write(tmp_path / "hr.tif", hr.astype(np.int16), 5, descriptions=d, nodata=-10000)}
    s = run(pair, "hr", tmp_path / "o", "--tile", "32")
    assert s["written"] == 9 and s["units_warning"] is None
    for smp in read_shards(tmp_path / "o"):
        r, c = smp["json"]["mr_row"], smp["json"]["mr_col"]
        np.testing.assert_array_equal(smp["mr.npy"], mr[:, r:r + 32, c:c + 32])
        np.testing.assert_array_equal(smp["hr.npy"].reshape(4, 32, 2, 32, 2).mean((2, 4)), mr[:, r:r + 32, c:c + 32])


def test_cli_errors_exit_2_without_traceback(geotiff_pair, tmp_path):
    r = subprocess.run([sys.executable, "tools/make_shards.py", "geotiff", "--mr", str(geotiff_pair["mr"]), "--hr",
                        str(geotiff_pair["hr_far"]), "--out", str(tmp_path / "o")], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2 and "do not overlap" in r.stderr and "Traceback" not in r.stderr


def test_cli_warns_once_and_prints_the_normalisation_bindings_of_what_it_wrote(tmp_path):
    """8-bit data: the units warning shows once (not logged and warned), and the SensorNormalize bindings
    printed on stderr are valid gin that normalise the written data to zero mean, unit std."""
    import gin

    from crossscale_kit.train.config import parse

    mr, hr = truth(5)
    d = ["Blue", "Green", "Red", "NIR"]
    mr_tif = write(tmp_path / "mr.tif", (mr // 16).astype(np.uint8), 10, descriptions=d)
    hr_tif = write(tmp_path / "hr.tif", (hr // 16).astype(np.uint8), 5, descriptions=d)
    r = subprocess.run([sys.executable, "tools/make_shards.py", "geotiff", "--mr", str(mr_tif), "--hr", str(hr_tif),
                        "--out", str(tmp_path / "o"), "--tile", "8"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("far from the normalisation") == 1 and "look like 8-bit" in r.stderr, r.stderr
    assert json.loads(r.stdout)["written"] == 36  # stdout stays the JSON summary
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("SensorNormalize.")]
    assert [ln.split(" =")[0] for ln in lines] == [f"SensorNormalize.{k}" for k in ("mr_mean", "mr_std", "hr_mean", "hr_std")]
    parse([], lines)
    try:
        stats = json.loads((tmp_path / "o" / "index.json").read_text())["band_stats"]
        mean = gin.query_parameter("SensorNormalize.mr_mean")
        std = gin.query_parameter("SensorNormalize.hr_std")
        for i, b in enumerate(["blue", "green", "red", "nir"]):
            assert mean[i] == pytest.approx(stats[b]["mean"], abs=0.01)
            assert std[i] == pytest.approx(stats[b]["std"], abs=0.01)
    finally:
        gin.clear_config()
