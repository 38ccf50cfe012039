"""kit/io.py: band statistics, the units check against the authors' Sentinel-2 normalisation (on real pixels)."""
import json

import numpy as np
import pytest

from crossscale_kit.io import BANDS, BandStatistics, shard_units_warning, units_warning
from tests.data.real_s2 import s2_tile

S2_MEAN = (443.89, 715.68, 813.27, 2603.59)  # the authors' statistics, reflectance x 10000, B2 B3 B4 B8
S2_STD = (283.97, 389.34, 651.25, 811.83)


def _stats(arr, nodata=None):
    st = BandStatistics(BANDS)
    for tile in (arr[:, :150], arr[:, 150:]):
        st.update(tile, nodata)
    return st.summary()


def test_band_statistics_match_numpy_and_skip_nodata():
    rng = np.random.default_rng(0)
    a = rng.normal(1000, 50, size=(4, 20, 20))
    a[:, 0, 0] = -10000
    s = _stats(a, nodata=-10000)
    v = a[0].ravel()[1:]
    assert s["blue"]["count"] == 399 and s["blue"]["mean"] == pytest.approx(v.mean()) and s["blue"]["std"] == pytest.approx(v.std())
    assert s["blue"]["min"] == v.min()


def test_real_sentinel2_tile_fits_the_authors_normalisation():
    """Sanity check of the normalisation on real pixels: S2 DN tile -> no warning; 0-1 or 8-bit -> warning."""
    tile = s2_tile().astype(np.float64)
    stats = _stats(tile)
    for b, m, s in zip(BANDS, S2_MEAN, S2_STD):
        assert abs(stats[b]["mean"] - m) / s < 1.0  # a real scene sits within one std of the authors' mean
    assert units_warning(stats, S2_MEAN, S2_STD) is None
    assert "0-1 reflectance" in units_warning(_stats(tile / 10000), S2_MEAN, S2_STD)
    assert "8-bit" in units_warning(_stats(np.clip(tile / 20, 0, 255)), S2_MEAN, S2_STD)
    # normalised with the authors' statistics the real tile is roughly standard
    z = (tile - np.array(S2_MEAN)[:, None, None]) / np.array(S2_STD)[:, None, None]
    assert np.all(np.abs(z.mean((1, 2))) < 1) and np.all((z.std((1, 2)) > 0.3) & (z.std((1, 2)) < 2))


def test_shard_units_warning_reads_the_index(tmp_path):
    (tmp_path / "index.json").write_text(json.dumps({"band_stats": _stats(s2_tile() / 10000.0)}))
    assert "0-1 reflectance" in shard_units_warning(tmp_path, S2_MEAN, S2_STD)
    (tmp_path / "index.json").write_text(json.dumps({"shards": []}))
    assert shard_units_warning(tmp_path, S2_MEAN, S2_STD) is None


def test_training_preflight_warns_on_8bit_shards(tmp_path, caplog):
    """make_shards on uint8 rasters, then the training preflight: both say the units are off."""
    import logging

    import rasterio
    from rasterio.transform import from_origin
    from torch import nn

    from crossscale_kit.data.loader import PairedTiles
    from crossscale_kit.data.sources import geotiff
    from crossscale_kit.train.preflight import preflight
    from tests.data.make_geotiff_pair import CRS, X0, Y0, truth

    mr, hr = truth(0, n_mr=64)
    for name, arr, gsd in (("mr", mr, 10), ("hr", hr, 5)):
        with rasterio.open(tmp_path / f"{name}.tif", "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1],
                           count=4, dtype="uint8", crs=CRS, transform=from_origin(X0, Y0, gsd, gsd)) as ds:
            ds.write((arr // 16).astype(np.uint8))
            ds.descriptions = ("B2", "B3", "B4", "B8")
    with pytest.warns(UserWarning, match="8-bit"):
        geotiff.run(geotiff.GeoTiffOptions(mr=tmp_path / "mr.tif", hr=tmp_path / "hr.tif", out=tmp_path / "s", tile=32))

    class Echo(nn.Module):  # a framework that accepts any batch: only the data side is under test here
        def forward(self, batch, ctx):
            return None

    with caplog.at_level(logging.WARNING):
        preflight(Echo(), PairedTiles(root=str(tmp_path / "s"), num_workers=0), batch_size=2)
    assert "8-bit" in caplog.text and "normalisation" in caplog.text
