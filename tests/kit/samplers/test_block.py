"""The spatial-affinity block sampler (the paper's Fig. 2c / Table IV)."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from crossscale_kit.samplers import BlockSampler


@settings(max_examples=60, deadline=None)
@given(gh=st.integers(3, 16), gw=st.integers(3, 16), batch=st.integers(1, 6), seed=st.integers(0, 2**31 - 1))
def test_blocks_are_contiguous_in_range_and_truncated_to_the_batch_minimum(gh, gw, batch, seed):
    sampler = BlockSampler()
    vis = sampler.sample(batch, (gh, gw), torch.Generator().manual_seed(seed)).visible
    assert vis.dtype == torch.long and vis.shape[0] == batch and vis.shape[1] >= 1
    assert int(vis.min()) >= 0 and int(vis.max()) < gh * gw
    assert bool((vis[:, 1:] > vis[:, :-1]).all())
    assert vis.shape[1] <= sampler.largest_block((gh, gw))
    for row in vis:
        r, c = row // gw, row % gw
        h, w = int(r.max() - r.min()) + 1, int(c.max() - c.min()) + 1
        # one rectangle: every row spans the same columns, truncation only shortens the last row (a prefix)
        c0 = int(c.min())
        for rr in range(int(r.min()), int(r.max()) + 1):
            cols = c[r == rr].tolist()
            full = list(range(c0, c0 + w))
            assert cols == full if rr < int(r.max()) else cols == full[: len(cols)]
        # side fraction 0.4-0.7 of the grid side (up to rounding), aspect 0.5-2 before clipping
        side = (gh * gw) ** 0.5
        assert h <= round(0.7 * side * 2**0.5) + 1 and w <= round(0.7 * side * 2**0.5) + 1


def test_shape_formula_and_last_row_reachable():
    s = BlockSampler()
    assert s.block_shape(0.5, 1.0, (14, 14)) == (7, 7)
    assert s.block_shape(0.4, 2.0, (10, 10)) == (6, 3)
    hits = torch.zeros(64)
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        v = s.sample(4, (8, 8), g).visible
        hits.index_add_(0, v.flatten(), torch.ones(v.numel()))
    assert hits.reshape(8, 8)[-1].sum() > 0 and hits.reshape(8, 8)[:, -1].sum() > 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="side"):
        BlockSampler(side=(0.0, 0.7))
    with pytest.raises(ValueError, match="aspect"):
        BlockSampler(aspect=(2.0, 0.5))
    with pytest.raises(ValueError, match="min_keep"):
        BlockSampler(min_keep=100).sample(2, (4, 4))
