"""AdamW with decay / no-decay parameter groups, driven by step schedules.

Which parameters are decayed is a rule ``no_decay(name, param) -> bool``. By default each host gets the
rule of its released code (:func:`released_no_decay`):

- LatentMIM (timm's ``param_groups_weight_decay`` plus a name list): 1-D parameters and every parameter
  whose name contains "bias", "norm" or "embed" (the patch embedding, the decoder's input embedding) are
  not decayed; the decoder's mask token and the CLS token are.
- I-JEPA: 1-D parameters and biases are not decayed; everything else is, the predictor's mask token and
  the patch embedding included. This is also the rule for any other framework.

A recipe picks another rule with ``build_adamw(no_decay=...)`` (the loop's ``train.no_decay``).
Parameters that do not require grad (EMA copies, fixed positions) are left out.
"""
from __future__ import annotations

from typing import Callable

import gin
import torch
from torch import nn

NoDecayRule = Callable[[str, torch.Tensor], bool]


@gin.register
def no_decay_biases_and_1d(name: str, param: torch.Tensor) -> bool:
    """I-JEPA's rule (and the default): biases and 1-D parameters (norm weights) are not decayed."""
    return param.ndim <= 1 or name.endswith("bias")


@gin.register
def no_decay_latentmim(name: str, param: torch.Tensor) -> bool:
    """LatentMIM's released rule: 1-D parameters and names containing "bias", "norm" or "embed"."""
    return param.ndim <= 1 or any(k in name for k in ("bias", "norm", "embed"))


def released_no_decay(model: nn.Module) -> NoDecayRule:
    """The no-decay rule of the released code of ``model``'s host (a ``SpatialAffinity`` wrapper's host)."""
    from crossscale_kit.frameworks import LatentMIM

    host = getattr(model, "host", model)
    return no_decay_latentmim if isinstance(host, LatentMIM) else no_decay_biases_and_1d


def param_groups(model: nn.Module, no_decay: NoDecayRule | None = None) -> list[dict]:
    """Two groups: parameters with weight decay (``apply_wd``) and without.

    Args:
        model: the framework (or any module); only parameters that require grad are grouped.
        no_decay: rule ``(name, param) -> True`` for parameters left undecayed; None: the host's released
            rule (:func:`released_no_decay`).
    """
    rule = no_decay or released_no_decay(model)
    decay, keep = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (keep if rule(name, p) else decay).append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "apply_wd": True, "name": "decay"})
    if keep:
        groups.append({"params": keep, "apply_wd": False, "name": "no_decay", "weight_decay": 0.0})
    return groups


def adamw_impl(device: torch.device | str) -> dict:
    """AdamW implementation kwargs for ``device``: ``fused=True`` where torch has fused kernels for it
    (CUDA, and CPU in torch >= 2.4: one kernel per dtype instead of a per-tensor op loop; on this CPU the
    tiny model's step is about 4x faster), else ``foreach=True``."""
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    kind = torch.device(device).type
    return {"fused": True} if kind in _get_fused_kernels_supported_devices() else {"foreach": True}


def build_adamw(
    model: nn.Module, betas=(0.9, 0.95), eps: float = 1e-8, no_decay: NoDecayRule | None = None
) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`, fused where the parameters' device supports it.

    Learning rate and weight decay are set per step by :func:`apply_schedules`.
    """
    groups = param_groups(model, no_decay)
    device = next((p.device for g in groups for p in g["params"]), torch.device("cpu"))
    return torch.optim.AdamW(groups, lr=0.0, betas=tuple(betas), eps=eps, weight_decay=0.0, **adamw_impl(device))


def apply_schedules(optimizer: torch.optim.Optimizer, lr: float, weight_decay: float) -> None:
    """Set this step's learning rate on every group and weight decay on the decaying ones."""
    for g in optimizer.param_groups:
        g["lr"] = lr
        g["weight_decay"] = weight_decay if g.get("apply_wd", True) else 0.0
