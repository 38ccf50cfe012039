"""Build report of the Triton gram kernels for a GPU target, on any machine (no GPU needed).

Compiles every GPU launch configuration of :data:`crossscale_kernels.gram.configs.GPU_CONFIGS` (and the inverse-norm
kernel) for ``sm_90a`` (H100/H200) with Triton's own ``ptxas``, for each input dtype and each
specialisation the launchers use (gradient or not, ``remove_neg``), and reads off the machine code:
registers per thread, spilled bytes (local-memory stack), shared memory, and whether the dots became
Hopper ``wgmma`` tensor-core instructions. Prints a table and appends one CSV row per kernel build to
``benchmarks/results/gram_build.csv`` (device = the target, versions, commit)::

    python benchmarks/gram_build.py              # all configurations, ~1 minute on 2 CPU cores
    python benchmarks/gram_build.py --defaults   # the first (default) configuration of each list only
    python benchmarks/gram_build.py --check      # exit 1 if any build spills, overflows shared memory
                                                 # (227 KiB on sm_90) or has no wgmma

What this cannot tell: time. A spill-free, wgmma-using build is necessary for speed, not sufficient;
``python benchmarks/gram_kernel.py`` on a GPU measures it. ``TRITON_INTERPRET`` must be unset (the
interpreter replaces the compiler); the script clears it for itself.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
import time

if os.environ.pop("TRITON_INTERPRET", None) not in (None, "0"):
    print("gram_build: TRITON_INTERPRET cleared (this script compiles real GPU code)", file=sys.stderr)

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from crossscale_kernels.gram import jit_dxd, jit_nxn, jit_rows  # noqa: E402
from crossscale_kernels.gram.configs import GPU_CONFIGS, REG_CHUNKS  # noqa: E402
from crossscale_kernels.reference import EPS  # noqa: E402

SMEM_LIMIT = {90: 227 * 1024}  # usable shared memory per block, bytes


def _bin(name: str) -> str:
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def _signature(fn, types: dict, consts: dict) -> tuple[dict, dict]:
    names = list(inspect.signature(fn.fn).parameters)
    sig = {n: ("constexpr" if n in consts else types.get(n, "i32")) for n in names}
    # Pointers from torch's allocator are 16-byte aligned; the JIT would specialise on that too.
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names) if sig[n].startswith("*")}
    return sig, attrs


def builds(defaults_only: bool = False) -> list[dict]:
    """Every (kernel, dtype, flags, config) the CUDA launchers can run."""
    out = []
    for dt in ("bf16", "fp16", "fp32"):
        cls = "fp32" if dt == "fp32" else "16bit"
        prec = "tf32x3" if dt == "fp32" else "tf32"

        def cfgs(kind, cls=cls):
            c = GPU_CONFIGS[(kind, cls)]
            return c[:1] if defaults_only else c

        for cfg in cfgs("nxn"):
            bm, bk = cfg["BLOCK_M"], cfg["BLOCK_K"]
            variants = [(True, False, False), (False, False, False), (True, True, False)]
            if dt != "fp32":
                variants.append((True, False, True))  # precision="ieee"/"tf32x3": E split in hi + lo
            for grad, remove_neg, split in variants:
                out.append(dict(
                    kernel="nxn", fn=jit_nxn.gram_nxn_kernel, dtype=dt, cfg=cfg,
                    flags=f"grad={int(grad)} remove_neg={int(remove_neg)}" + (" split=1" if split else ""),
                    types=dict(S=f"tensordesc<{dt}[1,{bm},{bk}]>", T=f"tensordesc<{dt}[1,{bm},{bk}]>",
                               SX=f"*{dt}", RS="*fp32", RT="*fp32", G="*fp32", OUT=f"*{dt}", LOSS="*fp32", grad_scale="fp32"),
                    consts=dict(EPS_=EPS, REMOVE_NEG=remove_neg, COMPUTE_GRAD=grad, FOLD_R=dt != "fp16",
                                SPLIT=split, PREC=prec, BLOCK_M=bm, BLOCK_N=bm, BLOCK_K=bk),
                ))
        for cfg in (cfgs("nxn_reg") if ("nxn_reg", cls) in GPU_CONFIGS else []):
            bm, bk, bc = cfg["BLOCK_M"], cfg["BLOCK_K"], cfg["BLOCK_C"]
            for remove_neg in (False, True):  # four chunks: the most registers it can need
                out.append(dict(
                    kernel="nxn_reg", fn=jit_nxn.gram_nxn_reg_kernel, dtype=dt, cfg=cfg,
                    flags=f"grad=1 remove_neg={int(remove_neg)} chunks={REG_CHUNKS}",
                    types=dict(S=f"tensordesc<{dt}[1,{bm},{bk}]>", SC=f"tensordesc<{dt}[1,{bm},{bc}]>",
                               T=f"tensordesc<{dt}[1,{bm},{bk}]>", RS="*fp32", RT="*fp32",
                               OUT=f"tensordesc<{dt}[1,{bm},{bc}]>", LOSS="*fp32", grad_scale="fp32"),
                    consts=dict(EPS_=EPS, REMOVE_NEG=remove_neg, FOLD_R=dt != "fp16", SPLIT=False, PREC=prec,
                                D_CHUNKS=REG_CHUNKS, BLOCK_M=bm, BLOCK_N=bm, BLOCK_K=bk, BLOCK_C=bc),
                ))
        for cfg in cfgs("dxd_grams"):
            out.append(dict(
                kernel="dxd_grams", fn=jit_dxd.gram_dxd_grams_kernel, dtype=dt, cfg=cfg, flags="",
                types=dict(S=f"*{dt}", T=f"*{dt}", RS="*fp32", RT="*fp32", P="*fp32", C="*fp32", Q="*fp32"),
                consts=dict(PREC=prec, BLOCK_I=cfg["BLOCK_I"], BLOCK_J=cfg["BLOCK_I"], BLOCK_N=cfg["BLOCK_N"]),
            ))
        for cfg in cfgs("dxd_apply"):
            out.append(dict(
                kernel="dxd_apply", fn=jit_dxd.gram_dxd_apply_kernel, dtype=dt, cfg=cfg, flags="",
                types=dict(S=f"*{dt}", T=f"*{dt}", RS="*fp32", RT="*fp32", P="*fp32", C="*fp32", Q="*fp32",
                           G="*fp32", OUT=f"*{dt}", grad_scale="fp32"),
                consts=dict(EPS_=EPS, PREC=prec, BLOCK_M=cfg["BLOCK_M"], BLOCK_D=cfg["BLOCK_D"]),
            ))
        for cfg in cfgs("inv_norm"):
            out.append(dict(
                kernel="inv_norm", fn=jit_rows.inv_norm_kernel, dtype=dt, cfg=cfg, flags="",
                types=dict(X=f"*{dt}", R="*fp32"),
                consts=dict(EPS_=EPS, BLOCK_N=cfg["BLOCK_N"], BLOCK_D=cfg["BLOCK_D"]), wgmma=False,
            ))
    return out


def compile_one(b: dict, arch: int = 90) -> dict:
    """Compile one build for ``sm_<arch>a``; registers, spills, shared memory, wgmma, seconds."""
    sig, attrs = _signature(b["fn"], b["types"], b["consts"])
    opts = {k: b["cfg"][k] for k in ("num_warps", "num_stages") if k in b["cfg"]}
    t0 = time.perf_counter()
    k = triton.compile(ASTSource(fn=b["fn"], signature=sig, constexprs=b["consts"], attrs=attrs),
                       target=GPUTarget("cuda", arch, 32), options=opts)
    secs = time.perf_counter() - t0
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(k.asm["cubin"])
        f.flush()
        usage = subprocess.run([_bin("cuobjdump"), "--dump-resource-usage", f.name], capture_output=True,
                               text=True, check=True).stdout
    m = re.search(r"REG:(\d+) STACK:(\d+)", usage)
    cfg = {k: v for k, v in b["cfg"].items() if k not in ("num_warps", "num_stages")}
    row = {
        "kernel": b["kernel"], "dtype": b["dtype"], "flags": b["flags"],
        "config": " ".join(f"{k}={v}" for k, v in cfg.items()),
        "warps": opts.get("num_warps", 4), "stages": opts.get("num_stages", 3),
        "regs": int(m.group(1)), "spill_bytes": int(m.group(2)), "smem_kib": round(k.metadata.shared / 1024, 1),
        "wgmma": "wgmma" in k.asm["ptx"], "compile_s": round(secs, 2),
    }
    problems = []
    if row["spill_bytes"]:
        problems.append(f"spills {row['spill_bytes']} B/thread")
    if k.metadata.shared > SMEM_LIMIT.get(arch, 227 * 1024):
        problems.append("shared memory over the limit")
    if b.get("wgmma", True) and not row["wgmma"]:
        problems.append("no wgmma")
    row["problems"] = "; ".join(problems) or "ok"
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", type=int, default=90, help="compute capability x10 (90 = H100/H200)")
    ap.add_argument("--defaults", action="store_true", help="only the default configuration of each list")
    ap.add_argument("--check", action="store_true", help="exit 1 if any build has a problem")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    ap.add_argument("--no-csv", action="store_true", help="do not append to benchmarks/results/gram_build.csv")
    args = ap.parse_args(argv)
    if not os.path.exists(_bin("ptxas")):
        print(f"gram_build: Triton's ptxas is missing ({_bin('ptxas')}); reinstall triton", file=sys.stderr)
        return 2
    rows = [compile_one(b, args.arch) for b in builds(args.defaults)]
    if args.json:
        print(json.dumps(rows))
    else:
        try:  # python -m benchmarks.x, or imported by the tests
            from ._common import print_table
        except ImportError:  # python benchmarks/x.py: this folder is sys.path[0]
            from _common import print_table

        print_table(rows, list(rows[0]))
    if not args.no_csv:
        try:  # python -m benchmarks.x, or imported by the tests
            from ._common import RESULTS, append_csv, env_info
        except ImportError:  # python benchmarks/x.py: this folder is sys.path[0]
            from _common import RESULTS, append_csv, env_info

        info = {**env_info("cpu"), "device": f"sm_{args.arch}a (compiled here, not run)"}
        append_csv(RESULTS / "gram_build.csv", [{**info, **r} for r in rows])
    bad = [r for r in rows if r["problems"] != "ok"]
    if bad:
        print(f"gram_build: {len(bad)} of {len(rows)} builds have problems", file=sys.stderr)
    return 1 if (args.check and bad) else 0


if __name__ == "__main__":
    sys.exit(main())
