"""Losses: gram (via kernels), patch InfoNCE (and the I-JEPA smooth-L1 latent loss)."""
from kit.losses.gram import GramLoss
from kit.losses.infonce import PatchInfoNCE

__all__ = ["GramLoss", "PatchInfoNCE"]
