"""HR token grid -> MR grid downsamplers."""
from kit.downsamplers.base import Downsampler
from kit.downsamplers.block import BlockInterpolate, BlockMean
from kit.downsamplers.grid import GridInterpolate
from kit.downsamplers.linear import LinearProjection

__all__ = ["Downsampler", "BlockMean", "BlockInterpolate", "GridInterpolate", "LinearProjection"]
