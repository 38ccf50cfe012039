import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from crossscale_kit.samplers import RandomSplit, mr_to_hr_indices


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), s=st.integers(1, 4), b=st.integers(1, 3))
def test_correspondence_is_a_bijection_onto_the_hr_grid(h, w, s, b):
    idx = torch.stack([torch.randperm(h * w) for _ in range(b)])  # every MR patch, any order
    hr = mr_to_hr_indices(idx, (h, w), s)
    assert hr.shape == (b, h * w * s * s)
    for row in hr:
        assert torch.equal(row.sort().values, torch.arange(h * w * s * s))


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 8), w=st.integers(1, 8), s=st.integers(1, 4), p=st.sampled_from([2, 8, 14, 16]),
    data=st.data(),
)
def test_each_mr_patch_block_covers_its_ground_footprint(h, w, s, p, data):
    """MR patch (u, v) at GSD s*g covers the same ground as its s*s HR patches at GSD g."""
    k = data.draw(st.integers(1, h * w))
    idx = torch.randperm(h * w)[:k][None]
    hr = mr_to_hr_indices(idx, (h, w), s).reshape(1, k, s, s)
    g_hr = 1.0
    g_mr = s * g_hr
    for j, mr_i in enumerate(idx[0].tolist()):
        u, v = divmod(mr_i, w)
        mr_box = (u * p * g_mr, v * p * g_mr, (u + 1) * p * g_mr, (v + 1) * p * g_mr)
        rows, cols = torch.div(hr[0, j], s * w, rounding_mode="floor"), hr[0, j] % (s * w)
        # (i, j) row-major order inside the block
        assert torch.equal(rows, rows[:, :1].expand(-1, s)) and torch.equal(cols, cols[:1, :].expand(s, -1))
        assert torch.equal(rows[:, 0], torch.arange(s) + s * u)
        assert torch.equal(cols[0], torch.arange(s) + s * v)
        top, left = rows.min().item() * p * g_hr, cols.min().item() * p * g_hr
        bottom, right = (rows.max().item() + 1) * p * g_hr, (cols.max().item() + 1) * p * g_hr
        assert (top, left, bottom, right) == mr_box


def test_correspondence_rejects_out_of_grid_indices():
    import pytest

    with pytest.raises(IndexError):
        mr_to_hr_indices(torch.tensor([[4]]), (2, 2), 2)
    with pytest.raises(ValueError):
        mr_to_hr_indices(torch.tensor([[0]]), (2, 2), 0)


@settings(max_examples=40, deadline=None)
@given(gh=st.integers(2, 14), gw=st.integers(2, 14), b=st.integers(1, 4), seed=st.integers(0, 10**6), data=st.data())
def test_random_split_is_disjoint_complete_and_seeded(gh, gw, b, seed, data):
    n = gh * gw
    k = data.draw(st.integers(1, n - 1))
    sampler = RandomSplit(k)
    out = sampler.sample(b, (gh, gw), torch.Generator().manual_seed(seed))
    vis, tgt = out.visible, out.targets
    assert vis.shape == (b, k) and tgt.shape == (b, n - k)
    for i in range(b):
        assert torch.equal(torch.cat([vis[i], tgt[i]]).sort().values, torch.arange(n))
    again = sampler.sample(b, (gh, gw), torch.Generator().manual_seed(seed))
    assert torch.equal(again.visible, vis)


def test_random_split_is_uniform():
    counts = torch.zeros(16)
    sampler = RandomSplit(4)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        counts += torch.bincount(sampler.sample(8, (4, 4), g).visible.reshape(-1), minlength=16)
    expected = 200 * 8 * 4 / 16
    assert ((counts - expected).abs() / expected).max() < 0.15


def test_random_split_rejects_too_many_visible():
    import pytest

    with pytest.raises(ValueError, match="do not fit"):
        RandomSplit(16).sample(1, (4, 4))
