"""An exported encoder as a PANGAEA encoder (``pangaea.encoders.base.Encoder``).

PANGAEA (github.com/VMarsocci/pangaea-bench) builds encoders from hydra configs with a ``_target_`` class;
``docs/pangaea/crossscale.yaml`` points at :class:`CrossScaleEncoder`. PANGAEA is not on the package
registries, so this module imports without it: with PANGAEA installed the class subclasses PANGAEA's
``Encoder`` (its freezing, weight-loading and logging helpers apply), without it a small stand-in with the
same attributes takes its place (tests, or use outside PANGAEA).

The forward follows PANGAEA's encoder API: ``forward({"optical": (B, C, T, H, W) or (B, C, H, W)})`` returns
one ``(B, D, H / patch, W / patch)`` map per entry of ``output_layers``; the last block's map carries the final
LayerNorm and equals the kit's own patch features. PANGAEA's preprocessing standardises each band with the
dataset's statistics before the encoder sees it, which stands in for the kit's ``meta["normalization"]``.
"""
from __future__ import annotations

import inspect
import logging
from pathlib import Path

import torch
from torch import nn

from crossscale_kit.encoders.export import load_exported_encoder
from crossscale_kit.integrations.layers import S2_BAND_IDS, default_layers, multi_layer_features

try:  # PANGAEA installed (pip install -e its clone)
    from pangaea.encoders.base import Encoder as _Base

    HAVE_PANGAEA = True
except ImportError:  # the stand-in: the attributes PANGAEA's decoders and trainer read
    HAVE_PANGAEA = False

    class _Base(nn.Module):
        def __init__(self, model_name, input_bands, input_size, embed_dim, output_layers, output_dim,
                     multi_temporal, multi_temporal_output, pyramid_output, encoder_weights, download_url=None):
            super().__init__()
            self.model_name, self.input_bands, self.input_size = model_name, input_bands, input_size
            self.embed_dim, self.output_layers, self.output_dim = embed_dim, output_layers, output_dim
            self.multi_temporal, self.multi_temporal_output = multi_temporal, multi_temporal_output
            self.pyramid_output, self.encoder_weights, self.download_url = pyramid_output, encoder_weights, download_url

        def freeze(self):
            for p in self.parameters():
                p.requires_grad = False


class CrossScaleEncoder(_Base):
    """A kit export (``encoder.safetensors`` + ``meta.json``) as a PANGAEA encoder.

    Args:
        export_dir: the export folder (``WORKDIR/export``).
        input_size: the side PANGAEA feeds (a multiple of the patch size; positions follow any grid).
        input_bands: ``{"optical": [...]}``; default the export's bands as Sentinel-2 ids (``B2 B3 B4 B8``).
        output_layers: block indices whose outputs the decoder reads (default four spread over the depth).
        output_dim: ignored beyond a check: the export's width.
        encoder_weights, download_url, model_name: PANGAEA's bookkeeping; weights come from ``export_dir``.
    """

    def __init__(self, export_dir: str | Path, input_size: int = 224, input_bands: dict | None = None,
                 output_layers: list[int] | None = None, output_dim: int | list[int] | None = None,
                 encoder_weights: str | None = None, download_url: str | None = None,
                 model_name: str = "crossscale", **_ignored) -> None:
        model, meta = load_exported_encoder(export_dir)
        D, depth = int(meta["embed_dim"]), len(model.blocks)
        layers = list(output_layers) if output_layers is not None else default_layers(depth)
        bands = input_bands or {"optical": [S2_BAND_IDS.get(b, b) for b in meta.get("bands") or S2_BAND_IDS]}
        if len(bands.get("optical", [])) != int(meta["in_chans"]):
            raise ValueError(f"input_bands {bands} must list the export's {meta['in_chans']} optical bands "
                             f"({meta.get('bands')}).")
        for d in ([output_dim] if isinstance(output_dim, int) else output_dim or []):
            if d != D:
                raise ValueError(f"output_dim {output_dim} differs from the export's width {D}.")
        kwargs = dict(model_name=model_name, input_bands=bands, input_size=int(input_size), embed_dim=D,
                      output_layers=layers, output_dim=[D] * len(layers) if isinstance(output_dim, list) else D,
                      multi_temporal=False, multi_temporal_output=False, pyramid_output=False,
                      encoder_weights=encoder_weights or str(Path(export_dir) / "encoder.safetensors"),
                      download_url=download_url)
        accepted = inspect.signature(_Base.__init__).parameters
        super().__init__(**{k: v for k, v in kwargs.items() if k in accepted})
        self.output_layers, self.meta = layers, meta
        self.model = model

    def load_encoder_weights(self, logger: logging.Logger | None = None) -> None:
        """Nothing to do: the weights were loaded (strictly) from the export when the encoder was built."""
        (logger or logging.getLogger(__name__)).info("crossscale: weights from %s", self.encoder_weights)

    def forward(self, image: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        x = image["optical"]
        if x.dim() == 5:  # PANGAEA's (B, C, T, H, W); single-temporal encoder: T must be 1
            if x.shape[2] != 1:
                raise ValueError(f"CrossScaleEncoder is single-temporal; got T = {x.shape[2]} frames.")
            x = x[:, :, 0]
        return multi_layer_features(self.model, x, self.output_layers)
