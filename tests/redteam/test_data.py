"""Red team, data: shards that would train mislabelled, replaced or mis-scaled are refused or stored right.

Every case runs the tools in a subprocess on real GeoTIFFs (rasterio) and real shard sets.
"""
from __future__ import annotations

import glob
import json

import numpy as np
import pytest
import rasterio
import webdataset as wds
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin

from tests.data.make_geotiff_pair import CRS, X0, Y0, truth
from tests.redteam.helpers import assert_user_error, cli, train

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def write_tif(path, arr, gsd, *, colorinterp=None, nodata=None, photometric=None):
    kw = {"photometric": photometric} if photometric else {}
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                       dtype=arr.dtype, crs=CRS, transform=from_origin(X0, Y0, gsd, gsd), nodata=nodata, **kw) as ds:
        ds.write(arr)
        if colorinterp:
            ds.colorinterp = colorinterp
    return path


def shards(out):
    return list(wds.WebDataset(sorted(glob.glob(f"{out}/*.tar")), shardshuffle=False, empty_check=False).decode())


def geotiff(tmp_path, mr, hr, out, *extra, **kw):
    m = write_tif(tmp_path / "mr.tif", mr, 10, **kw)
    h = write_tif(tmp_path / "hr.tif", hr, 5, **kw)
    return cli("make_shards", "geotiff", "--mr", m, "--hr", h, "--out", out, "--tile", "8", *extra)


def test_rgb_plus_undefined_colour_interpretation_is_read_as_red_green_blue_nir(tmp_path):
    mr, hr = truth(3)  # kit order blue, green, red, nir
    order = [2, 1, 0, 3]  # the file stores red, green, blue, NIR (as a 4-band RGB(+NIR) GeoTIFF does)
    p = geotiff(tmp_path, mr[order], hr[order], tmp_path / "o", photometric="RGB",
                colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.undefined])
    assert p.returncode == 0, p.stderr[-2000:]
    assert "ASSUMING nir=4" in p.stderr and "no colour interpretation" not in p.stderr
    smp = shards(tmp_path / "o")[0]
    r, c = smp["json"]["mr_row"], smp["json"]["mr_col"]
    np.testing.assert_array_equal(smp["mr.npy"], mr[:, r:r + 8, c:c + 8])  # blue is blue, red is red


def test_unit_reflectance_with_one_outlier_per_band_is_scaled_by_10000(tmp_path):
    mr, hr = truth(3)
    mr_f, hr_f = (mr / 10000).astype(np.float32), (hr / 10000).astype(np.float32)
    mr_f[:, 3, 3] = 7.5  # one out-of-range pixel per band (a glint, a saturated sensor value)
    hr_f[:, 5, 5] = 7.5
    p = geotiff(tmp_path, mr_f, hr_f, tmp_path / "o", "--max-nodata", "1")
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.loads(p.stdout)
    assert summary["reflectance_scale"] == {"mr": 10000.0, "hr": 10000.0}
    assert "8-bit" not in p.stderr
    stored = np.concatenate([s["mr.npy"].ravel() for s in shards(tmp_path / "o")])
    assert np.mean(stored == 0) < 0.01 and np.median(stored) > 500


def test_undeclared_minus_9999_block_is_refused_with_the_flag_to_declare_it(tmp_path):
    mr, hr = truth(3)
    mr_f, hr_f = (mr / 10000).astype(np.float32), (hr / 10000).astype(np.float32)
    mr_f[:, :10, :10] = -9999
    hr_f[:, :20, :20] = -9999
    p = geotiff(tmp_path, mr_f, hr_f, tmp_path / "o")
    assert_user_error(p, "mr.tif", "-9999", "--nodata -9999")
    assert not (tmp_path / "o").exists()
    ok = geotiff(tmp_path, mr_f, hr_f, tmp_path / "o2", "--nodata", "-9999")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert json.loads(ok.stdout)["reflectance_scale"] == {"mr": 10000.0, "hr": 10000.0}


def test_uint16_above_int16_is_refused_not_clipped(tmp_path):
    mr, hr = truth(3)
    p = geotiff(tmp_path, (mr.astype(np.uint16) * 20), (hr.astype(np.uint16) * 20), tmp_path / "o")
    assert_user_error(p, "mr.tif", "int16", "--reflectance-scale")


def test_an_empty_output_set_is_an_error_that_says_why(tmp_path):
    mr, hr = truth(3)
    hr[:] = -10000
    p = geotiff(tmp_path, mr, hr, tmp_path / "o", nodata=-10000)
    assert_user_error(p, "nothing was written", "--max-nodata")


def test_prefix_cannot_escape_out(tmp_path):
    mr, hr = truth(3)
    p = geotiff(tmp_path, mr, hr, tmp_path / "o", "--prefix", "../escaped")
    assert_user_error(p, "--prefix", "--out")
    assert not list(tmp_path.glob("escaped*")) and not (tmp_path / "o").exists()


@pytest.fixture
def nir_first(tmp_path):
    """A shard set written in another documented band order: --bands nir red green blue."""
    mr, hr = truth(3)
    out = tmp_path / "nrgb"
    p = geotiff(tmp_path, mr, hr, out, "--bands", "nir", "red", "green", "blue", "--mr-bands", "blue=1,green=2,red=3,nir=4",
                "--hr-bands", "blue=1,green=2,red=3,nir=4")
    assert p.returncode == 0, p.stderr[-2000:]
    return out


def test_shards_in_another_band_order_do_not_train_under_the_recipes_normalisation(nir_first, tmp_path):
    p = train(tmp_path / "run", "--max_steps", "1", root=nir_first)
    line = assert_user_error(p, str(nir_first / "index.json"), "['nir', 'red', 'green', 'blue']",
                             "['blue', 'green', 'red', 'nir']", "--bands")
    assert not (tmp_path / "run" / "checkpoints").exists(), line


def test_an_explicit_band_order_binding_trains_with_bands_reordered_to_the_recipe(nir_first, tmp_path):
    w = tmp_path / "run"
    p = train(w, "--max_steps", "1", "--gin_param", "PairedTiles.band_order = ['nir', 'red', 'green', 'blue']",
              root=nir_first)
    assert p.returncode == 0, p.stderr[-2000:]
    meta = json.loads((w / "export" / "meta.json").read_text())
    assert meta["bands"] == meta["normalization"]["bands"] == ["blue", "green", "red", "nir"]
    assert meta["data"]["bands"] == ["nir", "red", "green", "blue"]  # the stored order, in the identity
    assert meta["data"]["band_order_fed"] == meta["bands"]
    from crossscale_kit.encoders.export import load_exported_encoder

    assert load_exported_encoder(w / "export")[1]["bands"] == ["blue", "green", "red", "nir"]  # consistent
    # cluster_map reads a tile of that set by the names its index records: the same map as the recipe-order set
    mr, hr = truth(3)
    assert geotiff(tmp_path, mr, hr, tmp_path / "bgrn").returncode == 0
    maps = []
    for name, root in (("a", nir_first), ("b", tmp_path / "bgrn")):
        p = cli("cluster_map", "--image", root / "pairs-000000.tar", "--encoder", w / "export", "--img-size", "32",
                "--out", tmp_path / f"{name}.png")
        assert p.returncode == 0, p.stderr[-2000:]
        maps.append(np.load(tmp_path / f"{name}.npz")["clusters_0"])
    np.testing.assert_array_equal(*maps)
    wrong = train(tmp_path / "run2", "--max_steps", "1", "--gin_param",
                  "PairedTiles.band_order = ['red', 'nir', 'green', 'blue']", root=nir_first)
    assert_user_error(wrong, "['nir', 'red', 'green', 'blue']", "['red', 'nir', 'green', 'blue']", "band_order")


def test_the_remapped_reader_feeds_the_same_tiles_as_shards_in_the_recipes_order(nir_first, tmp_path):
    from crossscale_kit.data.loader import PairedTiles

    mr, hr = truth(3)
    ref = geotiff(tmp_path, mr, hr, tmp_path / "bgrn", "--mr-bands", "blue=1,green=2,red=3,nir=4",
                  "--hr-bands", "blue=1,green=2,red=3,nir=4")
    assert ref.returncode == 0, ref.stderr[-2000:]
    kw = dict(batch_size=4, num_workers=0, shuffle_buffer=1, normalize=False)
    a = next(iter(PairedTiles(str(tmp_path / "bgrn"), **kw).stream(seed=0)))
    b = next(iter(PairedTiles(str(nir_first), band_order=["nir", "red", "green", "blue"], **kw).stream(seed=0)))
    assert a["key"] == b["key"]
    assert (a["mr"] == b["mr"]).all() and (a["hr"] == b["hr"]).all()
    stored = next(iter(PairedTiles(str(nir_first), band_order=["nir", "red", "green", "blue"], **kw).stream(seed=0)))
    assert stored["mr"][:, 0].float().mean() != stored["mr"][:, 3].float().mean()


def test_an_export_whose_encoder_bands_disagree_with_its_shard_set_is_refused_by_the_probe(tmp_path):
    # the meta.json of the issue: trained on nir-first shards, normalisation and bands labelled blue-first
    w = tmp_path / "run"
    assert train(w, "--max_steps", "1").returncode == 0
    meta_path = w / "export" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["data"]["bands"] = ["nir", "red", "green", "blue"]
    meta_path.write_text(json.dumps(meta))
    p = cli("probe", "--encoder", w / "export", "--dataset", "mados", "--root", tmp_path, "--out", tmp_path / "res")
    assert_user_error(p, str(meta_path), "['blue', 'green', 'red', 'nir']", "['nir', 'red', 'green', 'blue']",
                      "re-export")
    meta["data"]["bands"] = meta["bands"]
    meta["normalization"]["mean"] = meta["normalization"]["mean"][:3]
    meta_path.write_text(json.dumps(meta))
    p = cli("cluster_map", "--image", tmp_path / "none.npy", "--encoder", w / "export")
    assert_user_error(p, "none.npy")  # the image is checked first
    np.save(tmp_path / "img.npy", np.full((4, 32, 32), 1000, np.float32))
    p = cli("cluster_map", "--image", tmp_path / "img.npy", "--encoder", w / "export", "--out", tmp_path / "m.png")
    assert_user_error(p, str(meta_path), "normalization.mean holds 3 values")


def test_replacing_the_shard_set_at_the_same_path_refuses_the_resume(tmp_path):
    root = tmp_path / "shards"
    assert cli("make_shards", "synthetic", "--out", root, "--num-pairs", "24", "--mr-size", "32", "--shard-size", "8",
               "--no-progress").returncode == 0
    w = tmp_path / "run"
    assert train(w, "--max_steps", "3", root=root).returncode == 0
    assert json.loads((w / "run.json").read_text())["data"]["index_sha256"]
    p = cli("make_shards", "synthetic", "--out", root, "--num-pairs", "24", "--mr-size", "32", "--shard-size", "8",
            "--seed", "1", "--replace", "--no-progress")
    assert p.returncode == 0, p.stderr[-2000:]
    p = train(w, "--max_steps", "1", "--resume", root=root)
    assert_user_error(p, str(root), "not the one the run trained on", "index_sha256", "new --workdir")


def test_truncated_shard_is_one_line_naming_it_before_step_1(tmp_path):
    root = tmp_path / "shards"
    assert cli("make_shards", "synthetic", "--out", root, "--num-pairs", "24", "--mr-size", "32", "--shard-size", "8",
               "--no-progress").returncode == 0
    shard = root / "pairs-000001.tar"
    shard.write_bytes(shard.read_bytes()[:5000])
    p = train(tmp_path / "run", "--max_steps", "1", root=root)
    assert_user_error(p, str(shard), "re-write")
    assert not (tmp_path / "run" / "logs").exists()


def test_sen2venus_index_cannot_read_files_outside_the_dataset_root(tmp_path):
    import shutil

    import torch

    from tests.data.make_sen2venus import make

    e = make(tmp_path / "ds")
    shutil.rmtree(e["v1"] / "SITE-B")
    site = e["v1"] / "SITE-A"
    outside = tmp_path / "private"
    outside.mkdir()
    first = sorted(site.glob("*_S2_rgbnir.pt"))[0]
    torch.save(torch.load(first), outside / "secret.pt")
    index = site / "index.csv"
    index.write_text(index.read_text().replace(first.name, "../../../private/secret.pt"))
    p = cli("make_shards", "sen2venus", e["v1"], "--out", tmp_path / "o")
    assert_user_error(p, str(index), "outside the dataset root")
    assert not (tmp_path / "o").exists()


def test_two_writers_of_one_out_cannot_both_succeed(tmp_path):
    from crossscale_kit.data.writer import PairShardWriter

    out = tmp_path / "set"
    with PairShardWriter(out, 8) as first:  # a writer at work on --out (a real one, holding its lock)
        p = cli("make_shards", "synthetic", "--out", out, "--num-pairs", "8", "--mr-size", "32", "--no-progress")
        assert_user_error(p, str(out), "another process is writing", "--out")
        rng = np.random.default_rng(0)
        mr = rng.integers(100, 3000, (4, 8, 8), dtype=np.int16)
        first.write("a", mr, np.kron(mr, np.ones((1, 2, 2), dtype=np.int16)))
    assert json.loads((out / "index.json").read_text())["num_samples"] == 1


def test_scale_1_shards_under_a_cross_scale_recipe_stop_before_step_1(tmp_path):
    root = tmp_path / "s1"
    assert cli("make_shards", "synthetic", "--out", root, "--num-pairs", "24", "--mr-size", "32", "--scale", "1",
               "--shard-size", "8", "--no-progress").returncode == 0
    p = train(tmp_path / "run", "--max_steps", "1", root=root)
    assert_user_error(p, str(root), "scale-1", "SpatialAffinity")
    assert not (tmp_path / "run" / "logs").exists()


def test_sen2venus_run_that_writes_nothing_is_an_error_that_says_why(tmp_path):
    import shutil

    from tests.data.make_sen2venus import make

    e = make(tmp_path / "ds")
    shutil.rmtree(e["v1"] / "SITE-A")
    for pt in (e["v1"] / "SITE-B").glob("*.pt"):
        pt.write_bytes(b"garbage")
    p = cli("make_shards", "sen2venus", e["v1"], "--out", tmp_path / "o", "--release", "v1")
    assert_user_error(p, "nothing was written", "unreadable")
    assert not (tmp_path / "o").exists()


def test_a_folder_where_a_raster_is_expected_is_named(tmp_path):
    mr, hr = truth(3)
    m = write_tif(tmp_path / "mr.tif", mr, 10)
    p = cli("make_shards", "geotiff", "--mr", m, "--hr", tmp_path, "--out", tmp_path / "o", "--tile", "8")
    assert_user_error(p, str(tmp_path), "is a folder")


def _older_set(tmp_path):
    """A shard set as an older kit wrote it: index.json lists per-shard counts but no sizes or hashes."""
    root = tmp_path / "old"
    assert cli("make_shards", "synthetic", "--out", root, "--num-pairs", "24", "--mr-size", "32", "--shard-size", "8",
               "--no-progress").returncode == 0
    index = json.loads((root / "index.json").read_text())
    for s in index["shards"]:
        s.pop("size"), s.pop("sha256")
    return root, index


@pytest.mark.parametrize("listed", [9, 7])
def test_an_index_that_over_or_understates_a_shards_count_is_named_before_step_1(tmp_path, listed):
    root, index = _older_set(tmp_path)
    index["shards"][1]["num_samples"] = listed
    index["num_samples"] = 16 + listed
    (root / "index.json").write_text(json.dumps(index))
    p = train(tmp_path / "run", "--max_steps", "1", root=root)
    assert_user_error(p, str(root / "pairs-000001.tar"), "holds 8 samples", f"lists {listed}", "--replace")
    assert not (tmp_path / "run" / "logs").exists()


def test_a_short_or_cut_shard_of_an_older_set_is_named_before_step_1(tmp_path):
    root, index = _older_set(tmp_path)
    (root / "index.json").write_text(json.dumps(index))
    shard = root / "pairs-000002.tar"
    import io
    import tarfile
    with tarfile.open(shard) as t:  # a whole tar file of the first 5 samples (what an interrupted copy can leave)
        members = [(m, t.extractfile(m).read()) for m in t.getmembers()[:15]]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for m, data in members:
            t.addfile(m, io.BytesIO(data))
    shard.write_bytes(buf.getvalue())
    p = train(tmp_path / "run", "--max_steps", "1", root=root)
    assert_user_error(p, str(shard), "holds 5 samples", "lists 8")
    shard.write_bytes(buf.getvalue()[:3000] + b"\0" * 72)  # cut inside a member, padded to whole records
    p = train(tmp_path / "run1", "--max_steps", "1", root=root)
    assert_user_error(p, str(shard), "not a readable tar file")
    index["num_samples"] = 30
    for s in index["shards"]:
        s.pop("num_samples")
    (root / "index.json").write_text(json.dumps(index))
    shard.write_bytes(b"")
    p = train(tmp_path / "run2", "--max_steps", "1", root=root)
    assert_user_error(p, str(shard), "empty")


def test_an_index_total_that_disagrees_with_its_shards_is_refused(tmp_path):
    root, index = _older_set(tmp_path)
    index["num_samples"] = 30
    (root / "index.json").write_text(json.dumps(index))
    p = train(tmp_path / "run", "--max_steps", "1", root=root)
    assert_user_error(p, str(root / "index.json"), "num_samples = 30", "hold 24")
