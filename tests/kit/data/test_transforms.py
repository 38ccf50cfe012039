"""Paired crop: ground correspondence, flips, box bounds; per-sensor normalisation; false HR."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from crossscale_kit.data.transforms import (
    S2_MEAN,
    VENUS_STD,
    PairedRandomResizedCrop,
    SensorNormalize,
    false_hr_from_mr,
)
import torch.nn.functional as F


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


def test_upsampling_equals_interpolate_of_the_crop():
    """The device-side resampling is F.interpolate (bilinear, align_corners=False) of the cropped tile."""
    mr = smooth_mr(4, size=40)
    hr = np.repeat(np.repeat(mr, 2, axis=1), 2, axis=2) + 7.0
    crop = PairedRandomResizedCrop(size=48)
    for seed in range(4):
        top, left, ch, cw = crop.get_params(40, 40, np.random.default_rng(seed))
        m, h = crop(mr, hr, np.random.default_rng(seed))
        ref_m = F.interpolate(torch.from_numpy(mr[None, :, top:top + ch, left:left + cw]), size=(48, 48),
                              mode="bilinear", align_corners=False)[0]
        ref_h = F.interpolate(torch.from_numpy(hr[None, :, 2 * top:2 * (top + ch), 2 * left:2 * (left + cw)]),
                              size=(96, 96), mode="bilinear", align_corners=False)[0]
        torch.testing.assert_close(m, ref_m, atol=0.05, rtol=1e-4)
        torch.testing.assert_close(h, ref_h, atol=0.05, rtol=1e-4)


def test_shrinking_is_antialiased():
    """A 1-px checkerboard shrunk 4x averages to its mean instead of aliasing into stripes."""
    board = (np.indices((64, 64)).sum(0) % 2 * 2000.0).astype(np.float32)[None].repeat(4, 0)
    hr = np.repeat(np.repeat(board, 2, axis=1), 2, axis=2)
    m, h = PairedRandomResizedCrop(size=16, scale=(1, 1), ratio=(1, 1))(board, hr, np.random.default_rng(0))
    assert (m - 1000).abs().max() < 1.0 and (h - 1000).abs().max() < 1.0


def test_batched_apply_equals_per_pair():
    rng = np.random.default_rng(0)
    mr = rng.integers(0, 4000, (3, 4, 24, 24)).astype(np.int16)
    hr = rng.integers(0, 4000, (3, 4, 48, 48)).astype(np.int16)
    crop = PairedRandomResizedCrop(size=40, hflip=0.5, vflip=0.5, patch_jitter=(10, 8))
    params = [crop.draw(24, 24, 2, np.random.default_rng(i)) for i in range(3)]
    stacked = {k: torch.from_numpy(np.stack([p[k] for p in params])) for k in params[0]}
    m, h = crop.apply(torch.from_numpy(mr), torch.from_numpy(hr), stacked, 2, SensorNormalize())
    assert m.shape == (3, 4, 32, 32) and h.shape == (3, 4, 64, 64) and m.dtype == torch.float32
    for i in range(3):
        mi, hi = crop(mr[i], hr[i], np.random.default_rng(i), SensorNormalize())
        torch.testing.assert_close(m[i], mi)
        torch.testing.assert_close(h[i], hi)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(8, 64), s=st.integers(1, 4), seed=st.integers(0, 2**31), extra=st.integers(0, 30))
def test_hr_box_is_s_times_the_mr_box_on_the_ground(h, s, seed, extra):
    """Footprint contract: on a ground ramp (value = ground x, y in metres), the HR output's corners sit
    where the MR output's do; both crops start and end at the same ground coordinates."""
    gsd = 10.0
    c_mr = (np.arange(h) + 0.5) * gsd
    c_hr = (np.arange(h * s) + 0.5) * gsd / s
    mr = np.stack([np.broadcast_to(c_mr[None], (h, h)), np.broadcast_to(c_mr[:, None], (h, h))]).astype(np.float32)
    hr = np.stack([np.broadcast_to(c_hr[None], (h * s, h * s)),
                   np.broadcast_to(c_hr[:, None], (h * s, h * s))]).astype(np.float32)
    crop = PairedRandomResizedCrop(size=h + extra)  # no shrinking: samples are plain bilinear, exact on a ramp
    top, left, ch, cw = (int(v) for v in crop.draw(h, h, s, np.random.default_rng(seed))["box"])
    m, hh = crop(mr, hr, np.random.default_rng(seed))
    # ground extent each output covers: its outermost sample positions map back to the same ground
    for img, gs in ((m, gsd), (hh, gsd / s)):
        n = img.shape[-1]
        step_x, step_y = cw * gsd / n, ch * gsd / n  # ground metres per output pixel (both sensors)
        x0 = left * gsd + 0.5 * step_x
        y0 = top * gsd + 0.5 * step_y
        # interior samples of a linear ramp are exact (edges are clamped to the crop's pixel centres)
        lo_x, hi_x = left * gsd + gs / 2, (left + cw) * gsd - gs / 2
        want_x = np.clip(x0 + np.arange(n) * step_x, lo_x, hi_x)
        lo_y, hi_y = top * gsd + gs / 2, (top + ch) * gsd - gs / 2
        want_y = np.clip(y0 + np.arange(n) * step_y, lo_y, hi_y)
        np.testing.assert_allclose(img[0, 0].numpy(), want_x, atol=1e-3 * gsd * h)
        np.testing.assert_allclose(img[1, :, 0].numpy(), want_y, atol=1e-3 * gsd * h)


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

def jitter_reference(x: torch.Tensor, cell: int, patch: int, off: np.ndarray) -> torch.Tensor:
    """Patch ``(u, v)`` of the result is ``x[:, u*cell+dy : +patch, v*cell+dx : +patch]`` (loops, obviously right)."""
    g = x.shape[-1] // cell
    out = torch.empty(x.shape[0], g * patch, g * patch)
    for u in range(g):
        for v in range(g):
            dy, dx = int(off[0, u, v]), int(off[1, u, v])
            out[:, u * patch:(u + 1) * patch, v * patch:(v + 1) * patch] = \
                x[:, u * cell + dy:u * cell + dy + patch, v * cell + dx:v * cell + dx + patch]
    return out


def test_jitter_offsets_are_0_to_3_like_the_released_code():
    """patch_gap 4 (16 px patches in 20 px cells): offsets {0, 1, 2, 3}, all of them drawn, never 4."""
    crop = PairedRandomResizedCrop(size=280, patch_jitter=(20, 16))
    p = crop.draw(128, 128, 2, np.random.default_rng(0))
    assert p["mr_offsets"].shape == (2, 14, 14) and p["hr_offsets"].shape == (2, 28, 28)
    for name in ("mr_offsets", "hr_offsets"):
        assert set(np.unique(p[name]).tolist()) == {0, 1, 2, 3}


def test_independent_hr_jitter_is_the_default_and_draws_its_own_offsets():
    """The authors' fork: HR patches are cut at their own offsets in their own 20 px HR cells."""
    rng = np.random.default_rng(3)
    mr = rng.integers(0, 3000, (4, 40, 40)).astype(np.float32)
    hr = rng.integers(0, 3000, (4, 80, 80)).astype(np.float32)
    crop = PairedRandomResizedCrop(size=40, scale=(1, 1), ratio=(1, 1), patch_jitter=(10, 8))
    assert crop.hr_jitter == "independent"
    p = crop.draw(40, 40, 2, np.random.default_rng(0))
    assert p["mr_offsets"].shape == (2, 4, 4) and p["hr_offsets"].shape == (2, 8, 8)
    assert not np.array_equal(np.kron(p["mr_offsets"], np.ones((1, 2, 2))), p["hr_offsets"])
    a, b = crop(mr, hr, np.random.default_rng(0))
    # no resizing (crop = tile = size): outputs are cuts of the tiles at the drawn offsets (up to the float32
    # rounding of grid_sample's normalised coordinates)
    torch.testing.assert_close(a, jitter_reference(torch.from_numpy(mr), 10, 8, p["mr_offsets"]), atol=0.02, rtol=0)
    torch.testing.assert_close(b, jitter_reference(torch.from_numpy(hr), 10, 8, p["hr_offsets"]), atol=0.02, rtol=0)
    assert crop.output_sizes(2) == (32, 64)


def test_paired_jitter_keeps_every_hr_block_under_its_mr_patch():
    """hr_jitter='aligned': with HR = MR upsampled x2 (nearest), the HR block under each MR patch is that patch."""
    from crossscale_kit.data.transforms import PairedRandomResizedCrop

    rng = np.random.default_rng(3)
    mr = rng.integers(0, 3000, (4, 40, 40)).astype(np.float32)
    hr = np.kron(mr, np.ones((1, 2, 2), dtype=np.float32))
    crop = PairedRandomResizedCrop(size=40, scale=(1, 1), ratio=(1, 1), patch_jitter=(10, 8), hr_jitter="aligned")
    assert "hr_offsets" not in crop.draw(40, 40, 2, np.random.default_rng(0))
    a, b = crop(mr, hr, np.random.default_rng(0))
    assert crop.output_sizes(2) == (32, 64) and a.shape == (4, 32, 32) and b.shape == (4, 64, 64)
    # no resizing happened (crop = tile, size = tile side), so HR pixels are copies of MR pixels
    torch.testing.assert_close(b[:, ::2, ::2], a, atol=0.02, rtol=0)
    torch.testing.assert_close(b[:, 1::2, 1::2], a, atol=0.02, rtol=0)
    # and the jitter really moved patches: the output is not the plain top-left 32 x 32 of the tile
    assert not torch.equal(a, torch.from_numpy(mr[:, :32, :32]))


def test_patch_jitter_arguments_are_checked():
    from crossscale_kit.data.transforms import PairedRandomResizedCrop

    with pytest.raises(ValueError, match="patch <= cell"):
        PairedRandomResizedCrop(size=280, patch_jitter=(16, 20))
    with pytest.raises(ValueError, match="divisible"):
        PairedRandomResizedCrop(size=90, patch_jitter=(20, 16))
    with pytest.raises(ValueError, match="hr_jitter"):
        PairedRandomResizedCrop(size=280, patch_jitter=(20, 16), hr_jitter="lockstep")


@pytest.mark.parametrize("false_hr", [None, "bilinear"])
@pytest.mark.parametrize("jitter", [None, "independent", "aligned"])
def test_views_skip_a_sensor_and_leave_the_other_bit_for_bit(jitter, false_hr):
    """An MR-only run finishes only MR (``views``): the same pixels as when both are finished, HR not made."""
    kw = dict(patch_jitter=(5, 4), hr_jitter=jitter) if jitter else {}
    crop = PairedRandomResizedCrop(size=40, hflip=0.5, vflip=0.5, **kw)
    rng = np.random.default_rng(7)
    mr = torch.from_numpy(rng.integers(-100, 3000, (6, 4, 48, 48)).astype(np.int16))
    hr = None if false_hr else torch.from_numpy(rng.integers(-100, 3000, (6, 4, 96, 96)).astype(np.int16))
    draws = [crop.draw(48, 48, 2, rng) for _ in range(6)]
    params = {k: torch.from_numpy(np.stack([d[k] for d in draws])) for k in draws[0]}
    norm = SensorNormalize()
    m, h = crop.apply(mr, hr, params, 2, norm, false_hr)
    m_only, none_hr = crop.apply(mr, hr, params, 2, norm, false_hr, views=("mr",))
    none_mr, h_only = crop.apply(mr, hr, params, 2, norm, false_hr, views=("hr",))
    assert none_hr is None and none_mr is None
    assert torch.equal(m_only, m) and torch.equal(h_only, h)
    assert (m.shape[-1], h.shape[-1]) == crop.output_sizes(2) == ((32, 64) if jitter else (40, 80))
    with pytest.raises(ValueError, match="views must name"):
        crop.apply(mr, hr, params, 2, views=("rgb",))


def test_jitter_with_flips_cuts_the_flipped_resized_image():
    """Flips and patch jitter together: output pixel i reads the resized crop at ``size - 1 - (i's jittered
    position)``, so without resizing the result is the tile read at mirrored, jittered coordinates."""
    rng = np.random.default_rng(5)
    mr = rng.integers(0, 3000, (2, 40, 40)).astype(np.float32)
    crop = PairedRandomResizedCrop(size=40, scale=(1, 1), ratio=(1, 1), patch_jitter=(10, 8), hflip=1.0, vflip=1.0)
    p = crop.draw(40, 40, 2, np.random.default_rng(0))
    a, _ = crop(mr, np.kron(mr, np.ones((1, 2, 2), dtype=np.float32)), np.random.default_rng(0))
    off = p["mr_offsets"]
    want = np.empty((2, 32, 32), dtype=np.float32)
    for i in range(32):
        for j in range(32):
            u, v = i // 8, j // 8
            want[:, i, j] = mr[:, 39 - (u * 10 + i % 8 + off[0, u, v]), 39 - (v * 10 + j % 8 + off[1, u, v])]
    torch.testing.assert_close(a, torch.from_numpy(want), atol=0.02, rtol=0)
