"""torch.compile of a model that calls gram_loss does not graph-break, and matches eager."""
from __future__ import annotations

import pytest
import torch

import crossscale_kernels
from tests.kernels.conftest import needs_triton, needs_triton_installed


class _Toy(torch.nn.Module):
    def __init__(self, backend, form):
        super().__init__()
        self.proj = torch.nn.Linear(6, 6)
        self.backend, self.form = backend, form

    def forward(self, x, teacher):
        return crossscale_kernels.gram_loss(self.proj(x), teacher, backend=self.backend, form=self.form)


@pytest.mark.parametrize("backend,form", [("torch", "nxn"), ("torch", "dxd"),
                                          pytest.param("triton", "nxn", marks=needs_triton),
                                          pytest.param("triton", "dxd", marks=needs_triton)])
def test_compile_fullgraph_matches_eager(backend, form):
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = _Toy(backend, form)
    x, t = torch.randn(2, 9, 6), torch.randn(2, 9, 6)
    eager = model(x, t)
    eager.backward()
    g_eager = model.proj.weight.grad.clone()
    model.zero_grad()
    # fullgraph=True turns any graph break into an error; aot_eager exercises the fake impl and autograd.
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    out = compiled(x, t)
    out.backward()
    assert torch.allclose(out, eager, rtol=1e-6, atol=1e-9)
    assert torch.allclose(model.proj.weight.grad, g_eager, rtol=1e-5, atol=1e-9)


@needs_triton_installed
def test_custom_op_fake_impl_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        s = torch.empty(3, 7, 5)
        loss, grad = torch.ops.crossscale_kernels.gram_fused(s, torch.empty(3, 7, 5), "nxn", False, "auto", True)
        assert loss.shape == (3,) and loss.dtype == torch.float32 and grad.shape == (3, 7, 5)
        _, nograd = torch.ops.crossscale_kernels.gram_fused(s, torch.empty(3, 7, 5), "dxd", False, "auto", False)
        assert nograd.numel() == 0


@needs_triton
def test_custom_op_passes_opcheck():
    s = torch.randn(2, 5, 4, requires_grad=True)
    t = torch.randn(2, 5, 4)
    torch.library.opcheck(torch.ops.crossscale_kernels.gram_fused.default, (s, t, "nxn", False, "auto", True),
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))
