"""Predictors: LatentMIM cross-attention decoder (and the I-JEPA predictor)."""
from kit.predictors.latentmim_decoder import CrossAttentionDecoder

__all__ = ["CrossAttentionDecoder"]
