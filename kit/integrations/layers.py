"""Multi-layer patch features of an exported encoder, as feature maps ``(B, D, h, w)``.

Segmentation decoders (UPerNet, FCN) read several depths of a ViT. :func:`multi_layer_features` runs the
exported timm model block by block, exactly as its ``forward_features`` does (fixed sin-cos positions of the
input's own grid, see :func:`crossscale_kit.encoders.export.load_exported_encoder`), and returns the patch tokens after
the chosen blocks with prefix (CLS) tokens dropped. The last block's output gets the final LayerNorm, so the
last map equals the kit's own patch features (:func:`crossscale_kit.eval.features.patch_features`).
"""
from __future__ import annotations

import torch

#: the kit's band names -> Sentinel-2 band ids (PANGAEA and TerraTorch name bands this way)
S2_BAND_IDS = {"blue": "B2", "green": "B3", "red": "B4", "nir": "B8"}


def default_layers(depth: int, n: int = 4) -> list[int]:
    """``n`` block indices spread evenly over ``depth`` blocks, the last one included (12 -> [2, 5, 8, 11])."""
    return sorted({max(0, round(depth * (i + 1) / n) - 1) for i in range(n)})


def multi_layer_features(model, x: torch.Tensor, layers: list[int], *, norm_last: bool = True) -> list[torch.Tensor]:
    """Patch-token maps after each block in ``layers`` (indices into ``model.blocks``; negative counts from the end).

    Args:
        model: an exported encoder (timm ``VisionTransformer`` from ``load_exported_encoder``).
        x: ``(B, C, H, W)`` input, normalised as ``meta["normalization"]``; H and W multiples of the patch size.
        norm_last: apply the final LayerNorm to the last block's output (what ``forward_features`` returns).
    """
    depth = len(model.blocks)
    wanted = sorted({i % depth for i in layers})
    if not wanted or any(not -depth <= i < depth for i in layers):
        raise ValueError(f"layers {layers} must index the encoder's {depth} blocks.")
    p = model.patch_embed.patch_size[0]
    if x.shape[-1] % p or x.shape[-2] % p:
        raise ValueError(f"input {tuple(x.shape[-2:])} is not a multiple of the {p}-px patch.")
    B = x.shape[0]
    t = model.patch_embed(x)
    if t.dim() == 4:  # dynamic_img_size: (B, h, w, D)
        h, w = t.shape[1], t.shape[2]
    else:
        h, w = x.shape[-2] // p, x.shape[-1] // p
    t = model.norm_pre(model.patch_drop(model._pos_embed(t)))
    n = getattr(model, "num_prefix_tokens", 0)
    out = []
    for i, blk in enumerate(model.blocks[: wanted[-1] + 1]):
        t = blk(t)
        if i in wanted:
            y = model.norm(t) if (norm_last and i == depth - 1) else t
            out.append(y[:, n:].transpose(1, 2).reshape(B, -1, h, w))
    return out
