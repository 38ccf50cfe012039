"""An exported encoder as a TerraTorch backbone, registered through TerraTorch's own registry.

Importing this module (with ``pip install -e ".[terratorch]"``) adds the backbone ``crossscale_export`` to
``terratorch.registry.TERRATORCH_BACKBONE_REGISTRY``; TerraTorch's ``BACKBONE_REGISTRY`` then finds it by name
(``backbone: crossscale_export`` in a task's ``model_args``). ``terratorch fit`` imports it through TerraTorch's
plugin hook, ``custom_modules_path`` (the folder ``docs/terratorch/crossscale_plugin`` does only that import).

The backbone returns one ``(B, D, H / p, W / p)`` map per ``out_indices`` entry (default four blocks spread over
the depth) and has ``out_channels = [D] * len(out_indices)``, what TerraTorch's decoders read; the last map
carries the final LayerNorm and equals the kit's own patch features. Bands and normalisation come from
``meta.json``: :func:`datamodule_args` gives the ``means``/``stds``/``dataset_bands`` a TerraTorch datamodule wants,
and ``model_bands``, when TerraTorch passes it, is checked against the export's bands.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from crossscale_kit.encoders.export import load_exported_encoder
from crossscale_kit.integrations.layers import S2_BAND_IDS, default_layers, multi_layer_features

try:
    from terratorch.registry import TERRATORCH_BACKBONE_REGISTRY

    HAVE_TERRATORCH = True
except ImportError:  # the module stays importable (and the backbone usable as a plain nn.Module)
    TERRATORCH_BACKBONE_REGISTRY = None
    HAVE_TERRATORCH = False

BACKBONE_NAME = "crossscale_export"
#: the kit's band names -> TerraTorch's HLSBands names
_HLS = {"blue": "BLUE", "green": "GREEN", "red": "RED", "nir": "NIR_NARROW"}


class CrossScaleBackbone(nn.Module):
    """A kit export as a multi-layer feature extractor (see the module docstring)."""

    def __init__(self, export_dir: str | Path, out_indices: list[int] | None = None, model_bands=None) -> None:
        super().__init__()
        self.model, self.meta = load_exported_encoder(export_dir)
        self.model.train()  # TerraTorch decides train/eval and freezing (freeze_backbone)
        depth, D = len(self.model.blocks), int(self.meta["embed_dim"])
        self.out_indices = list(out_indices) if out_indices is not None else default_layers(depth)
        self.out_channels = [D] * len(self.out_indices)
        self.bands = list(self.meta.get("bands") or S2_BAND_IDS)
        if model_bands is not None:
            names = [getattr(b, "name", b) for b in model_bands]
            ok = [{str(b).lower(), S2_BAND_IDS.get(b, b).lower(), _HLS.get(b, b).lower()} for b in self.bands]
            if len(names) != len(self.bands) or any(str(n).lower() not in o for n, o in zip(names, ok)):
                raise ValueError(f"model_bands {names} do not match the export's bands {self.bands} "
                                 f"(Sentinel-2 ids {[S2_BAND_IDS.get(b, b) for b in self.bands]}), in that order.")
        self.patch_size = int(self.meta["patch_size"])

    def forward(self, x: torch.Tensor, **_) -> list[torch.Tensor]:
        return multi_layer_features(self.model, x, self.out_indices)


def crossscale_export(export_dir: str | Path, out_indices: list[int] | None = None, pretrained: bool = True,
                      model_bands=None, **_ignored) -> CrossScaleBackbone:
    """TerraTorch backbone constructor: the export in ``export_dir`` (its weights; ``pretrained`` is ignored,
    the export is the trained encoder). Extra keyword arguments TerraTorch passes are ignored."""
    return CrossScaleBackbone(export_dir, out_indices=out_indices, model_bands=model_bands)


if HAVE_TERRATORCH and BACKBONE_NAME not in TERRATORCH_BACKBONE_REGISTRY:
    TERRATORCH_BACKBONE_REGISTRY.register(crossscale_export)


def datamodule_args(export_dir: str | Path) -> dict:
    """``means``, ``stds`` and ``dataset_bands`` (Sentinel-2 ids) for a TerraTorch datamodule, from ``meta.json``."""
    import json

    meta = json.loads((Path(export_dir) / "meta.json").read_text())
    norm = meta.get("normalization") or {}
    return {"means": list(norm.get("mean") or []), "stds": list(norm.get("std") or []),
            "dataset_bands": [S2_BAND_IDS.get(b, b) for b in meta.get("bands") or S2_BAND_IDS]}
