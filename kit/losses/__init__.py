"""Losses: gram (via kernels), patch InfoNCE, I-JEPA smooth-L1 latent loss, MAE masked pixel MSE."""
from crossscale_kit.losses.gram import GramLoss
from crossscale_kit.losses.infonce import PatchInfoNCE
from crossscale_kit.losses.pixel_mse import MaskedPixelMSE
from crossscale_kit.losses.smooth_l1 import SmoothL1Latent

__all__ = ["GramLoss", "MaskedPixelMSE", "PatchInfoNCE", "SmoothL1Latent"]
