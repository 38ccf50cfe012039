"""``torch.compile`` for a framework: its networks and losses compiled, its Python mask draws left eager."""
from __future__ import annotations

from torch import nn

from crossscale_kit.frameworks.base import Framework


def compile_framework(model: nn.Module, **compile_kwargs) -> list[str]:
    """``torch.compile`` every network and loss module of a framework in place; returns their names.

    Frameworks (an add-on's host) and module containers are walked into; their own ``forward`` stays
    eager, because it draws patch masks in Python from the step's generator (a graph break per draw).
    Names, parameters and state dicts are unchanged (``nn.Module.compile``), so checkpoints, the EMA and
    the export see the same modules. A module shared by two owners (the SA teacher is the host's EMA
    encoder) is compiled once.
    """
    done: list[str] = []
    seen: set[int] = set()

    def walk(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            if id(child) in seen:
                continue
            seen.add(id(child))
            path = f"{prefix}{name}"
            if isinstance(child, (Framework, nn.ModuleDict, nn.ModuleList)):
                walk(child, path + ".")
            else:
                child.compile(**compile_kwargs)
                done.append(path)

    walk(model, "")
    return done
