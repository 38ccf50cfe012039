"""Predictors: LatentMIM cross-attention decoder and the I-JEPA predictor."""
from kit.predictors.ijepa_predictor import IJEPAPredictor
from kit.predictors.latentmim_decoder import CrossAttentionDecoder

__all__ = ["CrossAttentionDecoder", "IJEPAPredictor"]
