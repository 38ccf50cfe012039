"""Atomic checkpoints that hold everything an exact resume needs.

Layout: ``WORKDIR/checkpoints/ckpt-00001000.pt`` and, next to it, ``ckpt-00001000.gin`` (the operative
gin config of the run). A save writes ``.ckpt-00001000.pt.tmp<pid>`` and ``os.replace``s it, so a kill
mid-save leaves the previous checkpoints loadable. The newest ``keep`` checkpoints are kept.
"""
from __future__ import annotations

import logging
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

_NAME = re.compile(r"^ckpt-(\d{8})\.pt$")


def capture_rng() -> dict[str, Any]:
    """RNG states of python, numpy, torch (CPU and every CUDA device)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dir(workdir: str | os.PathLike) -> Path:
    return Path(workdir) / "checkpoints"


def list_checkpoints(workdir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``[(step, path), ...]`` sorted by step; temporary files are ignored."""
    d = checkpoint_dir(workdir)
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        m = _NAME.match(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def save_checkpoint(workdir: str | os.PathLike, step: int, state: dict[str, Any], gin_config: str, keep: int = 3) -> Path:
    """Write ``state`` atomically as the checkpoint of ``step``; prune to the newest ``keep``."""
    d = checkpoint_dir(workdir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"ckpt-{step:08d}.pt"
    tmp = d / f".{path.name}.tmp{os.getpid()}"
    torch.save(state, tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    gin_tmp = d / f".ckpt-{step:08d}.gin.tmp{os.getpid()}"
    gin_tmp.write_text(gin_config)
    os.replace(gin_tmp, d / f"ckpt-{step:08d}.gin")
    os.replace(tmp, path)
    if keep > 0:
        for old_step, old in list_checkpoints(workdir)[:-keep]:
            old.unlink(missing_ok=True)
            (d / f"ckpt-{old_step:08d}.gin").unlink(missing_ok=True)
    return path


def load_latest(workdir: str | os.PathLike, map_location="cpu") -> tuple[dict[str, Any], Path] | None:
    """The newest checkpoint that loads, or None. A corrupt newest file falls back to the previous one."""
    for step, path in reversed(list_checkpoints(workdir)):
        try:
            return torch.load(path, map_location=map_location, weights_only=False), path
        except Exception as exc:  # truncated or corrupt: try an older one
            log.warning("checkpoint %s could not be read (%s); trying an older one", path, exc)
    return None
