"""Value and gradient of every backend and form against a float64 oracle, over awkward shapes."""
from __future__ import annotations

import pytest
import torch

import crossscale_kernels
from crossscale_kernels.reference import gram_loss_reference
from tests.kernels.conftest import DEVICE, TOL, TORCH_DTYPES, TRITON_DTYPES, needs_triton, needs_triton_installed

SHAPES = [(1, 1, 3), (2, 7, 5), (3, 13, 17), (2, 31, 37), (1, 40, 24), (3, 5, 40), (1, 17, 1)]


def _pair(shape, dtype, *, rho=0.3, seed=0, dt=None):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(*shape, generator=g, dtype=torch.float64)
    t_shape = shape if dt is None else (*shape[:2], dt)
    if dt is None:
        t = s + rho * torch.randn(*shape, generator=g, dtype=torch.float64)
    else:
        t = torch.randn(*t_shape, generator=g, dtype=torch.float64)
    return s.to(DEVICE, dtype), t.to(DEVICE, dtype)


def _oracle(s, t, **kw):
    x = s.detach().double().requires_grad_()
    loss = gram_loss_reference(x, t.double(), **kw)
    loss.sum().backward()
    return loss.detach(), x.grad


def _run(s, t, **kw):
    x = s.detach().clone().requires_grad_()
    loss = crossscale_kernels.gram_loss(x, t, **kw)
    loss.sum().backward()
    return loss.detach(), x.grad


def _grad_floor(s, tg):
    """Absolute floor of the gradient check: rounding of ``r (g - (g.z) z)`` with ``|g_i| <= 8/N``.

    Needed where the true gradient is ~0 (D = 1, where the projection removes everything; N = 1).
    """
    norms = s.double().norm(dim=-1)
    r = 1.0 / norms[norms > 1e-6].min().item() if (norms > 1e-6).any() else 1.0
    return 0.1 * tg * 8.0 / s.shape[1] * r * s.numel() ** 0.5


def _assert_close(loss, grad, ref_loss, ref_grad, dtype, what, s=None):
    tl, tg = TOL[dtype]
    floor = 1e-7 if s is None else _grad_floor(s, tg)
    assert loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32), what
    assert grad.dtype == dtype, what
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all(), what
    err_l = (loss.double() - ref_loss).abs().max().item()
    assert err_l <= tl * ref_loss.abs().max().item() + 1e-7, f"{what}: loss error {err_l:.3e}"
    err_g = (grad.double() - ref_grad).norm().item()
    assert err_g <= tg * ref_grad.norm().item() + floor, f"{what}: gradient error {err_g:.3e}"


CASES = [("torch", "nxn", dt) for dt in TORCH_DTYPES] + [("torch", "dxd", dt) for dt in TORCH_DTYPES]
CASES += [pytest.param("triton", f, dt, marks=needs_triton) for f in ("nxn", "dxd") for dt in TRITON_DTYPES]


@pytest.mark.parametrize("backend,form,dtype", CASES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_float64_oracle(backend, form, dtype, shape):
    s, t = _pair(shape, dtype)
    ref = _oracle(s, t)
    out = _run(s, t, backend=backend, form=form)
    _assert_close(*out, *ref, dtype, f"{backend}/{form}/{dtype}/{shape}", s=s)


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_triton)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("shape", [(2, 7, 5), (3, 19, 11), (1, 33, 40)], ids=lambda s: "x".join(map(str, s)))
def test_remove_neg(backend, dtype, shape):
    # Independent tokens: about half of the similarities are negative, so the clamp matters.
    s, t = _pair(shape, dtype, dt=shape[-1], seed=1)
    ref = _oracle(s, t, remove_neg=True)
    out = _run(s, t, backend=backend, form="nxn", remove_neg=True)
    _assert_close(*out, *ref, dtype, f"remove_neg {backend}")
    plain = _oracle(s, t)[0]
    assert not torch.allclose(ref[0], plain), "test data must exercise the clamp"


@pytest.mark.parametrize("backend,form", [("torch", "nxn"), ("torch", "dxd"),
                                          pytest.param("triton", "nxn", marks=needs_triton),
                                          pytest.param("triton", "dxd", marks=needs_triton)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_img_level_false_and_reductions(backend, form, reduction):
    s, t = _pair((3, 6, 7), torch.float32, seed=2)
    for img_level in (True, False):
        ref_loss, ref_grad = _oracle(s, t, img_level=img_level, reduction=reduction)
        loss, grad = _run(s, t, backend=backend, form=form, img_level=img_level, reduction=reduction)
        assert loss.shape == ref_loss.shape
        _assert_close(loss, grad, ref_loss, ref_grad, torch.float32, f"img_level={img_level} {reduction}")


@pytest.mark.parametrize("backend,form", [("torch", "nxn"), ("torch", "dxd"),
                                          pytest.param("triton", "nxn", marks=needs_triton),
                                          pytest.param("triton", "dxd", marks=needs_triton)])
def test_non_contiguous_inputs(backend, form):
    s, t = _pair((3, 11, 9), torch.float32, seed=3)
    # Same values, exotic strides: transposed storage for the student, a feature-strided teacher.
    s_nc = s.transpose(1, 2).contiguous().transpose(1, 2)
    t_nc = torch.cat([t, t], dim=-1)[..., ::2]
    assert not s_nc.is_contiguous() and not t_nc.is_contiguous()
    ref = _oracle(s, t)
    out = _run(s_nc, t_nc, backend=backend, form=form)
    _assert_close(*out, *ref, torch.float32, "non-contiguous")


@pytest.mark.parametrize("remove_neg", [False, True])
@pytest.mark.parametrize("backend,form", [("torch", "nxn"), ("torch", "dxd"),
                                          pytest.param("triton", "nxn", marks=needs_triton),
                                          pytest.param("triton", "dxd", marks=needs_triton)])
def test_zero_norm_tokens_are_finite_and_match(backend, form, remove_neg):
    if remove_neg and form == "dxd":
        pytest.skip("no d x d form of remove_neg")
    s, t = _pair((2, 9, 6), torch.float32, seed=4)
    s[0, 3] = 0.0
    t[1, 2] = 0.0
    t[0, 5] = 0.0
    ref = _oracle(s, t, remove_neg=remove_neg)
    out = _run(s, t, backend=backend, form=form, remove_neg=remove_neg)
    assert not torch.isnan(out[1]).any()
    # F.normalize's eps clamp makes the zero token's gradient g/eps: huge but finite, matched too.
    _assert_close(*out, *ref, torch.float32, "zero tokens")


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_triton)])
def test_teacher_with_other_feature_size_nxn(backend):
    s, t = _pair((2, 10, 12), torch.float32, dt=20, seed=5)
    ref = _oracle(s, t)
    out = _run(s, t, backend=backend, form="auto")
    _assert_close(*out, *ref, torch.float32, "teacher D' != D")


@needs_triton
@pytest.mark.parametrize("precision", ["ieee", "tf32x3", "tf32"])
@pytest.mark.parametrize("form", ["nxn", "dxd"])
def test_precision_modes_run(precision, form):
    s, t = _pair((2, 13, 10), torch.float32, seed=6)
    ref = _oracle(s, t)
    out = _run(s, t, backend="triton", form=form, precision=precision)
    if precision == "tf32" and DEVICE == "cuda":
        tl_, tg = 5e-3, 5e-3  # single-pass TF32 on a GPU
        assert (out[0].double() - ref[0]).abs().item() <= tl_ * ref[0].item()
        assert (out[1].double() - ref[1]).norm().item() <= tg * ref[1].norm().item()
    else:
        _assert_close(*out, *ref, torch.float32, precision)


@needs_triton
@pytest.mark.parametrize("form", ["nxn", "dxd"])
def test_triton_is_bitwise_deterministic(form):
    s, t = _pair((3, 37, 21), torch.float32, seed=7)
    a = _run(s, t, backend="triton", form=form)
    b = _run(s, t, backend="triton", form=form)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@needs_triton
def test_no_grad_forward_skips_gradient_and_matches():
    s, t = _pair((2, 9, 8), torch.float32, seed=8)
    with torch.no_grad():
        loss = crossscale_kernels.gram_loss(s, t, backend="triton")
    assert torch.allclose(loss.double(), _oracle(s, t)[0], rtol=1e-5)


@pytest.mark.parametrize("rho", [1e-2, 1e-3])
@pytest.mark.parametrize("backend,form", [("torch", "dxd"), pytest.param("triton", "dxd", marks=needs_triton),
                                          pytest.param("triton", "nxn", marks=needs_triton)])
def test_small_mismatch_stays_accurate(backend, form, rho):
    """The textbook d x d loss cancels (error ~1e-7/rho^2); ours stays near fp32 accuracy / rho."""
    s, t = _pair((2, 40, 16), torch.float32, rho=rho, seed=9)
    ref_loss, ref_grad = _oracle(s, t)
    loss, grad = _run(s, t, backend=backend, form=form)
    assert abs(loss.item() - ref_loss.item()) <= 1e-6 / rho * ref_loss.item()
    assert (grad.double() - ref_grad).norm().item() <= 1e-5 / rho * ref_grad.norm().item()


@needs_triton
@pytest.mark.parametrize("in_registers", [True, False], ids=["grad-in-registers", "grad-buffer"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("remove_neg", [False, True])
@pytest.mark.parametrize("shape", [(2, 7, 5), (3, 13, 17), (2, 31, 37)], ids=lambda s: "x".join(map(str, s)))
def test_both_nxn_gradient_kernels_match_the_oracle(in_registers, dtype, remove_neg, shape):
    """The register-accumulator kernel (default for D <= 512 on the GPU) and the general one with its
    fp32 gradient buffer (larger D, the split mode) compute the same thing."""
    from crossscale_kernels.gram.launch import launch_nxn

    s, t = _pair(shape, dtype, dt=shape[-1] if remove_neg else None, seed=10)
    ref_loss, ref_grad = _oracle(s, t, remove_neg=remove_neg, reduction="none")
    loss, grad = launch_nxn(s, t, remove_neg, "auto", True, grad_in_registers=in_registers)
    _assert_close(loss, grad, ref_loss, ref_grad, dtype, f"in_registers={in_registers}", s=s)


@needs_triton
@pytest.mark.parametrize("precision", ["auto", "ieee"])
def test_fp16_split_mode_matches_the_oracle(precision):
    """16-bit ``precision="ieee"`` splits E into hi + lo halves (general kernel); "auto" rounds E once."""
    s, t = _pair((2, 21, 24), torch.float16, seed=11)
    _assert_close(*_run(s, t, backend="triton", form="nxn", precision=precision), *_oracle(s, t),
                  torch.float16, precision, s=s)


@needs_triton
def test_forcing_the_register_kernel_where_it_cannot_run_is_refused():
    from crossscale_kernels.gram.launch import launch_nxn

    s, t = _pair((1, 5, 8), torch.float16, seed=12)
    with pytest.raises(ValueError, match="register-gradient kernel"):
        launch_nxn(s, t, False, "ieee", True, grad_in_registers=True)


@needs_triton_installed
def test_scratch_plan_meets_the_memory_goal_of_the_large_n_case():
    """B = 64, N = 4096, D = 384 in bf16 (the d x d form): temporaries <= 0.2x the gradient, so with the
    gradient itself the peak extra memory stays <= 1.2x; eager would hold B x N x N grams (~13 GB)."""
    from crossscale_kernels.gram.plan import SCRATCH_FRACTION, scratch_plan

    plan = scratch_plan("dxd", (64, 4096, 384), 384, torch.bfloat16, "auto", True, num_sms=132, interpret=False)
    assert plan["launch_bytes"] <= SCRATCH_FRACTION * plan["grad_bytes"]
    assert 1 <= plan["images"] < 64
    # 16-bit N x N with the gradient in registers needs no per-image buffers beyond the inverse norms.
    reg = scratch_plan("nxn", (256, 1024, 384), 384, torch.bfloat16, "auto", True, num_sms=132, interpret=False)
    assert reg["per_image"] == 2 * 1024 * 4 and reg["images"] == 256


@needs_triton_installed
def test_scratch_plan_keeps_every_sm_busy():
    from crossscale_kernels.gram.plan import scratch_plan

    # a tiny memory budget would allow one image; the 36 (D/64)^2 programs per image need 4 to fill 132 SMs
    plan = scratch_plan("dxd", (64, 4096, 384), 384, torch.float16, "auto", True, num_sms=132, interpret=False)
    assert plan["images"] * 36 >= 132


@needs_triton
@pytest.mark.parametrize("form", ["nxn", "dxd"])
def test_launching_images_in_groups_gives_the_same_bits(form, monkeypatch):
    import crossscale_kernels.gram.plan as plan

    s, t = _pair((5, 23, 12), torch.float32, seed=13)
    whole = _run(s, t, backend="triton", form=form)
    monkeypatch.setattr(plan, "SCRATCH_FRACTION", 1e-9)  # one image per launch
    assert plan.scratch_plan(form, (5, 23, 12), 12, torch.float32, "auto", True, num_sms=1)["images"] == 1
    grouped = _run(s, t, backend="triton", form=form)
    assert torch.equal(whole[0], grouped[0]) and torch.equal(whole[1], grouped[1])
