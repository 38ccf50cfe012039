"""Patch samplers: which patches each encoder sees, and the MR -> HR correspondence.

LatentMIM random split, I-JEPA multiblock masks, the spatial-affinity block ablation.
"""
from crossscale_kit.samplers.base import BlockMasks, MultiBlockMasks, PatchMasks, PatchSampler, SplitMasks
from crossscale_kit.samplers.block import BlockSampler
from crossscale_kit.samplers.correspondence import mr_to_hr_indices
from crossscale_kit.samplers.multiblock import BlockSizes, MultiBlock
from crossscale_kit.samplers.random_split import RandomSplit

__all__ = [
    "PatchSampler",
    "PatchMasks",
    "SplitMasks",
    "MultiBlockMasks",
    "BlockMasks", "RandomSplit", "MultiBlock", "BlockSizes", "BlockSampler", "mr_to_hr_indices"]
