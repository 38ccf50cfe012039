"""Paired MR/HR tiles: shard format, synthetic scenes, paired transforms and the resumable reader."""
from kit.data.errors import DataError
from kit.data.loader import PairedTiles, PairStream
from kit.data.synthetic import SyntheticScenes, ensure_synthetic_cache
from kit.data.transforms import PairedRandomResizedCrop, SensorNormalize
from kit.data.writer import PairShardWriter, validate_pair_shapes
from kit.io import BANDS

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
