"""Exponential moving average of online modules (BYOL / DINO / I-JEPA target encoders)."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


@torch.no_grad()
def ema_update(pairs: Iterable[tuple[nn.Module, nn.Module]], momentum: float, skip: torch.Tensor | None = None) -> None:
    """``ema = momentum * ema + (1 - momentum) * online`` for every parameter of every pair.

    Args:
        pairs: ``(online, ema)`` modules of identical structure (names and shapes are checked).
        momentum: in ``[0, 1]``; 1 leaves the EMA untouched.
        skip: optional 0-d float tensor on the parameters' device, 1 to leave the EMA untouched (the
            optimizer step was skipped), 0 to update; read on the device, so the host never waits for it.

    Buffers (e.g. fixed position tables) are copied. Parameters of the online module that do not
    require grad (fixed sin-cos positions) are copied, not averaged.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}.")
    ema_params, online_params = [], []
    for online, ema in pairs:
        src = dict(online.named_parameters())
        dst = dict(ema.named_parameters())
        if src.keys() != dst.keys():
            missing = sorted(set(src) ^ set(dst))[:5]
            raise ValueError(f"EMA pair has different parameters (e.g. {missing}); build the EMA as a deepcopy.")
        for name, p in src.items():
            q = dst[name]
            if p.shape != q.shape:
                raise ValueError(f"EMA parameter {name} has shape {tuple(q.shape)} != online {tuple(p.shape)}.")
            if p.requires_grad:
                ema_params.append(q)
                online_params.append(p.detach().to(q.dtype))
            else:
                q.copy_(p)
        for (name, b), (_, c) in zip(online.named_buffers(), ema.named_buffers()):
            c.copy_(b)
    if not ema_params or momentum >= 1.0:
        return
    if skip is None:
        torch._foreach_lerp_(ema_params, online_params, 1.0 - momentum)
        return
    # the weight stays on the device: a 0-d tensor weight would be read back with .item()
    weight = (1.0 - skip.to(torch.float32)) * (1.0 - momentum)
    if ema_params[0].device.type == "cuda":  # multi-tensor kernels: ema += w * (online - ema)
        delta = torch._foreach_sub(online_params, ema_params)
        torch._foreach_mul_(delta, weight)
        torch._foreach_add_(ema_params, delta)
    else:  # one lerp per tensor with the weight broadcast (no temporaries)
        torch._foreach_lerp_(ema_params, online_params, [weight] * len(ema_params))


def make_ema(module: nn.Module) -> nn.Module:
    """A frozen deep copy of ``module`` to serve as its EMA (no grads, eval-independent)."""
    import copy

    ema = copy.deepcopy(module)
    for p in ema.parameters():
        p.requires_grad_(False)
    return ema
