"""AdamW with decay / no-decay parameter groups, driven by step schedules."""
from __future__ import annotations

import torch
from torch import nn

NO_DECAY_KEYS = ("token", "pos_embed", "norm", "bias")


def param_groups(model: nn.Module) -> list[dict]:
    """Two groups: weights with decay, and biases / norm weights / 1-D params / tokens / embeddings without.

    Parameters that do not require grad (EMA copies, fixed positions) are left out.
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        leaf = name.rsplit(".", 1)[-1]
        if p.ndim <= 1 or leaf == "bias" or any(k in name for k in ("mask_token", "cls_token", "pos_embed")):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "apply_wd": True, "name": "decay"})
    if no_decay:
        groups.append({"params": no_decay, "apply_wd": False, "name": "no_decay", "weight_decay": 0.0})
    return groups


def build_adamw(model: nn.Module, betas=(0.9, 0.95), eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`; learning rate and weight decay are set per step by :func:`apply_schedules`."""
    return torch.optim.AdamW(param_groups(model), lr=0.0, betas=tuple(betas), eps=eps, weight_decay=0.0)


def apply_schedules(optimizer: torch.optim.Optimizer, lr: float, weight_decay: float) -> None:
    """Set this step's learning rate on every group and weight decay on the decaying ones."""
    for g in optimizer.param_groups:
        g["lr"] = lr
        g["weight_decay"] = weight_decay if g.get("apply_wd", True) else 0.0
