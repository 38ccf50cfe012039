"""Real Sentinel-2 pixels for the tests: the 10 m tile that the ``spyndex`` package ships (MIT).

``spyndex/data/S2_10m.json`` holds B02 B03 B04 B08 (blue, green, red, NIR) of a real scene, ``(4, 300, 300)``,
reflectance x 10000, no georeference. It is read straight from the installed package (no xarray needed,
nothing downloaded); tests that need it skip when spyndex is not installed (``pip install -e .[test]``).
"""
from __future__ import annotations

import json
from importlib import resources

import numpy as np


def s2_tile() -> np.ndarray:
    """``(4, 300, 300)`` int16 reflectance x 10000, band order blue, green, red, NIR."""
    import pytest

    pytest.importorskip("spyndex")
    text = resources.files("spyndex").joinpath("data", "S2_10m.json").read_text()
    return np.asarray(json.loads(text), dtype=np.int16)
