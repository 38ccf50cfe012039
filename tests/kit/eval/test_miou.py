import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kit.eval.miou import confusion_matrix, iou_per_class, mean_iou


def test_known_values_with_ignore():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, -1, -1]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 0]])
    conf = confusion_matrix(pred, target, 3, ignore_index=-1)
    assert conf.sum() == 6  # the two ignored pixels never enter
    iou = iou_per_class(conf)
    # class 0: tp 1, fp 1 (pred 0 on a 2), fn 1 -> 1/3; class 1: tp 2, fp 1 -> 2/3; class 2: tp 1, fn 1 -> 1/2
    np.testing.assert_allclose(iou, [1 / 3, 2 / 3, 1 / 2])
    assert mean_iou(conf, -1) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)


def test_ignore_class_inside_range_is_left_out_of_mean():
    target = torch.tensor([0, 1, 1, 2, 2])
    pred = torch.tensor([1, 1, 1, 2, 2])
    conf = confusion_matrix(pred, target, 3, ignore_index=0)
    assert mean_iou(conf, 0) == 1.0


def test_absent_class_is_not_counted():
    conf = confusion_matrix(torch.tensor([0, 0, 1]), torch.tensor([0, 0, 1]), 5)
    assert math.isnan(iou_per_class(conf)[4])
    assert mean_iou(conf) == 1.0


def test_bad_label_is_a_clear_error():
    with pytest.raises(ValueError, match="label value 7"):
        confusion_matrix(torch.tensor([0]), torch.tensor([7]), 3, ignore_index=-1)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.zeros(2), torch.zeros(3), 3)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=40), st.lists(st.integers(0, 3), min_size=40, max_size=40))
def test_perfect_prediction_is_one_and_range(labels, noise):
    t = torch.tensor(labels)
    assert mean_iou(confusion_matrix(t, t, 4)) == 1.0
    p = torch.tensor(noise[: len(labels)])
    m = mean_iou(confusion_matrix(p, t, 4))
    assert 0.0 <= m <= 1.0
