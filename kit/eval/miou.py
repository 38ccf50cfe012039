"""Confusion matrix and mean intersection-over-union with an ignore index.

IoU of class ``c`` is ``TP / (TP + FP + FN)`` from the confusion matrix. Pixels whose label equals
``ignore_index`` never enter the matrix; a class index equal to ``ignore_index`` (GEO-Bench's class 0,
"no data") is left out of the mean; a class absent from both labels and predictions (union 0) has an
undefined IoU (NaN) and is left out of the mean too.
"""
from __future__ import annotations

import numpy as np
import torch


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = None) -> torch.Tensor:
    """Accumulate a ``(num_classes, num_classes)`` int64 matrix, rows = label, cols = prediction.

    Args:
        pred: ``(B, H, W)`` (or any shape) integer predictions in ``[0, num_classes)``.
        target: same shape as ``pred``; values in ``[0, num_classes)`` or ``ignore_index``.
        num_classes: number of classes ``C``.
        ignore_index: label value to skip (may lie inside or outside ``[0, C)``).

    Raises:
        ValueError if shapes differ or a label outside ``[0, C)`` is not the ignore index.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from label shape {tuple(target.shape)}.")
    pred = pred.reshape(-1).long()
    target = target.reshape(-1).long()
    keep = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    pred, target = pred[keep], target[keep]
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        bad = target[(target < 0) | (target >= num_classes)][0].item()
        raise ValueError(
            f"label value {bad} is outside [0, {num_classes}) and is not the ignore index {ignore_index}; "
            "check num_classes or the dataset's label mapping."
        )
    if pred.numel() and (int(pred.min()) < 0 or int(pred.max()) >= num_classes):
        raise ValueError(f"predictions must lie in [0, {num_classes}).")
    idx = target * num_classes + pred
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(conf: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(C,)`` float64 IoU per class from a confusion matrix; NaN where the union is empty."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1e-300), np.nan)


def mean_iou(conf: torch.Tensor | np.ndarray, ignore_index: int | None = None) -> float:
    """Mean IoU over the classes with a non-empty union, leaving out ``ignore_index`` if it is a class.

    Returns:
        a float in ``[0, 1]`` (NaN if no class has any pixel).
    """
    iou = iou_per_class(conf)
    if ignore_index is not None and 0 <= ignore_index < len(iou):
        iou = np.delete(iou, ignore_index)
    valid = iou[~np.isnan(iou)]
    return float(valid.mean()) if valid.size else float("nan")
