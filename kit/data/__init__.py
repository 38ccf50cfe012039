"""Paired MR/HR tiles: shard format, synthetic scenes, paired transforms and the resumable reader."""
from crossscale_kit.data.errors import DataError
from crossscale_kit.data.loader import PairedTiles, PairStream
from crossscale_kit.data.synthetic import SyntheticScenes, ensure_synthetic_cache
from crossscale_kit.data.transforms import PairedRandomResizedCrop, SensorNormalize
from crossscale_kit.data.writer import PairShardWriter, validate_pair_shapes
from crossscale_kit.io import BANDS

__all__ = [
    "BANDS",
    "DataError",
    "PairShardWriter",
    "PairStream",
    "PairedRandomResizedCrop",
    "PairedTiles",
    "SensorNormalize",
    "SyntheticScenes",
    "ensure_synthetic_cache",
    "validate_pair_shapes",
]
