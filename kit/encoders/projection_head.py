"""MLP projection head (LatentMIM)."""
from __future__ import annotations

import gin
import torch
from torch import nn
from crossscale_kit.encoders.init import xavier_init_


@gin.register
class ProjectionHead(nn.Module):
    """LatentMIM's projection head: ``num_layers`` linear layers ending in a LayerNorm.

    As released (Wei, Gupta, Morgado, ECCV 2024): every hidden layer is ``Linear(no bias) ->
    LayerNorm -> GELU`` and the last one ``Linear(no bias) -> LayerNorm``; with ``num_layers = 3``
    and hidden 4096 that is ``Linear, LN, GELU, Linear, LN, GELU, Linear, LN``. The LayerNorms keep
    torch's eps 1e-5 (the released head builds them without the encoder's 1e-6). Linear weights start
    xavier-uniform, as the released ViT initialises every Linear it holds. Both the online and the
    target encoder carry one.

    Args:
        in_dim: token width ``D`` of the encoder.
        hidden_dim: width of the hidden layers (LatentMIM: 4096).
        out_dim: output width (None keeps ``in_dim``).
        num_layers: linear layers (>= 1; LatentMIM: 3).
        hidden_norm: LayerNorm after every hidden Linear (released); False gives the plain
            ``Linear -> GELU`` MLP the kit used before.
        bias: biases on the Linear layers (released: none).

    Shapes:
        ``forward((B, N, in_dim)) -> (B, N, out_dim)``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 4096,
        out_dim: int | None = None,
        num_layers: int = 3,
        hidden_norm: bool = True,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}.")
        if in_dim < 1 or hidden_dim < 1:
            raise ValueError(f"in_dim and hidden_dim must be positive, got {in_dim} and {hidden_dim}.")
        out_dim = out_dim or in_dim
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers.append(nn.Linear(dims[i], dims[i + 1], bias=bias))
            if i < num_layers - 1:
                if hidden_norm:
                    layers.append(nn.LayerNorm(dims[i + 1]))
                layers.append(nn.GELU())
        layers.append(nn.LayerNorm(out_dim))
        self.layers = nn.Sequential(*layers)
        self.out_dim = out_dim
        xavier_init_(self.layers)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.layers(tokens)
