import pytest
import torch

from kit.downsamplers import BlockInterpolate, BlockMean, GridInterpolate


def test_per_block_bilinear_and_bicubic_equal_the_block_mean_at_s2():
    x = torch.randn(2, 5, 2, 2, 7)
    mean = BlockMean()(x)
    assert torch.allclose(BlockInterpolate("bilinear")(x), mean, atol=1e-6)
    assert torch.allclose(BlockInterpolate("bicubic")(x), mean, atol=1e-6)


def test_grid_bicubic_differs_from_the_block_mean():
    torch.manual_seed(0)
    grid = torch.randn(2, 8, 8, 6)
    low = GridInterpolate("bicubic")(grid, 2)
    blocks = grid.reshape(2, 4, 2, 4, 2, 6).permute(0, 1, 3, 2, 4, 5).reshape(2, 16, 2, 2, 6)
    mean = BlockMean()(blocks).reshape(2, 4, 4, 6)
    assert low.shape == (2, 4, 4, 6)
    assert (low - mean).abs().max() > 1e-2
    # grid bilinear without antialias at an exact factor 2 is the block mean
    assert torch.allclose(GridInterpolate("bilinear")(grid, 2), mean, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError):
        BlockInterpolate("nearest")
    with pytest.raises(ValueError):
        BlockMean()(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="not divisible"):
        GridInterpolate()(torch.randn(1, 5, 4, 3), 2)
