import pytest
import torch

from crossscale_kit.downsamplers import BlockInterpolate, BlockMean, GridInterpolate, LinearProjection


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


def test_linear_projection_shapes_mean_init_and_order():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 2, 2, 7)
    proj = LinearProjection(7, scale=2)
    assert proj(x).shape == (2, 5, 7)
    assert torch.allclose(proj(x), BlockMean()(x), atol=1e-6)  # "mean" init starts as the block mean
    rnd = LinearProjection(7, scale=2, init="random")
    # the flattening is (i, j, D) row-major: the weight block [:, (i*s + j)*D : ...] sees token (i, j)
    w = rnd.proj.weight.reshape(7, 2, 2, 7)
    manual = torch.einsum("bkijd,eijd->bke", x, w) + rnd.proj.bias
    assert torch.allclose(rnd(x), manual, atol=1e-5)
    assert not proj.full_grid


def test_linear_projection_refuses_mismatched_blocks():
    with pytest.raises(ValueError, match="scale"):
        LinearProjection(7, scale=2)(torch.randn(1, 3, 3, 3, 7))
    with pytest.raises(ValueError, match="dim"):
        LinearProjection(0)
    with pytest.raises(ValueError, match="init"):
        LinearProjection(4, init="zeros")


def test_learned_downsampler_declares_it_and_refuses_no_grad_in_training():
    assert LinearProjection(4).learnable and not BlockMean().learnable and not GridInterpolate().learnable
    proj = LinearProjection(4).train()
    x = torch.randn(2, 3, 2, 2, 4)
    with torch.no_grad(), pytest.raises(RuntimeError, match="no_grad"):
        proj(x)
    assert torch.allclose(proj(x), BlockMean()(x), atol=1e-6)  # "mean" init, with grad
    with torch.no_grad():
        BlockMean()(x)  # fixed ones run anywhere
