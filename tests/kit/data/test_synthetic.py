"""Synthetic paired scenes: realism properties, determinism, the cache."""
from __future__ import annotations

import json
import multiprocessing as mp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from crossscale_kit.data.synthetic import SyntheticScenes, degrade, ensure_synthetic_cache, mtf_sigma, render_scene

CFG = SyntheticScenes(mr_size=64, scale=2, num_pairs=4, seed=3)


@pytest.fixture(scope="module")
def pairs():
    return [CFG.pair(i) for i in range(3)]


def test_shapes_and_dtypes(pairs):
    for mr, hr in pairs:
        assert mr.dtype == np.int16 and hr.dtype == np.int16
        assert mr.shape == (4, 64, 64) and hr.shape == (4, 128, 128)


def test_seed_determinism():
    a_mr, a_hr = CFG.pair(1)
    b_mr, b_hr = SyntheticScenes(mr_size=64, scale=2, num_pairs=4, seed=3).pair(1)
    np.testing.assert_array_equal(a_mr, b_mr)
    np.testing.assert_array_equal(a_hr, b_hr)
    c_mr, _ = CFG.pair(2)
    d_mr, _ = SyntheticScenes(mr_size=64, scale=2, num_pairs=4, seed=4).pair(1)
    assert not np.array_equal(a_mr, c_mr) and not np.array_equal(a_mr, d_mr)


def _highpass_energy(x: np.ndarray) -> float:
    return float(np.mean([np.mean(ndimage.laplace(b.astype(np.float64)) ** 2) for b in x]))


def test_hr_holds_detail_mr_lacks(pairs):
    for mr, hr in pairs:
        up = F.interpolate(torch.from_numpy(mr.astype(np.float32))[None], scale_factor=2, mode="bilinear",
                           align_corners=False)[0].numpy()
        assert _highpass_energy(hr) > 3.0 * _highpass_energy(up)


def test_mr_is_degraded_hr(pairs):
    for mr, hr in pairs:
        block = hr.astype(np.float64).reshape(4, 64, 2, 64, 2).mean(axis=(2, 4))
        m = mr.astype(np.float64)
        for b in range(4):
            r = np.corrcoef(block[b].ravel(), m[b].ravel())[0, 1]
            assert r > 0.9, (b, r)
        # per-band calibration differs, but only by a few percent
        ratio = m.reshape(4, -1).mean(1) / block.reshape(4, -1).mean(1)
        assert np.all(np.abs(ratio - 1) < 0.15), ratio


def test_reflectance_plausible(pairs):
    hr = np.concatenate([p[1].reshape(4, -1) for p in pairs], axis=1).astype(np.float64)
    assert hr.min() >= 0 and hr.max() <= 16000
    blue, green, red, nir = hr.mean(1)
    assert 150 < blue < 2000 and 250 < green < 2000 and 150 < red < 2500 and 1500 < nir < 5000
    assert nir > red
    ndvi = (hr[3] - hr[2]) / (hr[3] + hr[2] + 1e-6)
    assert (ndvi > 0.5).mean() > 0.15  # vegetation
    assert (ndvi < 0.3).mean() > 0.02  # soil, urban, roads, water


def test_water_dark_in_nir():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scene = render_scene(rng, 96)
        ndwi = (scene[1] - scene[3]) / (scene[1] + scene[3] + 1e-6)
        water = ndwi > 0.3
        if water.sum() > 50:
            assert scene[3][water].mean() < 600
            return
    pytest.fail("no water body in 20 scenes")


def test_mtf_at_nyquist():
    for s, mtf in ((2, 0.3), (3, 0.25), (4, 0.35)):
        sigma = mtf_sigma(s, mtf)
        f = 1 / (2 * s)
        system = np.exp(-2 * np.pi**2 * sigma**2 * f**2) * np.sinc(s * f)
        assert abs(system - mtf) < 1e-6


def test_degrade_of_constant_is_gain_offset():
    scene = np.full((4, 32, 32), 1000.0, np.float32)
    out = degrade(scene, 2, gain=[1, 2, 1, 1], offset=[0, 0, 5, 0])
    np.testing.assert_allclose(out[:, 4, 4], [1000, 2000, 1005, 1000], rtol=1e-5)


def test_cache_written_once_and_reused(tmp_path):
    cfg = SyntheticScenes(mr_size=8, num_pairs=6, shard_size=4)
    root = ensure_synthetic_cache(cfg, tmp_path)
    index = json.loads((root / "index.json").read_text())
    assert index["num_samples"] == 6 and len(index["shards"]) == 2
    assert root.name == f"synthetic-{cfg.fingerprint()}"
    mtime = (root / "index.json").stat().st_mtime_ns
    assert ensure_synthetic_cache(cfg, tmp_path) == root
    assert (root / "index.json").stat().st_mtime_ns == mtime
    assert SyntheticScenes(mr_size=8, num_pairs=6, shard_size=4, seed=1).fingerprint() != cfg.fingerprint()


def _race(args):
    cache, n = args
    return str(ensure_synthetic_cache(SyntheticScenes(mr_size=8, num_pairs=n, shard_size=4), cache))


def test_cache_race(tmp_path):
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        roots = pool.map(_race, [(str(tmp_path), 12)] * 2)
    assert roots[0] == roots[1]
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert leftovers == [roots[0].rsplit("/", 1)[-1]], leftovers
    assert json.loads((tmp_path / leftovers[0] / "index.json").read_text())["num_samples"] == 12


def test_config_validation():
    with pytest.raises(ValueError, match="mtf"):
        SyntheticScenes(mtf=1.5)
    with pytest.raises(ValueError, match="mr_size"):
        SyntheticScenes(mr_size=4)
