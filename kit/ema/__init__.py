"""EMA updater and schedules (pure functions of the step)."""
from crossscale_kit.ema.ema import ema_update, make_ema
from crossscale_kit.ema.schedules import Cosine, Linear, WarmupCosine

__all__ = ["ema_update", "make_ema", "Cosine", "Linear", "WarmupCosine"]
