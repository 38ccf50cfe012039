"""Patch samplers: which patches each encoder sees, and the MR -> HR correspondence.

LatentMIM random split, I-JEPA multiblock masks, the spatial-affinity block ablation.
"""
from kit.samplers.base import PatchSampler
from kit.samplers.block import BlockSampler
from kit.samplers.correspondence import mr_to_hr_indices
from kit.samplers.multiblock import BlockSizes, MultiBlock
from kit.samplers.random_split import RandomSplit

__all__ = ["PatchSampler", "RandomSplit", "MultiBlock", "BlockSizes", "BlockSampler", "mr_to_hr_indices"]
