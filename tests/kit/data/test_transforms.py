"""Paired crop: ground correspondence, flips, box bounds; per-sensor normalisation; false HR."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from kit.data.transforms import (
    S2_MEAN,
    VENUS_STD,
    PairedRandomResizedCrop,
    SensorNormalize,
    false_hr_from_mr,
    resize,
)


def block_mean(x: torch.Tensor, s: int) -> torch.Tensor:
    c, h, w = x.shape
    return x.reshape(c, h // s, s, w // s, s).mean(dim=(2, 4))


def smooth_mr(seed: int, size: int = 32, sigma: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.standard_normal((4, size, size)), sigma=(0, sigma, sigma), mode="wrap")
    return (1000 + 4000 * x / x.std()).astype(np.float32)


@pytest.mark.parametrize("s", [2, 3])
@pytest.mark.parametrize("seed", range(6))
def test_crop_keeps_ground_correspondence(s, seed):
    """HR = nearest-upsampled MR. The crops cover the same ground iff HR output, block-averaged back to the
    MR grid, matches the MR output up to interpolation error; a one-MR-pixel misregistration of the HR box
    must be clearly worse than that tolerance (the test can tell a right box from a wrong one)."""
    mr = smooth_mr(seed)
    hr = np.repeat(np.repeat(mr, s, axis=1), s, axis=2)
    crop = PairedRandomResizedCrop(size=24)
    m, h = crop(mr, hr, np.random.default_rng(seed))
    assert m.shape == (4, 24, 24) and h.shape == (4, 24 * s, 24 * s)
    err = (block_mean(h, s) - m).abs().mean() / m.std()

    top, left, ch, cw = crop.get_params(32, 32, np.random.default_rng(seed))
    shifted = np.roll(hr, shift=(s, s), axis=(1, 2))  # HR box off by one MR pixel in both axes
    _, h_bad = crop(mr, shifted, np.random.default_rng(seed))
    err_bad = (block_mean(h_bad, s) - m).abs().mean() / m.std()
    assert err < 0.06, err
    assert err < 0.4 * err_bad, (err, err_bad)


def test_crop_exact_on_linear_ground():
    """A linear field sampled at each grid's pixel centres: block mean of HR = MR exactly, and bilinear
    resizing samples the same field at the output centres, so interior outputs agree to float precision."""
    s, n = 2, 32
    f = lambda y, x: 3.0 * x + 5.0 * y + 100.0  # noqa: E731 - ground coordinates in MR pixels
    cm = np.arange(n) + 0.5
    ch = (np.arange(n * s) + 0.5) / s
    mr = np.broadcast_to(f(cm[:, None], cm[None]), (4, n, n)).astype(np.float32)
    hr = np.broadcast_to(f(ch[:, None], ch[None]), (4, n * s, n * s)).astype(np.float32)
    crop = PairedRandomResizedCrop(size=40, scale=(0.3, 0.6))
    for seed in range(5):
        m, h = crop(mr, hr, np.random.default_rng(seed))
        diff = (block_mean(h, s) - m)[:, 2:-2, 2:-2].abs().max()
        assert diff < 1e-2, diff


def test_whole_tile_identity():
    rng = np.random.default_rng(0)
    mr = rng.integers(0, 5000, (4, 16, 16)).astype(np.int16)
    hr = rng.integers(0, 5000, (4, 32, 32)).astype(np.int16)
    crop = PairedRandomResizedCrop(size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    m, h = crop(mr, hr, np.random.default_rng(1))
    assert torch.equal(m, torch.from_numpy(mr.astype(np.float32)))
    assert torch.equal(h, torch.from_numpy(hr.astype(np.float32)))


@pytest.mark.parametrize("flips", [(1.0, 0.0), (0.0, 1.0), (1.0, 1.0)])
def test_flips_identical_on_both(flips):
    mr = smooth_mr(1)
    hr = np.repeat(np.repeat(mr, 2, axis=1), 2, axis=2) + np.random.default_rng(2).normal(0, 50, (4, 64, 64)).astype(
        np.float32)
    plain = PairedRandomResizedCrop(size=20)
    flipped = PairedRandomResizedCrop(size=20, hflip=flips[0], vflip=flips[1])
    m0, h0 = plain(mr, hr, np.random.default_rng(5))
    m1, h1 = flipped(mr, hr, np.random.default_rng(5))
    dims = [d for d, p in zip((-1, -2), flips) if p]
    torch.testing.assert_close(m1, m0.flip(dims), atol=0.02, rtol=1e-5)
    torch.testing.assert_close(h1, h0.flip(dims), atol=0.02, rtol=1e-5)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(8, 200), w=st.integers(8, 200), seed=st.integers(0, 2**31),
       lo=st.floats(0.05, 1.0), ratio_hi=st.floats(1.0, 3.0))
def test_box_within_tile(h, w, seed, lo, ratio_hi):
    crop = PairedRandomResizedCrop(size=8, scale=(lo, 1.0), ratio=(1 / ratio_hi, ratio_hi))
    top, left, ch, cw = crop.get_params(h, w, np.random.default_rng(seed))
    assert 0 <= top and 0 <= left and 1 <= ch and 1 <= cw
    assert top + ch <= h and left + cw <= w


def test_box_statistics():
    crop = PairedRandomResizedCrop()
    rng = np.random.default_rng(0)
    fracs = []
    for _ in range(500):
        _, _, ch, cw = crop.get_params(128, 128, rng)
        fracs.append(ch * cw / 128**2)
        assert 3 / 4 - 0.05 <= cw / ch <= 4 / 3 + 0.05 or ch * cw == 128 * 128
    assert 0.17 < min(fracs) < 0.3 and max(fracs) > 0.9


def test_hr_size_override_and_shrink():
    mr = smooth_mr(0)
    hr = np.repeat(np.repeat(mr, 2, axis=1), 2, axis=2)
    m, h = PairedRandomResizedCrop(size=8, hr_size=12)(mr, hr, np.random.default_rng(0))
    assert m.shape == (4, 8, 8) and h.shape == (4, 12, 12)


def test_resize_out_matches_interpolate():
    x = torch.randn(4, 30, 17)
    for size in ((50, 40), (10, 9), (30, 17)):
        out = torch.empty(4, *size)
        torch.testing.assert_close(resize(x, size, out=out), resize(x, size))


def test_sensor_normalize_defaults():
    norm = SensorNormalize()
    mr = torch.tensor(S2_MEAN).view(4, 1, 1).repeat(1, 2, 2)
    hr = torch.tensor(VENUS_STD).view(4, 1, 1).repeat(1, 4, 4) + torch.tensor([444.30, 716.14, 813.64, 2605.50]).view(
        4, 1, 1)
    m, h = norm(mr.clone(), hr.clone())
    torch.testing.assert_close(m, torch.zeros_like(m), atol=1e-5, rtol=0)
    torch.testing.assert_close(h, torch.ones_like(h), atol=1e-5, rtol=0)


def test_normalize_commutes_with_crop():
    mr = smooth_mr(3)
    hr = np.repeat(np.repeat(mr, 2, axis=1), 2, axis=2)
    crop, norm = PairedRandomResizedCrop(size=24), SensorNormalize()
    a = crop(mr, hr, np.random.default_rng(0), norm)
    b = norm(*crop(mr, hr, np.random.default_rng(0)))
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-5)


def test_normalize_does_not_touch_inputs():
    mr = smooth_mr(0)
    hr = np.repeat(np.repeat(mr, 2, axis=1), 2, axis=2)
    keep = mr.copy()
    PairedRandomResizedCrop(size=32, scale=(1, 1), ratio=(1, 1))(mr, hr, np.random.default_rng(0), SensorNormalize())
    np.testing.assert_array_equal(mr, keep)


def test_false_hr():
    mr = smooth_mr(0, size=16)
    up = false_hr_from_mr(mr, 2, "bicubic")
    assert up.shape == (4, 32, 32)
    assert (block_mean(up, 2) - torch.from_numpy(mr)).abs().mean() < 0.05 * float(mr.std())
    with pytest.raises(ValueError, match="false_hr"):
        false_hr_from_mr(mr, 2, "nearest")


@pytest.mark.parametrize("kwargs, match", [
    ({"size": 0}, "size"), ({"scale": (0.5, 0.2)}, "scale"), ({"ratio": (0, 1)}, "ratio"),
    ({"hflip": 2.0}, "hflip"), ({"hr_size": -1}, "hr_size"),
])
def test_crop_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PairedRandomResizedCrop(**kwargs)


def test_normalize_validation():
    with pytest.raises(ValueError, match="length"):
        SensorNormalize(mr_mean=(1.0, 2.0))
    with pytest.raises(ValueError, match="bands"):
        SensorNormalize()(torch.zeros(3, 2, 2), torch.zeros(3, 4, 4))


# -- LatentMIM patch jitter ----------------------------------------------------------------------------

def test_jitter_patches_cuts_each_patch_at_its_cell_offset():
    from kit.data.transforms import jitter_patches

    x = torch.arange(2 * 40 * 40, dtype=torch.float32).reshape(2, 40, 40)
    off = np.random.default_rng(0).integers(0, 3, size=(2, 4, 4))
    y = jitter_patches(x, 10, 8, off)
    assert y.shape == (2, 32, 32)
    for u in range(4):
        for v in range(4):
            dy, dx = off[0, u, v], off[1, u, v]
            assert torch.equal(y[:, u * 8:(u + 1) * 8, v * 8:(v + 1) * 8],
                               x[:, u * 10 + dy:u * 10 + dy + 8, v * 10 + dx:v * 10 + dx + 8])


def test_paired_jitter_keeps_every_hr_block_under_its_mr_patch():
    """With HR = MR upsampled x2 (nearest), the HR block under each jittered MR patch is that patch."""
    from kit.data.transforms import PairedRandomResizedCrop

    rng = np.random.default_rng(3)
    mr = rng.integers(0, 3000, (4, 40, 40)).astype(np.float32)
    hr = np.kron(mr, np.ones((1, 2, 2), dtype=np.float32))
    crop = PairedRandomResizedCrop(size=40, scale=(1, 1), ratio=(1, 1), patch_jitter=(10, 8))
    a, b = crop(mr, hr, np.random.default_rng(0))
    assert crop.output_sizes(2) == (32, 64) and a.shape == (4, 32, 32) and b.shape == (4, 64, 64)
    # no resizing happened (crop = tile, size = tile side), so HR pixels are exact copies of MR pixels
    assert torch.equal(b[:, ::2, ::2], a) and torch.equal(b[:, 1::2, 1::2], a)
    # and the jitter really moved patches: the output is not the plain top-left 32 x 32 of the tile
    assert not torch.equal(a, torch.from_numpy(mr[:, :32, :32]))


def test_patch_jitter_arguments_are_checked():
    from kit.data.transforms import PairedRandomResizedCrop

    with pytest.raises(ValueError, match="patch <= cell"):
        PairedRandomResizedCrop(size=280, patch_jitter=(16, 20))
    with pytest.raises(ValueError, match="divisible"):
        PairedRandomResizedCrop(size=90, patch_jitter=(20, 16))
