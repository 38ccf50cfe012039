"""Weight initialisation shared by the encoder, the projection head and the decoders."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def xavier_init_(module: nn.Module) -> nn.Module:
    """Re-initialise ``module`` in place as MAE and LatentMIM do: every ``nn.Linear`` xavier-uniform with
    zero bias, every ``nn.LayerNorm`` to weight 1 and bias 0. Other submodules are left as they are.

    Returns:
        ``module``, for chaining.
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
            nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module
