"""An online linear probe: how well the student's frozen patch features segment a small labelled set,
read every ``every`` optimizer steps while pretraining runs (``train.online_probe = @OnlineProbe()``).

At a probe step the student encoder (eval mode, no gradient) encodes the labelled tiles, normalised with
the run's own per-band statistics (the export's ``normalization``), optionally resized as the offline probe
does; a ``Linear(D, classes)`` head on standardised features is fitted for ``epochs`` epochs on the training
tiles and its mIoU on the held-out tiles is logged as ``probe/miou`` (with ``probe/seconds``, its cost).
It runs on rank 0, under its own random state (:func:`torch.random.fork_rng`, its own seed), so it never
moves the training's draws: a run with the probe trains bit for bit as one without it.

The labelled set is either the miniature task (:class:`crossscale_kit.eval.minitask.MiniTask`, rendered and cached on
first use, seen through the synthetic sensor) or an ``.npz`` file with ``mr`` ``(N, C, h, w)`` (integer or
float, in the units and band order the run's normalisation expects) and ``label`` ``(N, h, w)`` integers
(``ignore_index`` for unlabelled pixels); the first ``num_train`` tiles train the head, the rest are scored.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import gin
import numpy as np
import torch

from crossscale_kit.eval.minitask import (MiniTask, _fit, _LinearHead, load_split, normalise, resized, standardise_features,
                               to_tiles)


@gin.register
class OnlineProbe:
    """Linear probe of the student during pretraining (see the module docstring).

    Args:
        every: probe every this many optimizer steps (and after the last step).
        task: a :class:`MiniTask` (default: 64 training and 64 held-out tiles of the miniature task).
        data: path of an ``.npz`` labelled set instead of ``task``; ``num_train``: its training tiles.
        epochs: head epochs per reading (AdamW lr 1e-3, batch 16). resize: input resize before encoding.
        tiles_per_side: cut each labelled image into this many tiles per side first (the mini probe: 4).
        seed: the probe's own seed (head init and batch order).
    """

    def __init__(self, every: int = 100, task: MiniTask | None = None, data: str | os.PathLike | None = None,
                 num_train: int | None = None, epochs: int = 10, resize: float = 1.0, tiles_per_side: int = 1,
                 seed: int = 0) -> None:
        if int(every) != every or every < 1:
            raise ValueError(f"OnlineProbe.every must be a positive integer, got {every!r}.")
        if epochs < 1:
            raise ValueError(f"OnlineProbe.epochs must be >= 1, got {epochs!r}.")
        if task is not None and data is not None:
            raise ValueError("OnlineProbe takes either task= or data=, not both.")
        if int(tiles_per_side) != tiles_per_side or tiles_per_side < 1:
            raise ValueError(f"OnlineProbe.tiles_per_side must be a positive integer, got {tiles_per_side!r}.")
        self.every, self.epochs, self.resize, self.seed = int(every), int(epochs), float(resize), int(seed)
        self.tiles_per_side = int(tiles_per_side)
        self.task = task if task is not None or data is not None else MiniTask(num_train=64, num_val=64, num_test=1)
        self.data, self.num_train = (Path(data) if data is not None else None), num_train
        self._tiles = None

    def due(self, done: int, stop: int) -> bool:
        """Whether to probe after optimizer step ``done`` (1-based) of a run that stops at ``stop``."""
        return done % self.every == 0 or done == stop

    def tiles(self) -> tuple[np.ndarray, np.ndarray, int]:
        """``(mr (N, C, h, w), label (N, h, w), num_train)`` of the labelled set (read once)."""
        if self._tiles is None:
            if self.data is not None:
                if not self.data.is_file():
                    raise FileNotFoundError(f"OnlineProbe.data {self.data} does not exist; give an .npz with 'mr' and 'label'.")
                with np.load(self.data) as z:
                    if "mr" not in z or "label" not in z:
                        raise ValueError(f"{self.data} must hold arrays 'mr' (N, C, h, w) and 'label' (N, h, w); it has {list(z)}.")
                    mr, label = z["mr"], z["label"]
                n = self.num_train if self.num_train is not None else len(mr) // 2
                if not 0 < n < len(mr) or mr.ndim != 4 or label.shape != (mr.shape[0], *mr.shape[2:]):
                    raise ValueError(f"{self.data}: need mr (N, C, h, w), label (N, h, w) and 0 < num_train < N; "
                                     f"got mr {mr.shape}, label {label.shape}, num_train {n}.")
            else:
                tr, va = load_split(self.task, "train"), load_split(self.task, "val")
                mr, label, n = np.concatenate([tr["mr"], va["mr"]]), np.concatenate([tr["label"], va["label"]]), len(tr["mr"])
            self._tiles = (mr, label, n)
        return self._tiles

    @torch.no_grad()
    def _features(self, encoder, x: torch.Tensor, device) -> torch.Tensor:
        out = []
        for i in range(0, len(x), 64):
            out.append(encoder(x[i:i + 64].to(device), None).float().cpu())
        return torch.cat(out)

    def __call__(self, encoder: torch.nn.Module, normalization: dict | None, device) -> dict[str, float]:
        """Probe ``encoder`` (a ``ViTEncoder``); returns ``{"probe/miou", "probe/seconds"}`` (mIoU in %)."""
        t0 = time.perf_counter()
        mr, label, n = self.tiles()
        x = normalise(mr, normalization)
        if x.shape[1] != encoder.in_chans:
            raise ValueError(f"the online probe's tiles have {x.shape[1]} bands, the encoder takes {encoder.in_chans}.")
        t = self.tiles_per_side
        x = resized(to_tiles(x, t), self.resize, encoder.patch_size)
        was_training = encoder.training
        encoder.eval()
        try:
            with torch.random.fork_rng(devices=[]):
                feats = self._features(encoder, x, device)
                y = to_tiles(torch.from_numpy(label.astype(np.int64)), t)
                n = n * t * t
                data = standardise_features({"train": (feats[:n], y[:n]), "val": (feats[n:], y[n:])})
                classes = int(label.max()) + 1
                torch.manual_seed(self.seed)
                res = _fit(_LinearHead(feats.shape[-1], classes), data, epochs=self.epochs, lr=1e-3, batch_size=16,
                           seed=self.seed, num_classes=classes)
        finally:
            encoder.train(was_training)
        return {"probe/miou": 100.0 * res["val_miou"], "probe/seconds": time.perf_counter() - t0}
