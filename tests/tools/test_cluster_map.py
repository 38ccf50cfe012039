"""tools/cluster_map.py end to end (as a subprocess) and on every input kind."""
import json
import re
import subprocess
import sys

import matplotlib.image as mpimg
import numpy as np
import pytest

from tests.data.fixtures import REPO, load_tool


def test_cluster_map_png_from_geotiff(tiny_encoder, tiny_encoder_b, geotiff_pair, tmp_path):
    out = tmp_path / "fig" / "map.png"
    r = subprocess.run([sys.executable, "tools/cluster_map.py", "--image", str(geotiff_pair["mr"]), "--encoder",
                        str(tiny_encoder), str(tiny_encoder_b), "--k", "3", "--out", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    img = mpimg.imread(out)
    assert img.ndim == 3 and img.shape[1] > img.shape[0] and img[..., :3].std() > 0.05
    info = json.loads(out.with_suffix(".json").read_text())["encoders"]
    assert set(info) == {"ijepa_sa", "ijepa_mr"}
    for v in info.values():
        assert v["grid"] == [6, 6] and v["clusters_present"] > 1
    maps = np.load(out.with_suffix(".npz"))
    assert all(len(np.unique(maps[k])) > 1 for k in maps.files)


def test_cluster_map_from_npy_and_shard(tiny_encoder, geotiff_pair, tmp_path):
    cm = load_tool("cluster_map")
    np.save(tmp_path / "img.npy", geotiff_pair["truth_mr"])
    info = cm.run(["--image", str(tmp_path / "img.npy"), "--encoder", str(tiny_encoder), "--out", str(tmp_path / "a.png"),
                    "--names", "A", "--k", "4"])
    assert info["A"]["clusters_present"] > 1 and (tmp_path / "a.png").stat().st_size > 1000
    # a sample of a pair shard written by the geotiff source
    from crossscale_kit.data.sources import geotiff

    geotiff.run(geotiff.GeoTiffOptions(mr=geotiff_pair["mr"], hr=geotiff_pair["hr_utm32"], out=tmp_path / "shards", tile=32))
    shard = sorted((tmp_path / "shards").glob("*.tar"))[0]
    info = cm.run(["--image", str(shard), "--index", "0", "--encoder", str(tiny_encoder), "--out", str(tmp_path / "b.png")])
    assert next(iter(info.values()))["grid"] == [4, 4]


def test_cluster_map_bad_input_exits_2(tiny_encoder, geotiff_pair, tmp_path, capsys):
    cm = load_tool("cluster_map")
    np.save(tmp_path / "img.npy", geotiff_pair["truth_mr"][:3])
    for image, match in ((tmp_path / "missing.tif", "does not exist"), (tmp_path / "img.npy", r"expected \(4, H, W\)")):
        code = cm.main(["--image", str(image), "--encoder", str(tiny_encoder), "--out", str(tmp_path / "c.png")])
        err = capsys.readouterr().err
        assert code == 2 and re.search(match, err) and "Traceback" not in err, err


def test_pca_is_the_svd_projection_up_to_sign():
    from crossscale_kit.eval.cluster import pca_components

    X = np.random.default_rng(0).normal(size=(50, 12)) @ np.diag(np.linspace(3, 0.1, 12))
    Xc = X - X.mean(0)
    _, _, vt = np.linalg.svd(Xc, full_matrices=False)
    ref = Xc @ vt[:3].T
    got = pca_components(X, 3)
    signs = np.sign((got * ref).sum(0))
    np.testing.assert_allclose(got, ref * signs, rtol=1e-8, atol=1e-8)
    assert pca_components(X[:2], 3).shape == (2, 3)  # fewer samples than components: zero-padded


def test_cluster_map_of_a_real_sentinel2_tile(tiny_encoder, tmp_path):
    """A real 10 m tile (spyndex's S2 B02 B03 B04 B08) through the whole cluster-map path."""
    from tests.data.real_s2 import s2_tile

    np.save(tmp_path / "s2.npy", s2_tile()[:, :96, :96])
    cm = load_tool("cluster_map")
    info = cm.run(["--image", str(tmp_path / "s2.npy"), "--encoder", str(tiny_encoder), "--names", "real",
                    "--out", str(tmp_path / "real.png")])
    assert info["real"]["grid"] == [12, 12] and info["real"]["clusters_present"] == 3
    assert sum(info["real"]["cluster_sizes"]) == 144 and (tmp_path / "real.png").stat().st_size > 1000


def test_cluster_map_warns_when_the_image_range_does_not_fit_the_normalisation(tiny_encoder, tmp_path):
    """A real S2 tile fits the encoder's normalisation (no warning); the same tile as 0-1 reflectance or 8 bit
    does not, and the tool says so (and records it in the JSON)."""
    import warnings

    from tests.data.real_s2 import s2_tile

    tile = s2_tile()[:, :64, :64].astype(np.float32)
    cm = load_tool("cluster_map")
    np.save(tmp_path / "dn.npy", tile)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        info = cm.run(["--image", str(tmp_path / "dn.npy"), "--encoder", str(tiny_encoder), "--names", "a",
                       "--out", str(tmp_path / "dn.png")])
    assert info["a"]["range_warning"] is None
    for name, img, match in (("unit", tile / 10000, "0-1 reflectance"), ("byte", np.clip(tile / 20, 0, 255), "8-bit")):
        np.save(tmp_path / f"{name}.npy", img.astype(np.float32))
        with pytest.warns(UserWarning, match=f"does not fit the encoder's normalisation.*{match}.*follow patch position"):
            info = cm.run(["--image", str(tmp_path / f"{name}.npy"), "--encoder", str(tiny_encoder), "--names", "a",
                           "--out", str(tmp_path / f"{name}.png")])
        assert match in info["a"]["range_warning"]
