"""The CUDA launch configurations build for Hopper (sm_90a) without spills -- checked on any machine.

The interpreter runs the kernels' semantics on CPU but not their machine code. This compiles every
configuration of ``crossscale_kernels.gram.configs.GPU_CONFIGS`` with Triton's bundled ``ptxas`` (``benchmarks/gram_build.py``
in a subprocess, ``TRITON_INTERPRET`` unset) and holds each build to: no register spills, shared memory
within 227 KiB, dots lowered to ``wgmma``. Speed still needs a GPU: ``python benchmarks/gram_kernel.py``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

triton = pytest.importorskip("triton", reason="triton is not installed (the [gpu] or [test] extra)")

ROOT = Path(__file__).resolve().parents[2]
PTXAS = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"

pytestmark = pytest.mark.skipif(not PTXAS.exists(), reason="this triton install carries no ptxas")


@pytest.fixture(scope="module")
def builds():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "benchmarks/gram_build.py", "--json", "--no-csv"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_every_gpu_config_builds_without_spills_for_sm90(builds):
    bad = [r for r in builds if r["problems"] != "ok"]
    assert not bad, "\n".join(f"{r['kernel']} {r['dtype']} {r['flags']} {r['config']} w{r['warps']}: {r['problems']}"
                              for r in bad)


def test_the_build_covers_every_config_and_dtype(builds):
    from crossscale_kernels.gram.configs import GPU_CONFIGS

    seen = {(r["kernel"], r["dtype"], r["config"], r["warps"], r["stages"]) for r in builds}
    for (kind, cls), cfgs in GPU_CONFIGS.items():
        for dt in (("fp32",) if cls == "fp32" else ("bf16", "fp16")):
            for cfg in cfgs:
                consts = " ".join(f"{k}={v}" for k, v in cfg.items() if k not in ("num_warps", "num_stages"))
                key = (kind, dt, consts, cfg.get("num_warps", 4), cfg.get("num_stages", 3))
                assert key in seen, f"{key} was not built"


def test_tensor_core_kernels_fit_hopper_shared_memory(builds):
    for r in builds:
        assert r["smem_kib"] <= 227, r
        if r["kernel"] != "inv_norm":
            assert r["wgmma"], r
