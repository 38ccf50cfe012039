"""The fingerprint of a run's operative config, and the check that a resume continues the same run.

A checkpoint stores the operative gin bindings of its run (``"config"``: ``{"train.lr": "@lr/WarmupCosine()",
"lr/WarmupCosine.peak": "0.001", ...}``, every parameter of every configurable the run called, defaults
included). A resume compares them with the bindings of the new invocation: a binding that changes the
trajectory (model, schedules, run length, data) refuses the resume with a diff, as composer's autoresume
refuses a folder with another config; the bindings in :data:`MAY_CHANGE` only change how the run is
watched or stored, and may differ.
"""
from __future__ import annotations

import gin

#: bindings a resume may change: cadences, bookkeeping, the device
MAY_CHANGE = frozenset({
    "train.log_every", "train.ckpt_every", "train.keep_checkpoints", "train.tensorboard", "train.max_nonfinite",
    "train.device",
})


class ResumeMismatchError(ValueError):
    """The config of a resume differs from the run's in bindings that change the trajectory."""


def parse_bindings(config: str) -> dict[str, str]:
    """``{"selector.param" or "MACRO": "value text"}`` of a gin config string (multi-line values joined)."""
    out: dict[str, str] = {}
    key = None
    for line in config.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            key = None
            continue
        if line[0].isspace() and key is not None:  # continuation of a multi-line value
            out[key] += " " + line.strip()
            continue
        name, sep, value = line.partition(" = ")
        if sep:
            key = name.strip()
            out[key] = value.strip()
    return out


def current() -> dict[str, str]:
    """The operative bindings of this process so far (call once the run's components are built)."""
    return parse_bindings(gin.operative_config_str())


def differences(saved: dict[str, str], now: dict[str, str]) -> list[tuple[str, str | None, str | None]]:
    """``[(binding, saved value, new value)]`` for every binding that differs, ``None`` where absent."""
    keys = sorted(set(saved) | set(now))
    return [(k, saved.get(k), now.get(k)) for k in keys if saved.get(k) != now.get(k)]


def check_resume(saved: dict[str, str] | None, now: dict[str, str], *, source: str) -> list[str]:
    """Refuse a resume whose config changes the trajectory; return the allowed changes it makes.

    Args:
        saved: the ``"config"`` of the checkpoint (None for a checkpoint without one: nothing to check).
        now: the bindings of this invocation.
        source: the checkpoint, for the message.

    Raises:
        ResumeMismatchError with the diff of the refused bindings and the list of those that may change.
    """
    if saved is None:
        return []
    diff = differences(saved, now)
    refused = [d for d in diff if d[0] not in MAY_CHANGE]
    if refused:
        lines = "\n".join(f"  {k}: run has {'(unset)' if a is None else a}, now {'(unset)' if b is None else b}"
                          for k, a, b in refused)
        raise ResumeMismatchError(
            f"cannot resume from {source}: these bindings differ from the run's and would change its training "
            f"trajectory:\n{lines}\nResume with the run's own config (saved next to the checkpoint as .gin), or "
            f"start a new --workdir. A resume may change only: {', '.join(sorted(MAY_CHANGE))}.")
    return [f"{k}: {a} -> {b}" for k, a, b in diff]
