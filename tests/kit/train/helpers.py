"""Run the train root in-process on the tiny preset."""
from __future__ import annotations

from pathlib import Path

import torch

from crossscale_kit.train.config import REPO_ROOT, parse
from crossscale_kit.train.logger import MetricsLogger

TINY = "gin/presets/test_tiny.gin"


def run(recipe: str, workdir: Path, *, bindings=(), max_steps=None, resume=False, overwrite=False, preset=TINY,
        files_after=()) -> dict:
    from crossscale_kit.train.loop import train

    files = [recipe] + ([preset] if preset else []) + list(files_after)
    parse(files, list(bindings))
    return train(workdir=str(workdir), resume=resume, overwrite=overwrite, max_steps=max_steps, recipe=files)


def losses(workdir: Path) -> list[dict]:
    return MetricsLogger.read(Path(workdir) / "logs" / "metrics.jsonl")


def final_state(workdir: Path) -> dict:
    from crossscale_kit.train.checkpoint import load_latest

    state, _ = load_latest(workdir)
    return state


def recipes() -> list[str]:
    root = REPO_ROOT / "gin"
    files = sorted(root.glob("*.gin")) + sorted((root / "ablations").glob("*.gin"))
    return [str(f.relative_to(REPO_ROOT)) for f in files]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
