"""HR token grid -> MR grid downsamplers."""
from crossscale_kit.downsamplers.base import Downsampler
from crossscale_kit.downsamplers.block import BlockInterpolate, BlockMean
from crossscale_kit.downsamplers.grid import GridInterpolate
from crossscale_kit.downsamplers.linear import LinearProjection

__all__ = ["Downsampler", "BlockMean", "BlockInterpolate", "GridInterpolate", "LinearProjection"]
