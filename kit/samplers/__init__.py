"""Patch samplers: which patches each encoder sees, and the MR -> HR correspondence."""
from kit.samplers.base import PatchSampler
from kit.samplers.correspondence import mr_to_hr_indices
from kit.samplers.random_split import RandomSplit

__all__ = ["PatchSampler", "RandomSplit", "mr_to_hr_indices"]
