"""The kit installs beside anything: Hugging Face's ``kernels`` (the kernel hub transformers uses, top-level import
name ``kernels``) and the kit go into one fresh venv, and both import and work. The kit's folders ``kit/``,
``kernels/`` and ``tools/`` install as ``crossscale_kit``, ``crossscale_kernels`` and ``crossscale_tools``.

The venv reuses this environment's torch & co. (``--system-site-packages``); ``kernels`` comes from the package
registry (the test skips, saying so, only when pip cannot reach it), the kit from a copy of this checkout, built
and installed as a plain (non-editable) wheel *after* ``kernels``: a build with HF's ``kernels`` present loads its
``egg_info.writers`` entry point, which must not find the checkout's ``kernels/`` folder (pyproject.toml). A kit installed editable in the base environment adds a meta-path
finder through its ``.pth``; the checks drop it, and assert that every module comes from the venv.

Written with the new import names already (rename_imports: skip-file, for the codemod of this rename).
"""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.data.fixtures import REPO

# what pip prints when the registry cannot be reached (no network, proxy, DNS)
OFFLINE = ("NewConnectionError", "Temporary failure in name resolution", "Max retries exceeded", "ProxyError",
           "ConnectionError", "Network is unreachable", "No matching distribution found for kernels",
           "Could not find a version that satisfies the requirement kernels", "timed out")

DROP_BASE_FINDERS = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
"""

BOTH_WORK = DROP_BASE_FINDERS + """
import torch
import torch.nn.functional as F

import kernels  # Hugging Face's kernel hub
assert kernels.__file__.startswith(sys.prefix), kernels.__file__
assert callable(kernels.get_kernel) and callable(kernels.kernelize), dir(kernels)

import crossscale_kernels
import crossscale_kit.losses
assert crossscale_kernels.__file__.startswith(sys.prefix), crossscale_kernels.__file__
assert crossscale_kit.losses.__file__.startswith(sys.prefix), crossscale_kit.losses.__file__

torch.manual_seed(0)
s = torch.randn(3, 11, 7, dtype=torch.float64, requires_grad=True)
t = torch.randn(3, 11, 7, dtype=torch.float64)
loss = crossscale_kernels.gram_loss(s, t)  # CPU: the torch forms
zs, zt = F.normalize(s, dim=-1), F.normalize(t, dim=-1)
want = ((zs @ zs.transpose(1, 2) - zt @ zt.transpose(1, 2)) ** 2).mean()  # DINOv3's gram loss, by hand
assert torch.allclose(loss, want, rtol=1e-10, atol=0), (loss, want)
(g,) = torch.autograd.grad(loss, s)
(g_want,) = torch.autograd.grad(want, s)
assert torch.allclose(g, g_want, rtol=1e-8, atol=1e-12)
print("both work")
"""

# a CPU install without the [gpu] extra has no triton: the kit imports and the gram loss runs its torch forms
WITHOUT_TRITON = DROP_BASE_FINDERS + """
# triton absent, as a CPU install without the [gpu] extra has it: ``import triton`` fails and
# importlib.util.find_spec("triton") is None (torch itself probes it that way at import)
for name in [m for m in sys.modules if m == "triton" or m.startswith("triton.")]:
    del sys.modules[name]
sys.modules["triton"] = None

import torch

import crossscale_kernels
from crossscale_kit.losses import GramLoss

assert not crossscale_kernels.HAS_TRITON and sys.modules.get("triton") is None
s, t = torch.randn(2, 9, 5), torch.randn(2, 9, 5)
assert torch.allclose(GramLoss()(s, t), crossscale_kernels.gram_loss_reference(s, t))
try:
    crossscale_kernels.gram_loss(s, t, backend="triton")
except ImportError as e:
    assert "crossscale-kit[gpu]" in str(e), e
else:
    raise AssertionError("backend='triton' without triton should say how to install it")
print("no triton ok")
"""


def _run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    d = tmp_path_factory.mktemp("beside")
    env_dir, src = d / "venv", d / "src"
    # a copy of the checkout: the wheel build writes build/ and *.egg-info next to setup.py
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE", "kit", "kernels", "tools"):
        p = REPO / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif p.exists():
            src.mkdir(exist_ok=True)
            shutil.copy2(p, src / name)
    r = _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(env_dir)], timeout=120)
    assert r.returncode == 0, r.stderr
    py = str(env_dir / "bin" / "python")
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    r = _run([*pip, "--timeout", "20", "--retries", "1", "kernels"], timeout=240, cwd=d)
    if r.returncode != 0:
        if any(m in r.stderr for m in OFFLINE):
            pytest.skip(f"pip cannot reach the package registry to install Hugging Face's kernels: {r.stderr[-300:]}")
        pytest.fail(f"pip install kernels failed: {r.stderr[-3000:]}")
    r = _run([*pip, "--no-deps", "--no-build-isolation", str(src)], timeout=300, cwd=d)
    assert r.returncode == 0, r.stderr[-3000:]
    return env_dir


def test_hf_kernels_and_the_kit_import_and_work_in_one_venv(venv, tmp_path):
    py = str(venv / "bin" / "python")
    r = _run([py, "-c", BOTH_WORK], timeout=180, cwd=tmp_path)  # cwd: no checkout folder on sys.path
    assert r.returncode == 0 and "both work" in r.stdout, r.stderr[-3000:]
    r = _run([str(venv / "bin" / "crossscale-train"), "--help"], timeout=120, cwd=tmp_path)
    assert r.returncode == 0 and "usage:" in r.stdout, r.stderr[-3000:]


def test_the_kit_runs_without_triton(venv, tmp_path):
    r = _run([str(venv / "bin" / "python"), "-c", WITHOUT_TRITON], timeout=180, cwd=tmp_path)
    assert r.returncode == 0 and "no triton ok" in r.stdout, r.stderr[-3000:]
