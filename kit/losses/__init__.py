"""Losses: gram (via kernels), patch InfoNCE I-JEPA smooth-L1 latent loss."""
from kit.losses.gram import GramLoss
from kit.losses.infonce import PatchInfoNCE
from kit.losses.smooth_l1 import SmoothL1Latent

__all__ = ["GramLoss", "PatchInfoNCE", "SmoothL1Latent"]
