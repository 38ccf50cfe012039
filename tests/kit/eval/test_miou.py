"""The probe's mIoU is torchmetrics' MulticlassJaccardIndex: same numbers as the hand definition where both agree."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from crossscale_kit.eval.miou import jaccard, per_class_iou


def hand_miou(pred, target, num_classes, ignore_index=None):
    """The kit's former hand-written definition: confusion matrix, IoU per class, mean over non-empty unions."""
    keep = target != ignore_index if ignore_index is not None else torch.ones_like(target, dtype=torch.bool)
    p, t = pred[keep].long(), target[keep].long()
    conf = torch.bincount(t * num_classes + p, minlength=num_classes ** 2).reshape(num_classes, num_classes).double()
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp_min(1e-300), torch.nan)
    if ignore_index is not None and 0 <= ignore_index < num_classes:
        iou[ignore_index] = torch.nan
    valid = iou[~iou.isnan()]
    return float(valid.mean()) if valid.numel() else float("nan")


def score(pred, target, c, ignore_index=-1):
    m = jaccard(c, ignore_index)
    m.update(pred, target)
    return float(m.compute()), per_class_iou(m)


def test_known_values_with_ignore():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, -1, -1]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 0]])
    miou, iou = score(pred, target, 3)
    # class 0: tp 1, fp 1 (pred 0 on a 2), fn 1 -> 1/3; class 1: tp 2, fp 1 -> 2/3; class 2: tp 1, fn 1 -> 1/2
    np.testing.assert_allclose(iou, [1 / 3, 2 / 3, 1 / 2])
    assert miou == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)


def test_class0_counts_unless_it_is_the_ignore_index():
    target = torch.tensor([0, 1, 1, 2, 2])
    pred = torch.tensor([1, 1, 1, 2, 2])
    assert score(pred, target, 3)[0] == pytest.approx((0 + 2 / 3 + 1) / 3)  # GEO-Bench: class 0 scored
    assert score(pred, target, 3, ignore_index=0)[0] == 1.0  # --ignore-class0


def test_where_the_definitions_differ_absent_classes():
    """A class absent from labels and predictions: left out of the mean by both; per class None, not 0."""
    miou, iou = score(torch.tensor([0, 0, 1]), torch.tensor([0, 0, 1]), 5)
    assert miou == 1.0 and iou[4] is None
    assert math.isnan(score(torch.tensor([0]), torch.tensor([-1]), 3)[0])  # nothing scored: NaN in both


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(-1, 4), min_size=1, max_size=60), st.lists(st.integers(0, 4), min_size=60, max_size=60),
       st.sampled_from([-1, 0, 2]))
def test_same_numbers_as_the_hand_definition(labels, noise, ignore):
    t = torch.tensor(labels)
    p = torch.tensor(noise[: len(labels)])
    got, hand = score(p, t.clamp_min(0) if ignore != -1 else t, 5, ignore)[0], hand_miou(p, t.clamp_min(0) if ignore != -1 else t, 5, ignore)
    assert (math.isnan(got) and math.isnan(hand)) or got == pytest.approx(hand, abs=1e-6)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=60), st.lists(st.integers(0, 4), min_size=60, max_size=60))
def test_mean_iou_of_a_confusion_matrix_equals_torchmetrics(labels, noise):
    from crossscale_kit.eval.miou import mean_iou

    t = torch.tensor(labels)
    p = torch.tensor(noise[: len(labels)])
    m = jaccard(5, None)
    m.update(p, t)
    assert mean_iou(m.confmat) == pytest.approx(float(m.compute()), abs=1e-6)
