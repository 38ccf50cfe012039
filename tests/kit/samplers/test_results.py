"""Sampler results are typed, checked where they are made, and cut to a rank's rows."""
import pytest
import torch

from crossscale_kit.samplers import BlockMasks, BlockSampler, MultiBlock, MultiBlockMasks, RandomSplit, SplitMasks


def test_each_sampler_returns_its_kind_with_visible():
    g = torch.Generator().manual_seed(0)
    split = RandomSplit(5).sample(4, (4, 4), g)
    blocks = MultiBlock(min_keep=2).sample(4, (8, 8), g)
    block = BlockSampler().sample(4, (8, 8), g)
    assert isinstance(split, SplitMasks) and split.visible.shape == (4, 5) and split.targets.shape == (4, 11)
    assert isinstance(blocks, MultiBlockMasks) and blocks.visible is blocks.context and blocks.targets.dim() == 3
    assert isinstance(block, BlockMasks) and block.visible.shape[0] == 4
    assert split.num_patches == 16 and blocks.num_patches == 64


def test_rows_cut_every_field_and_keep_the_kind():
    m = MultiBlock(min_keep=2).sample(6, (8, 8), torch.Generator().manual_seed(1))
    part = m.rows(slice(2, 5))
    assert isinstance(part, MultiBlockMasks) and part.batch_size == 3 and part.num_patches == 64
    assert torch.equal(part.context, m.context[2:5]) and torch.equal(part.targets, m.targets[2:5])


def test_results_are_checked_when_made():
    ok = torch.tensor([[0, 1]])
    with pytest.raises(IndexError, match=r"outside \[0, 4\)"):
        SplitMasks(ok, torch.tensor([[2, 4]]), num_patches=4)
    with pytest.raises(IndexError, match="outside"):
        BlockMasks(torch.tensor([[-1, 0]]), num_patches=4)
    with pytest.raises(ValueError, match="LongTensor"):
        SplitMasks(ok.float(), ok, num_patches=4)
    with pytest.raises(ValueError, match="3-D"):
        MultiBlockMasks(ok, ok, num_patches=4)
    with pytest.raises(ValueError, match="batch size"):
        SplitMasks(ok, torch.tensor([[2], [3]]), num_patches=4)


def test_mask_ratio_keeps_int_n_times_one_minus_ratio_visible():
    m = RandomSplit(num_visible=None, mask_ratio=0.75).sample(2, (14, 14), torch.Generator().manual_seed(0))
    assert m.visible.shape == (2, 49) and m.targets.shape == (2, 147)
    with pytest.raises(ValueError, match="exactly one"):
        RandomSplit(num_visible=4, mask_ratio=0.5)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        RandomSplit(num_visible=None, mask_ratio=1.0)


def test_rows_and_to_do_not_check_again():
    """Indices are checked once, where drawn: cutting rows or moving them reads nothing back."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Reads(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._local_scalar_dense.default:
                Reads.n += 1
            return func(*args, **(kwargs or {}))

    m = RandomSplit(3).sample(4, (4, 4), torch.Generator().manual_seed(0))
    with Reads():
        part = m.rows(slice(1, 3)).to("cpu")
    assert Reads.n == 0 and isinstance(part, SplitMasks) and part.batch_size == 2
    assert torch.equal(part.targets, m.targets[1:3])
