"""The Table IV block sampler draws as the authors' RectangularPatchMaskCollator (docs/FIDELITY.md)."""
import numpy as np
import pytest
import torch

from crossscale_kit.samplers import BlockSampler


def expected_moments(g=14, lo=0.4, hi=0.7, aspects=20001):
    """E[h w], E[w], E[h] of the authors' draw, by enumerating the integer areas and integrating the aspect."""
    smin, smax = int(lo * g), int(hi * g)  # 5, 9 on a 14 grid
    area = np.arange(smin**2, smax**2 + 1, dtype=float)[:, None]  # uniform integer area
    a = np.linspace(0.5, 2.0, aspects)[None, :]  # width / height ~ U(0.5, 2)
    w = np.floor(np.clip(np.sqrt(area * a), smin, smax))
    h = np.floor(np.clip(np.sqrt(area / a), smin, smax))
    return (h * w).mean(), w.mean(), h.mean()


def draw_blocks(sampler, n, grid=(14, 14), seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        v = sampler.sample(1, grid, g).visible[0]
        r, c = v // grid[1], v % grid[1]
        out.append((len(v), int(r.max() - r.min()) + 1, int(c.max() - c.min()) + 1))
    return np.array(out)


def test_authors_draw_sides_5_to_9_and_mean_area():
    blocks = draw_blocks(BlockSampler(), 2000)
    n, h, w = blocks.T
    assert np.array_equal(n, h * w)  # full rectangles at batch 1
    assert h.min() == 5 and h.max() == 9 and w.min() == 5 and w.max() == 9
    mean_area, mean_w, mean_h = expected_moments()
    assert mean_area == pytest.approx(45.7, rel=0.01)  # the reference figure
    assert n.mean() == pytest.approx(45.7, rel=0.05)
    assert n.mean() == pytest.approx(mean_area, abs=4 * n.std() / np.sqrt(len(n)))
    # aspect is width / height: blocks are wider than tall on average
    assert w.mean() == pytest.approx(mean_w, abs=0.1) and h.mean() == pytest.approx(mean_h, abs=0.1)
    assert mean_w > mean_h


def test_truncation_keeps_the_first_indices_to_the_batch_minimum():
    sampler = BlockSampler()
    g = torch.Generator().manual_seed(1)
    kept = []
    for _ in range(10):
        vis = sampler.sample(128, (14, 14), g).visible
        assert bool((vis[:, 1:] > vis[:, :-1]).all())
        kept.append(vis.shape[1])
        # each row is the row-major prefix of its rectangle: the first index is the top-left corner
        r0, c0 = vis[:, 0] // 14, vis[:, 0] % 14
        assert bool(((vis // 14 >= r0[:, None]) & (vis % 14 >= c0[:, None])).all())
    assert min(kept) >= 25 and np.median(kept) == 25  # sides >= 5, so 25 is the floor; a 5 x 5 block is common


def test_side_draw_is_kept_as_an_option():
    blocks = draw_blocks(BlockSampler(draw="side"), 500, seed=3)
    n, h, w = blocks.T
    assert h.min() < 5 and max(h.max(), w.max()) > 9  # sides 4-14 on a 14 grid
    assert n.mean() > 55
    with pytest.raises(ValueError, match="draw"):
        BlockSampler(draw="square")
