"""Predictors: LatentMIM cross-attention decoder, the I-JEPA predictor and MAE's pixel decoder."""
from crossscale_kit.predictors.ijepa_predictor import IJEPAPredictor
from crossscale_kit.predictors.latentmim_decoder import CrossAttentionDecoder
from crossscale_kit.predictors.mae_decoder import MAEDecoder

__all__ = ["CrossAttentionDecoder", "IJEPAPredictor", "MAEDecoder"]
