"""Predictors: LatentMIM cross-attention decoder, the I-JEPA predictor and MAE's pixel decoder."""
from kit.predictors.ijepa_predictor import IJEPAPredictor
from kit.predictors.latentmim_decoder import CrossAttentionDecoder
from kit.predictors.mae_decoder import MAEDecoder

__all__ = ["CrossAttentionDecoder", "IJEPAPredictor", "MAEDecoder"]
