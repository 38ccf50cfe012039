"""The forks' crop (issue 22): box drawn on HR and truncated to MR pixels; nearest MR resize."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crossscale_kit.data.transforms import PairedRandomResizedCrop


def _pair(seed=0, h=24, s=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, h, h, generator=g), torch.randn(4, s * h, s * h, generator=g)


def test_nearest_mr_resize_is_interpolate_nearest_of_the_crop():
    crop = PairedRandomResizedCrop(size=16, scale=(0.2, 1.0), mr_resize="nearest")
    for seed in range(20):
        mr, hr = _pair(seed)
        params = crop.draw(24, 24, 2, np.random.default_rng(seed))
        top, left, h, w = (int(v) for v in params["box"])
        m, hh = crop.apply(mr[None], hr[None], {k: torch.from_numpy(v)[None] for k, v in params.items()}, 2)
        ref = F.interpolate(mr[None, :, top:top + h, left:left + w], size=(16, 16), mode="nearest")
        torch.testing.assert_close(m, ref, atol=0, rtol=0)  # the fork: torchvision's nearest resize
        # HR stays bilinear (antialiased as the kit's default)
        kit = PairedRandomResizedCrop(size=16, scale=(0.2, 1.0))
        _, hk = kit.apply(mr[None], hr[None], {k: torch.from_numpy(v)[None] for k, v in params.items()}, 2)
        torch.testing.assert_close(hh, hk, atol=0, rtol=0)


def _released_hr_box(crop, height, width, s, rng):
    """The forks as they read: torchvision's RandomResizedCrop.get_params on the HR tile, then every
    coordinate integer-divided by s for the MR crop."""
    top, left, h, w = crop.get_params(s * height, s * width, rng)
    return (top, left, h, w), (top // s, left // s, h // s, w // s)


def test_box_on_hr_is_drawn_on_hr_and_truncated_to_mr_pixels():
    crop = PairedRandomResizedCrop(size=16, box_on="hr")
    offsets = set()
    for seed in range(40):
        params = crop.draw(24, 24, 2, np.random.default_rng(seed))
        hr_ref, mr_ref = _released_hr_box(crop, 24, 24, 2, np.random.default_rng(seed))
        assert tuple(params["hr_box"]) == hr_ref and tuple(params["box"]) == mr_ref
        offsets.add(tuple(int(a) - 2 * int(b) for a, b in zip(params["hr_box"], params["box"])))
        mr, hr = _pair(seed)
        t, l, h, w = hr_ref
        mt, ml, mh, mw = mr_ref
        p = {k: torch.from_numpy(v)[None] for k, v in params.items()}
        m, hh = crop.apply(mr[None], hr[None], p, 2)
        ref_h = F.interpolate(hr[None, :, t:t + h, l:l + w], size=(32, 32), mode="bilinear", align_corners=False,
                              antialias=h > 32 or w > 32)
        ref_m = F.interpolate(mr[None, :, mt:mt + mh, ml:ml + mw], size=(16, 16), mode="bilinear",
                              align_corners=False, antialias=mh > 16 or mw > 16)
        if h <= 32 and w <= 32:  # upsampling: exact bilinear
            torch.testing.assert_close(hh, ref_h, atol=1e-5, rtol=1e-5)
        if mh <= 16 and mw <= 16:
            torch.testing.assert_close(m, ref_m, atol=1e-5, rtol=1e-5)
    assert offsets - {(0, 0, 0, 0)}  # MR and HR are off by up to one MR pixel somewhere
    assert all(0 <= v <= 1 for o in offsets for v in o)


def test_defaults_unchanged_and_options_validated():
    crop = PairedRandomResizedCrop()
    assert crop.mr_resize == "bilinear" and crop.box_on == "mr"
    assert "hr_box" not in crop.draw(24, 24, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="mr_resize"):
        PairedRandomResizedCrop(mr_resize="bicubic")
    with pytest.raises(ValueError, match="box_on"):
        PairedRandomResizedCrop(box_on="ground")
