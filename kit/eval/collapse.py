"""Collapse monitors of SSL features: effective rank (RankMe) and the std of L2-normalised features.

Both read a batch of features ``(..., D)`` (flattened to ``(N, D)``) and cost one small reduction:

* :func:`rankme` (Garrido et al., "RankMe", ICML 2023): ``exp`` of the entropy of the normalised singular
  values, ``p_k = s_k / sum(s) + eps``. It lies in ``[1, min(N, D)]``: 1 for a complete collapse (every
  feature on one line), ``D`` for features that use every dimension evenly.
* :func:`std_of_l2_normalized` (lightly's ``std_of_l2_normalized``; SimSiam, Chen & He 2021, Sec. 4.1):
  the per-dimension std over the batch of the L2-normalised features, averaged over dimensions. About
  ``1/sqrt(D)`` for features spread over the sphere, 0 when every feature points the same way.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: RankMe's epsilon (the paper's value)
EPS = 1e-7
#: at most this many feature rows enter one reading (evenly strided), so the SVD stays small
MAX_ROWS = 4096


def _rows(z: torch.Tensor, max_rows: int = MAX_ROWS) -> torch.Tensor:
    if z.dim() < 2:
        raise ValueError(f"features must be (..., D) with a batch dimension, got shape {tuple(z.shape)}.")
    z = z.detach().reshape(-1, z.shape[-1]).float()
    if z.shape[0] > max_rows:
        z = z[:: math.ceil(z.shape[0] / max_rows)]
    return z


def _finite(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z with non-finite entries zeroed, 0-d bool: all finite)``, without a host read."""
    return torch.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0), torch.isfinite(z).all()


def rankme(z: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Effective rank of features ``z (..., D)`` as a 0-d tensor on ``z``'s device (no host read); NaN when
    ``z`` holds a non-finite value (a step the non-finite guard skips)."""
    z, ok = _finite(_rows(z))
    s = torch.linalg.svdvals(z)
    p = s / (s.sum() + eps) + eps
    return torch.where(ok, torch.exp(-(p * torch.log(p)).sum()), torch.full((), float("nan"), device=z.device))


def std_of_l2_normalized(z: torch.Tensor) -> torch.Tensor:
    """Mean over dimensions of the std over the batch of L2-normalised ``z (..., D)`` (0-d tensor)."""
    z, ok = _finite(_rows(z))
    std = F.normalize(z, dim=-1).std(dim=0).mean()
    return torch.where(ok, std, torch.full((), float("nan"), device=z.device))


def collapse_logs(features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{"collapse/rankme_<name>", "collapse/std_<name>"}`` for each ``name -> (..., D)`` in ``features``
    (a value may be a zero-argument callable that returns the features, so that a host pays for them only
    when they are read)."""
    out = {}
    for name, z in features.items():
        z = z() if callable(z) else z
        if z is None or z.numel() == 0:
            continue
        out[f"collapse/rankme_{name}"] = rankme(z)
        out[f"collapse/std_{name}"] = std_of_l2_normalized(z)
    return out
