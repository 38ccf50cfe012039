"""MLP projection head (LatentMIM)."""
from __future__ import annotations

import gin
import torch
from torch import nn


@gin.register
class ProjectionHead(nn.Module):
    """``num_layers``-layer MLP with GELU between layers and a LayerNorm on the output.

    LatentMIM projects encoder tokens with a 3-layer MLP (hidden 4096) ending in a LayerNorm; both
    the online and the target encoder carry one.

    Args:
        in_dim: token width ``D`` of the encoder.
        hidden_dim: width of the hidden layers.
        out_dim: output width (None keeps ``in_dim``).
        num_layers: linear layers (>= 1).

    Shapes:
        ``forward((B, N, in_dim)) -> (B, N, out_dim)``.
    """

    def __init__(self, in_dim: int, hidden_dim: int = 4096, out_dim: int | None = None, num_layers: int = 3) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}.")
        if in_dim < 1 or hidden_dim < 1:
            raise ValueError(f"in_dim and hidden_dim must be positive, got {in_dim} and {hidden_dim}.")
        out_dim = out_dim or in_dim
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < num_layers - 1:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(out_dim)
        self.out_dim = out_dim

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(self.mlp(tokens))
