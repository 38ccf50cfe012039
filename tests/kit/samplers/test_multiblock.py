"""Invariants of the I-JEPA multiblock masker, in both modes."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossscale_kit.samplers import MultiBlock

MODES = st.sampled_from(["faithful", "corrected"])


def _rect(idx: torch.Tensor, gw: int) -> tuple[int, int, int, int]:
    rows, cols = idx // gw, idx % gw
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=MODES,
    gh=st.integers(6, 16),
    gw=st.integers(6, 16),
    batch=st.integers(1, 5),
    min_keep=st.integers(0, 4),
    seed=st.integers(0, 2**31 - 1),
)
def test_masks_are_valid(mode, gh, gw, batch, min_keep, seed):
    sampler = MultiBlock(mode=mode, min_keep=min_keep)
    n = gh * gw
    th, tw = sampler.smallest_sizes((gh, gw)).target
    if mode == "faithful" and th * tw <= min_keep:  # the release would loop forever; refused up front
        with pytest.raises(ValueError, match="min_keep"):
            sampler.sample(batch, (gh, gw), torch.Generator().manual_seed(seed))
        return
    sizes = sampler.draw_sizes((gh, gw), torch.Generator().manual_seed(seed))
    out = sampler.sample(batch, (gh, gw), torch.Generator().manual_seed(seed))
    ctx, tgt = out.context, out.targets
    assert out.visible is ctx
    # equal lengths, stacked; every index inside the grid; sorted, no repeats
    assert ctx.dtype == torch.long and ctx.dim() == 2 and ctx.shape[0] == batch
    assert tgt.dim() == 3 and tgt.shape[:2] == (batch, 4)
    for t in (ctx, tgt.flatten(0, 1)):
        assert int(t.min()) >= 0 and int(t.max()) < n
        assert bool((t[:, 1:] > t[:, :-1]).all())
    # at least min_keep context patches (faithful, as released: more than min_keep)
    assert ctx.shape[1] >= max(min_keep + (mode == "faithful"), 1)
    # every target is a full (th x tw) rectangle of the shape drawn for the batch
    th, tw = sizes.target
    ch, cw = sizes.context
    assert tgt.shape[2] == th * tw
    for b in range(batch):
        for m in range(4):
            r0, r1, c0, c1 = _rect(tgt[b, m], gw)
            assert (r1 - r0 + 1, c1 - c0 + 1) == (th, tw)
        # the context lies inside one (ch x cw) rectangle
        r0, r1, c0, c1 = _rect(ctx[b], gw)
        assert r1 - r0 < ch and c1 - c0 < cw
        # context and targets are disjoint (faithful: unless the release's relaxation dropped a target)
        if not bool(sampler.last_relaxed[b]):
            assert not set(ctx[b].tolist()) & set(tgt[b].flatten().tolist())
    assert mode == "faithful" or not bool(sampler.last_relaxed.any())


@settings(max_examples=80, deadline=None)
@given(mode=MODES, gh=st.integers(6, 20), gw=st.integers(6, 20), seed=st.integers(0, 2**31 - 1))
def test_block_sizes_follow_the_configured_scales(mode, gh, gw, seed):
    sampler = MultiBlock(mode=mode)
    sizes = sampler.draw_sizes((gh, gw), torch.Generator().manual_seed(seed))
    for (h, w), (lo, hi) in ((sizes.target, sampler.target_scale), (sizes.context, sampler.context_scale)):
        n = gh * gw
        # h = round(sqrt(A a)), w = round(sqrt(A / a)) with A = int(n * scale): h * w is A up to rounding
        slack = 0.5 * (h + w) + 1
        assert h * w <= hi * n + slack
        clipped = h >= gh - 1 or w >= gw - 1  # shrunk to fit the grid
        assert clipped or h * w >= int(lo * n) - slack
        assert 1 <= h <= gh and 1 <= w <= gw
        if mode == "faithful":
            assert h < gh and w < gw


def test_faithful_uses_one_draw_for_scale_and_aspect():
    sampler = MultiBlock(mode="faithful")
    # the release: the largest target scale always comes with the largest aspect (tall blocks)
    hw = [sampler.block_shape(u, u, sampler.target_scale, sampler.target_aspect, (14, 14)) for u in (0.0, 0.999)]
    assert hw[0][0] <= hw[0][1] and hw[1][0] > hw[1][1]
    sizes = {sampler.draw_sizes((14, 14), torch.Generator().manual_seed(s)).target for s in range(200)}
    corrected = MultiBlock(mode="corrected")
    sizes_c = {corrected.draw_sizes((14, 14), torch.Generator().manual_seed(s)).target for s in range(200)}
    assert len(sizes_c) > len(sizes)  # two independent draws reach shapes one draw cannot


@pytest.mark.parametrize("mode", ["faithful", "corrected"])
def test_last_row_and_column_coverage(mode):
    gh = gw = 8
    sampler = MultiBlock(mode=mode, min_keep=4)
    g = torch.Generator().manual_seed(0)
    hits = torch.zeros(gh * gw)
    for _ in range(60):
        out = sampler.sample(8, (gh, gw), g)
        for t in (out.context, out.targets.flatten(1)):
            hits.index_add_(0, t.flatten(), torch.ones(t.numel()))
    grid = hits.reshape(gh, gw)
    edge = grid[-1, :].sum() + grid[:, -1].sum()
    if mode == "faithful":
        assert edge == 0  # the release never covers the last row / column
    else:
        assert grid[-1, :].sum() > 0 and grid[:, -1].sum() > 0 and grid[-1, -1] > 0


def test_same_generator_same_masks_and_relaxation_tracked():
    sampler = MultiBlock(mode="faithful", min_keep=0)
    a = sampler.sample(6, (4, 4), torch.Generator().manual_seed(3))
    b = sampler.sample(6, (4, 4), torch.Generator().manual_seed(3))
    assert torch.equal(a.context, b.context) and torch.equal(a.targets, b.targets)
    assert sampler.last_relaxed.shape == (6,)


def test_faithful_truncation_keeps_the_first_patches_corrected_a_random_subset():
    for mode in ("faithful", "corrected"):
        sampler = MultiBlock(mode=mode, min_keep=2)
        out = sampler.sample(16, (10, 10), torch.Generator().manual_seed(1))
        assert out.context.shape[1] >= 2
    masks = torch.zeros(2, 10, dtype=torch.bool)
    masks[0, [1, 3, 5, 7]] = True
    masks[1, [0, 2, 4]] = True
    first = MultiBlock(mode="faithful")._truncate(masks, 3, None)
    assert first.tolist() == [[1, 3, 5], [0, 2, 4]]
    rand = MultiBlock(mode="corrected")._truncate(masks, 3, torch.Generator().manual_seed(0))
    assert set(rand[0].tolist()) <= {1, 3, 5, 7} and rand[1].tolist() == [0, 2, 4]


def test_bad_arguments_and_impossible_grids():
    with pytest.raises(ValueError, match="mode"):
        MultiBlock(mode="exact")
    with pytest.raises(ValueError, match="target_scale"):
        MultiBlock(target_scale=(0.3, 0.2))
    with pytest.raises(ValueError, match="num_targets"):
        MultiBlock(num_targets=0)
    # I-JEPA's min_keep 10 cannot hold on a 4x4 grid: refused before any draw, whatever the seed
    with pytest.raises(ValueError, match="min_keep"):
        MultiBlock().sample(2, (4, 4), torch.Generator().manual_seed(0))
