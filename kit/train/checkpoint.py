"""Atomic checkpoints that hold everything an exact resume needs, and load without running code.

Layout: ``WORKDIR/checkpoints/ckpt-00001000.pt`` and, next to it, ``ckpt-00001000.gin`` (the operative
gin config of the run). A save writes ``.ckpt-00001000.pt.tmp<pid>`` and ``os.replace``s it (as timm
does), so a kill mid-save leaves the previous checkpoints loadable; the temp files of such saves are
removed at the next start (:func:`remove_temp_files`). Pruning keeps the newest ``keep`` checkpoints
and never the one just written.

A checkpoint holds only tensors, numbers, strings and plain containers (RNG states as tensors, data
positions as plain dicts) and is loaded with ``torch.load(weights_only=True)``: a crafted ``.pt`` cannot
run code on ``--resume`` or ``tools/export.py``.
"""
from __future__ import annotations

import errno
import logging
import os
import random
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crossscale_kit.io import open_nofollow, temp_path

log = logging.getLogger(__name__)

_NAME = re.compile(r"^ckpt-(\d{8})\.pt$")
_TEMP = re.compile(r"^\..*\.tmp\d*$")
_LOW_SPACE = 1 << 20  # bytes: below this a failed write is a full disk


class CheckpointError(ValueError):
    """No usable checkpoint where one is needed, or a checkpoint that cannot be written."""


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (the previous one is intact and stays the resume point)."""


def capture_rng() -> dict[str, Any]:
    """RNG states of python, numpy and torch (CPU and every CUDA device), as tensors and numbers."""
    version, py_state, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": gauss},
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    np.random.set_state(("MT19937", npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


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


def remove_temp_files(workdir: str | os.PathLike) -> list[Path]:
    """Delete the ``.<name>.tmp<pid>`` files that interrupted saves left in the run folder.

    Call only while holding the run folder (no other process can be saving). Returns what was removed.
    """
    workdir = Path(workdir)
    removed = []
    for d in (checkpoint_dir(workdir), workdir / "export", workdir / "logs"):
        if d.is_dir():
            for p in d.iterdir():
                if _TEMP.match(p.name) and p.is_file():
                    p.unlink(missing_ok=True)
                    removed.append(p)
    return removed


def save_checkpoint(workdir: str | os.PathLike, step: int, state: dict[str, Any], gin_config: str, keep: int = 3) -> Path:
    """Write ``state`` atomically as the checkpoint of ``step``; prune to the newest ``keep``.

    Raises:
        CheckpointSaveError naming the cause (a full disk in words) and the checkpoint that stays the
        resume point; no temp file is left behind.
    """
    d = checkpoint_dir(workdir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"ckpt-{step:08d}.pt"
    tmp = temp_path(path)
    gin_tmp = temp_path(d / f"ckpt-{step:08d}.gin")
    try:
        with open_nofollow(tmp, "xb") as f:  # never through a link planted at the temp name
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        with open_nofollow(gin_tmp, "x") as f:
            f.write(gin_config)
    except (OSError, RuntimeError) as exc:
        raise _save_failed(workdir, step, d, exc) from exc
    os.replace(gin_tmp, d / f"ckpt-{step:08d}.gin")
    os.replace(tmp, path)
    prune(workdir, keep=keep, newest=path)
    return path


def _save_failed(workdir, step: int, d: Path, exc: BaseException) -> CheckpointSaveError:
    """Remove the partial files of a failed save and explain the failure."""
    free = shutil.disk_usage(d).free
    for p in d.glob(f".ckpt-{step:08d}.*.tmp{os.getpid()}"):
        p.unlink(missing_ok=True)
    full = getattr(exc, "errno", None) == errno.ENOSPC or free < _LOW_SPACE
    cause = f"the disk is full ({free / 2**20:.1f} MiB free in {d})" if full else f"{type(exc).__name__}: {exc}"
    previous = [p for s, p in list_checkpoints(workdir) if s != step]
    keep = (f"{previous[-1].name} is intact and stays the resume point" if previous
            else "there is no earlier checkpoint")
    return CheckpointSaveError(
        f"could not write the checkpoint of step {step}: {cause}. {keep}; "
        f"{'free some space (or lower train.keep_checkpoints) and ' if full else ''}continue with --resume.")


def prune(workdir: str | os.PathLike, *, keep: int, newest: Path | None = None) -> None:
    """Keep the newest ``keep`` checkpoints by step, and always ``newest`` (the one just written)."""
    if keep <= 0:
        return
    d = checkpoint_dir(workdir)
    others = [(s, p) for s, p in list_checkpoints(workdir) if p != newest]
    n_others = keep - 1 if newest is not None else keep
    for old_step, old in others[: max(0, len(others) - n_others)]:
        old.unlink(missing_ok=True)
        (d / f"ckpt-{old_step:08d}.gin").unlink(missing_ok=True)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict[str, Any]:
    """Load one checkpoint with ``weights_only=True``.

    Raises:
        CheckpointError: unreadable (truncated, corrupt) or holding objects other than tensors, numbers,
            strings and plain containers (refused, never unpickled).
    """
    path = Path(path)
    if path.is_file() and not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        raise CheckpointError(f"{path} is not a checkpoint of this kit (not the zip archive torch.save writes: another "
                              "file, or one cut short); pass a ckpt-*.pt from a run's checkpoints/ folder.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} not found; pass a ckpt-*.pt from a run's checkpoints/ folder (or "
                              "the run folder itself with --workdir).") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt or refused files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError(f"{path} holds objects other than tensors, numbers and strings; refused to "
                                  f"unpickle it (it could run code): {first[:200]}") from None
        raise CheckpointError(f"{path} could not be read ({type(exc).__name__}: {first[:200]})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{path} is not a training checkpoint of this kit (it has no 'step').")
    return state


def load_latest(workdir: str | os.PathLike, map_location="cpu") -> tuple[dict[str, Any], Path] | None:
    """The newest checkpoint that loads, or None. A corrupt newest file falls back to the previous one."""
    try:
        return load_newest(workdir, map_location)
    except CheckpointError:
        return None


def load_newest(workdir: str | os.PathLike, map_location="cpu") -> tuple[dict[str, Any], Path]:
    """The newest usable checkpoint of a run folder and its path.

    Raises:
        CheckpointError listing every checkpoint tried and why it is unusable.
    """
    tried = []
    for _, path in reversed(list_checkpoints(workdir)):
        try:
            return load_checkpoint(path, map_location), path
        except CheckpointError as exc:
            log.warning("%s; trying an older one", exc)
            tried.append(f"  - {exc}")
    where = checkpoint_dir(workdir)
    if not tried:
        raise CheckpointError(f"no checkpoint in {where}; train first (tools/train.py), or point at a run folder.")
    raise CheckpointError(f"no usable checkpoint in {where}:\n" + "\n".join(tried))
