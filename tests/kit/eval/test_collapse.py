"""Collapse monitors: RankMe and the std of L2-normalised features, on features whose answer is known."""
import math

import pytest
import torch

from crossscale_kit.eval.collapse import MAX_ROWS, collapse_logs, rankme, std_of_l2_normalized


def test_rankme_counts_the_dimensions_in_use():
    g = torch.Generator().manual_seed(0)
    line = torch.randn(500, 1, generator=g) * torch.randn(1, 32, generator=g)  # every feature on one line
    assert rankme(line).item() == pytest.approx(1.0, abs=0.05)
    full = torch.randn(4000, 16, generator=g)  # isotropic: all 16 dimensions evenly
    assert 15.0 < rankme(full).item() <= 16.0
    half = torch.cat([torch.randn(4000, 8, generator=g), torch.zeros(4000, 8)], 1)
    assert 7.5 < rankme(half).item() <= 8.0
    assert rankme(full * 7.0).item() == pytest.approx(rankme(full).item(), rel=1e-4)  # scale does not matter


def test_std_of_l2_normalized_is_zero_for_a_collapse_and_one_over_sqrt_d_when_spread():
    g = torch.Generator().manual_seed(1)
    same = torch.randn(1, 64, generator=g).expand(300, 64) * torch.rand(300, 1, generator=g)  # one direction, any norm
    assert std_of_l2_normalized(same).item() == pytest.approx(0.0, abs=1e-5)
    spread = torch.randn(20000, 64, generator=g)
    assert std_of_l2_normalized(spread).item() == pytest.approx(1 / math.sqrt(64), rel=0.02)


def test_collapse_logs_read_token_grids_lazily_and_cap_the_rows():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(8, 700, 12, generator=g)  # (B, K, D): more rows than MAX_ROWS
    assert 8 * 700 > MAX_ROWS
    calls = []

    def target():
        calls.append(1)
        return z * 2

    logs = collapse_logs({"student": z, "target": target, "empty": torch.zeros(0, 12)})
    assert set(logs) == {"collapse/rankme_student", "collapse/std_student", "collapse/rankme_target", "collapse/std_target"}
    assert calls == [1]
    assert logs["collapse/rankme_target"].item() == pytest.approx(logs["collapse/rankme_student"].item(), rel=1e-4)
    assert 11.0 < logs["collapse/rankme_student"].item() <= 12.0
    with pytest.raises(ValueError, match="batch dimension"):
        rankme(torch.randn(5))


def test_non_finite_features_read_as_nan_not_an_error():
    z = torch.randn(50, 8)
    z[3, 2] = float("nan")
    z[7, 1] = float("inf")
    assert torch.isnan(rankme(z)) and torch.isnan(std_of_l2_normalized(z))
