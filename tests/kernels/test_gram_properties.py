"""Hypothesis: the gram-loss invariants (spine issue) on ``crossscale_kernels.gram_loss``, torch and Triton backends."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import crossscale_kernels
from crossscale_kernels.reference import gram_loss_reference
from tests.kernels.conftest import needs_triton

BACKENDS = ["torch", pytest.param("triton", marks=needs_triton)]
# The interpreter is slow: small shapes, few examples.
SETTINGS = settings(max_examples=10, deadline=None)


@st.composite
def token_pairs(draw, max_b=3, max_n=12, max_d=10):
    b = draw(st.integers(1, max_b))
    n = draw(st.integers(1, max_n))
    d = draw(st.integers(1, max_d))
    rho = draw(st.sampled_from([0.05, 0.3, 2.0]))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, n, d, generator=g)
    t = s + rho * torch.randn(b, n, d, generator=g)
    return s, t, seed


def _loss_grad(s, t, **kw):
    x = s.detach().clone().requires_grad_()
    loss = crossscale_kernels.gram_loss(x, t, **kw)
    loss.backward()
    return loss.detach().double(), x.grad.double()


def _gatol(s, c=1e-6):
    """Absolute floor for gradient comparisons where the true gradient is ~0 (N = 1, D = 1).

    Rounding of ``r (g - (g.z) z)`` with ``|g_i| <= 8/N`` and ``r`` the largest inverse token norm.
    """
    r = 1.0 / s.double().norm(dim=-1).clamp_min(1e-3).min().item()
    return c * 8.0 / s.shape[1] * r


def _dxd_atol(s, t, c=1e-6):
    """fp32 rounding floor of the d x d loss: its terms are of size ``|Delta|^2 (|Delta|^2 + 4 N) / N^2``.

    Small when the tokens nearly agree; when they differ by a rotation that leaves the grams equal
    (the loss is then ~0) the terms still cancel only to fp32 precision.
    """
    zs = torch.nn.functional.normalize(s.double(), dim=-1)
    zt = torch.nn.functional.normalize(t.double(), dim=-1)
    dd = (zs - zt).pow(2).sum(dim=(1, 2))
    n = s.shape[1]
    return 1e-7 + c * (dd * (dd + 4 * n)).max().item() / n**2


def _atol(form, s, t):
    return 1e-7 if form == "nxn" else _dxd_atol(s, t)


def _close(a, b, rtol=1e-4, atol=1e-7):
    return abs(a.item() - b.item()) <= rtol * max(abs(a.item()), abs(b.item())) + atol


FORMS = ["nxn", "dxd"]


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(pair=token_pairs(), form=st.sampled_from(FORMS))
def test_zero_for_equal_inputs(backend, pair, form):
    s, _, _ = pair
    loss, grad = _loss_grad(s, s.clone(), backend=backend, form=form)
    assert abs(loss.item()) <= 1e-10
    assert grad.abs().max().item() <= _gatol(s, 1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(pair=token_pairs(), form=st.sampled_from(FORMS), data=st.data())
def test_invariant_to_per_token_positive_scale(backend, pair, form, data):
    s, t, seed = pair
    g = torch.Generator().manual_seed(seed + 1)
    cs = torch.exp(torch.empty(*s.shape[:2], 1).uniform_(-2.0, 2.0, generator=g))
    ct = torch.exp(torch.empty(*s.shape[:2], 1).uniform_(-2.0, 2.0, generator=g))
    base, gbase = _loss_grad(s, t, backend=backend, form=form)
    scaled, gscaled = _loss_grad(s * cs, t * ct, backend=backend, form=form)
    # fp32 d x d sums O(1) terms that cancel when the grams agree: absolute error ~1e-7 per term
    assert _close(base, scaled, atol=max(_atol(form, s, t), 1e-6 if form == "dxd" else 0.0))
    # d/dx of a scale-invariant function scales as 1/c.
    assert torch.allclose(gscaled * cs.double(), gbase, rtol=1e-3, atol=_gatol(s * cs, 1e-5))


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(pair=token_pairs(), form=st.sampled_from(FORMS))
def test_invariant_to_orthogonal_rotation_of_features(backend, pair, form):
    s, t, seed = pair
    d = s.shape[-1]
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    q = q.float()
    base, gbase = _loss_grad(s, t, backend=backend, form=form)
    rot, grot = _loss_grad(s @ q, t @ q, backend=backend, form=form)
    assert _close(base, rot, rtol=1e-4, atol=max(1e-6, _atol(form, s, t)))
    # The gradient rotates with the features.
    assert torch.allclose(grot, gbase @ q.double(), rtol=1e-3, atol=_gatol(s, 1e-5))


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(pair=token_pairs(), form=st.sampled_from(FORMS), remove_neg=st.booleans())
def test_equivariant_to_joint_token_permutation(backend, pair, form, remove_neg):
    s, t, seed = pair
    if remove_neg:
        form = "nxn"
    perm = torch.randperm(s.shape[1], generator=torch.Generator().manual_seed(seed))
    base, gbase = _loss_grad(s, t, backend=backend, form=form, remove_neg=remove_neg)
    per, gper = _loss_grad(s[:, perm], t[:, perm], backend=backend, form=form, remove_neg=remove_neg)
    assert _close(base, per, rtol=1e-5, atol=_atol(form, s, t))
    assert torch.allclose(gper, gbase[:, perm], rtol=1e-4, atol=_gatol(s))


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(pair=token_pairs(max_n=8), form=st.sampled_from(FORMS), remove_neg=st.booleans())
def test_img_level_false_is_the_gram_of_the_flattened_batch(backend, pair, form, remove_neg):
    s, t, _ = pair
    if remove_neg:
        form = "nxn"
    b, n, d = s.shape
    flat, gflat = _loss_grad(s, t, backend=backend, form=form, img_level=False, remove_neg=remove_neg)
    one, gone = _loss_grad(s.reshape(1, b * n, d), t.reshape(1, b * n, d), backend=backend, form=form,
                           remove_neg=remove_neg)
    atol = _atol(form, s.reshape(1, b * n, d), t.reshape(1, b * n, d))
    assert _close(flat, one, rtol=1e-5, atol=atol)
    assert torch.allclose(gflat, gone.reshape(b, n, d), rtol=1e-4, atol=_gatol(s))
    ref = gram_loss_reference(s.double(), t.double(), img_level=False, remove_neg=remove_neg)
    assert _close(flat, ref, rtol=1e-4, atol=atol)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(pair=token_pairs())
def test_dxd_form_equals_nxn_form(backend, pair):
    s, t, _ = pair
    a, ga = _loss_grad(s, t, backend=backend, form="nxn")
    b, gb = _loss_grad(s, t, backend=backend, form="dxd")
    assert _close(a, b, rtol=1e-4, atol=_dxd_atol(s, t))
    assert (ga - gb).norm().item() <= 1e-3 * ga.norm().item() + _gatol(s) * s.numel() ** 0.5


@SETTINGS
@given(pair=token_pairs(), form=st.sampled_from(FORMS))
def test_symmetric_in_student_and_teacher_value(pair, form):
    s, t, _ = pair
    assert _close(crossscale_kernels.gram_loss(s, t, form=form), crossscale_kernels.gram_loss(t, s, form=form), rtol=1e-4,
                  atol=_atol(form, s, t))


@needs_triton
@SETTINGS
@given(pair=token_pairs(), form=st.sampled_from(FORMS), remove_neg=st.booleans())
def test_triton_agrees_with_torch(pair, form, remove_neg):
    s, t, _ = pair
    if remove_neg:
        form = "nxn"
    a, ga = _loss_grad(s, t, backend="torch", form=form, remove_neg=remove_neg)
    b, gb = _loss_grad(s, t, backend="triton", form=form, remove_neg=remove_neg)
    assert _close(a, b, rtol=1e-4, atol=_atol(form, s, t))
    assert (ga - gb).norm().item() <= 1e-3 * ga.norm().item() + _gatol(s) * s.numel() ** 0.5
