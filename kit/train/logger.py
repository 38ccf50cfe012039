"""Metrics logging: JSONL + CSV + TensorBoard on rank 0, and a loss-curve PNG at the end."""
from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path

from crossscale_kit.io import open_nofollow, write_text_atomic
from crossscale_kit.train.figure import plot_run

log = logging.getLogger(__name__)


class MetricsLogger:
    """Appends one row per logged step to ``metrics.jsonl`` and ``metrics.csv`` and to TensorBoard.

    Args:
        workdir: run folder; files land in ``WORKDIR/logs``.
        resume_step: when resuming, rows with ``step > resume_step`` (written after the checkpoint by a
            run that was then killed) are dropped so the log reads as one uninterrupted run.
        enabled: False on ranks other than 0.
        tensorboard: also write TensorBoard event files.
    """

    def __init__(self, workdir: str | os.PathLike, resume_step: int | None = None, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.dir = Path(workdir) / "logs"
        self.jsonl = self.dir / "metrics.jsonl"
        self.csv = self.dir / "metrics.csv"
        self._tb = None
        self._fields: list[str] | None = None
        if not enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        rows = self.read(self.jsonl)
        if resume_step is None:
            rows = []
        else:
            rows = [r for r in rows if r["step"] <= resume_step]
        self._rewrite(rows)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.dir / "tb"), purge_step=(resume_step + 1) if resume_step is not None else None)
            except Exception as exc:  # tensorboard missing: keep the text logs
                log.warning("TensorBoard logging disabled (%s)", exc)

    @staticmethod
    def read(path: str | os.PathLike) -> list[dict]:
        path = Path(path)
        if not path.exists():
            return []
        rows = []
        for line in path.read_text().splitlines():
            line = line.strip()
            if line:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut by a kill
                    continue
        return rows

    def _rewrite(self, rows: list[dict]) -> None:
        write_text_atomic(self.jsonl, "".join(json.dumps(r) + "\n" for r in rows))
        self._fields = None
        if rows:
            self._fields = list(dict.fromkeys(k for r in rows for k in r))
        with open_nofollow(self.csv, "w", newline="") as f:
            if rows:
                w = csv.DictWriter(f, fieldnames=self._fields)
                w.writeheader()
                w.writerows(rows)

    def log(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        with open_nofollow(self.jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self._fields is None or any(k not in self._fields for k in row):
            self._fields = list(dict.fromkeys([*(self._fields or []), *row]))
            self._rewrite(self.read(self.jsonl))
        else:
            with open_nofollow(self.csv, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=self._fields).writerow(row)
        if self._tb is not None:
            for k, v in row.items():
                if k != "step":
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
            self._tb = None

    def plot(self, out: str | os.PathLike | None = None, title: str = "") -> Path | None:
        """The run's figure (see :func:`crossscale_kit.train.figure.plot_run`): losses, lr, EMA momentum."""
        if not self.enabled:
            return None
        return plot_run(self.read(self.jsonl), Path(out) if out else self.dir / "loss_curves.png", title)
