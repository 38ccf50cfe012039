"""Mean intersection-over-union of the probes: torchmetrics' ``MulticlassJaccardIndex``, as the authors scored.

``jaccard(num_classes, ignore_index)`` is ``MulticlassJaccardIndex(average="macro")``: pixels whose label is
``ignore_index`` never count; the IoU of class ``c`` is ``TP / (TP + FP + FN)``; the mean is over the
classes whose union is non-empty (a class absent from both labels and predictions gets weight 0). That is
the definition the kit used before (and the numbers agree, tested). Where it differs from a hand-written
per-class table: torchmetrics reports such an absent class as ``zero_division`` (0) with ``average="none"``
and a split where no class occurs at all as NaN; :func:`per_class_iou` reports absent classes as None.
"""
from __future__ import annotations

import torch
from torchmetrics.classification import MulticlassJaccardIndex


def jaccard(num_classes: int, ignore_index: int | None = -1, device: str | torch.device = "cpu") -> MulticlassJaccardIndex:
    """A fresh macro ``MulticlassJaccardIndex``; ``update(pred (B, H, W), target (B, H, W))``, then ``compute()``."""
    return MulticlassJaccardIndex(num_classes=num_classes, ignore_index=ignore_index, average="macro").to(device)


def per_class_iou(metric: MulticlassJaccardIndex) -> list[float | None]:
    """IoU of every class from the metric's confusion matrix; None where the class never occurs."""
    conf = metric.confmat.double().cpu()
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    return [float(t / u) if u > 0 else None for t, u in zip(tp.tolist(), union.tolist())]


def mean_iou(conf, ignore_index: int | None = None) -> float:
    """The same macro mIoU from a ``(C, C)`` confusion matrix (rows = label), e.g. summed per-tile matrices.

    Classes with an empty union and the class ``ignore_index`` (when it is one) are left out; NaN when no
    class is left. Equals ``MulticlassJaccardIndex(average="macro")`` on the pixels the matrix counts.
    """
    conf = torch.as_tensor(conf).double()
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    keep = union > 0
    if ignore_index is not None and 0 <= ignore_index < len(tp):
        keep[ignore_index] = False
    return float((tp[keep] / union[keep]).mean()) if keep.any() else float("nan")
