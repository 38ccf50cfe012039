"""Bad input gets an error that names the bad value and the fix."""
from __future__ import annotations

import warnings

import pytest
import torch

import crossscale_kernels
from crossscale_kernels.reference import gram_loss_reference
from tests.kernels.conftest import ON_CUDA, needs_triton

BACKENDS = ["torch", pytest.param("triton", marks=needs_triton)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_shapes_that_differ(backend):
    with pytest.raises(ValueError, match=r"same \(B, N\).*\(2, 5, 4\).*\(2, 6, 4\)"):
        crossscale_kernels.gram_loss(torch.randn(2, 5, 4), torch.randn(2, 6, 4), backend=backend)
    with pytest.raises(ValueError, match=r"same \(B, N\)"):
        crossscale_kernels.gram_loss(torch.randn(2, 5, 4), torch.randn(3, 5, 4), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_rank(backend):
    with pytest.raises(ValueError, match=r"\(B, N, D\).*reshape"):
        crossscale_kernels.gram_loss(torch.randn(5, 4), torch.randn(5, 4), backend=backend)
    with pytest.raises(ValueError, match=r"\(B, N, D\)"):
        crossscale_kernels.gram_loss(torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_integer_dtypes(backend, dtype):
    ints = torch.ones(2, 3, 4, dtype=dtype)
    with pytest.raises(TypeError, match=f"{dtype}.*floating-point"):
        crossscale_kernels.gram_loss(ints, torch.randn(2, 3, 4), backend=backend)
    with pytest.raises(TypeError, match="teacher"):
        crossscale_kernels.gram_loss(torch.randn(2, 3, 4), ints, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_teacher_requiring_grad_is_detached_with_a_warning(backend):
    s = torch.randn(2, 5, 4, requires_grad=True)
    t = torch.randn(2, 5, 4, requires_grad=True)
    with pytest.warns(UserWarning, match=r"teacher requires grad.*detach"):
        loss = crossscale_kernels.gram_loss(s, t, backend=backend)
    loss.backward()
    assert t.grad is None and s.grad is not None
    assert torch.allclose(loss, gram_loss_reference(s, t), rtol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        crossscale_kernels.gram_loss(s, t.detach(), backend=backend)  # the documented fix silences it


@pytest.mark.parametrize("kw,match", [
    ({"reduction": "avg"}, "reduction='avg'"),
    ({"backend": "cuda"}, "backend='cuda'"),
    ({"form": "NxN"}, "form='NxN'"),
    ({"precision": "fp8"}, "precision='fp8'"),
])
def test_unknown_options(kw, match):
    with pytest.raises(ValueError, match=match):
        crossscale_kernels.gram_loss(torch.randn(1, 3, 4), torch.randn(1, 3, 4), **kw)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dxd_refuses_remove_neg_and_auto_falls_back(backend):
    s, t = torch.randn(2, 40, 3), torch.randn(2, 40, 3)  # N >> D: auto would pick d x d
    assert crossscale_kernels.choose_form(40, 3, backend=backend) == "dxd"
    with pytest.raises(ValueError, match="remove_neg has no d x d form.*form='nxn'"):
        crossscale_kernels.gram_loss(s, t, remove_neg=True, form="dxd", backend=backend)
    assert crossscale_kernels.choose_form(40, 3, remove_neg=True, backend=backend) == "nxn"
    got = crossscale_kernels.gram_loss(s, t, remove_neg=True, backend=backend)
    assert torch.allclose(got, gram_loss_reference(s, t, remove_neg=True), rtol=1e-5)


def test_dxd_refuses_unequal_feature_sizes():
    with pytest.raises(ValueError, match="equal feature sizes.*student 4 and teacher 6"):
        crossscale_kernels.gram_loss(torch.randn(1, 30, 4), torch.randn(1, 30, 6), form="dxd")
    assert crossscale_kernels.choose_form(30, 4, 6) == "nxn"


@needs_triton
def test_triton_refuses_float64():
    with pytest.raises(TypeError, match="float64.*backend='torch'"):
        crossscale_kernels.gram_loss(torch.randn(1, 3, 4, dtype=torch.float64), torch.randn(1, 3, 4, dtype=torch.float64),
                          backend="triton")


@pytest.mark.skipif(ON_CUDA, reason="interpreter-only limitation")
@needs_triton
def test_bf16_nxn_under_interpreter_is_refused_not_garbage():
    s = torch.randn(1, 20, 16, dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match="bf16.*TRITON_INTERPRET.*backend='torch'"):
        crossscale_kernels.gram_loss(s, s, backend="triton", form="nxn")


def test_auto_backend_on_cpu_is_torch_and_choose_form_rule():
    # The rule is a documented ratio, not a guess per call.
    assert crossscale_kernels.choose_form(100, 100) == "nxn"
    assert crossscale_kernels.choose_form(int(crossscale_kernels.NXN_MAX_RATIO * 100), 100) == "nxn"
    assert crossscale_kernels.choose_form(int(crossscale_kernels.NXN_MAX_RATIO * 100) + 1, 100) == "dxd"
    assert crossscale_kernels.choose_form(4096, 384, backend="torch") == "dxd"
    assert crossscale_kernels.choose_form(196, 384, backend="torch") == "nxn"
