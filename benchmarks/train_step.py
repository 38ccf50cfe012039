#!/usr/bin/env python
"""Training-step time of each host alone and with the spatial-affinity add-on, eager and compiled.

    python benchmarks/train_step.py                          # tiny config, eager
    python benchmarks/train_step.py --compile                # + torch.compile'd variants (inductor)
    python benchmarks/train_step.py --paper-shapes --batch 2 # ViT-S/16 (LatentMIM), ViT-S/14 (I-JEPA), 224 px
    python benchmarks/train_step.py --paper-shapes --compile --bf16   # on CUDA

One step is :class:`crossscale_kit.train.step.TrainStep`, exactly what the train loop runs: forward, backward, the
on-device finite check, fused AdamW, EMA update (no gradient clipping, one micro-batch). All variants of a
host start from the same weights and see the same batch; they are timed in alternation, one step at a
time, so drifting machine load affects them alike. The table reports medians, the SA overhead as the
ratio of host + SA to the host in the same mode, and the compiled/eager ratio of each variant. The FLOPs
of each step (``torch.utils.flop_counter``) give the add-on's arithmetic overhead, ``sa_flop_ratio``: what
the SA teacher must compute (its encoder over the s*s HR patches under every student patch), the floor
that no implementation of the method goes below on hardware where those operations dominate.

Host syncs: one extra untimed step per variant runs under a ``TorchDispatchMode`` that counts the ops
that make the host wait for a value: ``_local_scalar_dense`` (``.item()``, ``bool()``, ``int()``),
``nonzero``-like ops whose output size depends on the data, ``equal``, and device-to-host copies. Reads
of CPU tensors inside a sampler's draw or issued from ``kit/samplers/`` (drawing and checking the masks)
are counted apart (``sampler_reads``): the masks are made on the CPU from the step's CPU generator, so
on an accelerator they never wait for it. Every other read would (``host_syncs``, with its call sites).
On a CPU run every tensor is a CPU tensor, so this split is by where the read happens.

Rows are appended to ``benchmarks/results/train_step.csv`` with device, torch/triton versions and commit.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

try:  # python -m benchmarks.x, or imported by the tests
    from ._common import RESULTS, append_csv, env_info, print_table, time_fn
except ImportError:  # python benchmarks/x.py: this folder is sys.path[0]
    from _common import RESULTS, append_csv, env_info, print_table, time_fn
from crossscale_kit.encoders import ProjectionHead, ViTEncoder  # noqa: E402
from crossscale_kit.frameworks import IJEPA, LatentMIM, SpatialAffinity  # noqa: E402
from crossscale_kit.frameworks.context import StepContext  # noqa: E402
from crossscale_kit.predictors import CrossAttentionDecoder, IJEPAPredictor  # noqa: E402
from crossscale_kit.samplers import MultiBlock, RandomSplit  # noqa: E402
from crossscale_kit.train.optim import build_adamw  # noqa: E402
from crossscale_kit.train.compile import compile_framework  # noqa: E402
from crossscale_kit.train.step import TrainStep  # noqa: E402

# "paper": the paper's shapes; "tiny": reduced models and images for CPU runs
CONFIGS = {
    "paper": {
        "encoder": dict(arch="vit_small", embed_dim=384, depth=12, num_heads=6),
        "img": 224,
        "latentmim": dict(patch=16, batch=128, visible=20, head_hidden=4096, dec_width=512, dec_depth=3, dec_heads=16),
        "ijepa": dict(patch=14, batch=64, pred_width=384, pred_depth=12, pred_heads=6, min_keep=10),
    },
    "tiny": {
        "encoder": dict(arch="vit_tiny", embed_dim=128, depth=4, num_heads=4),
        "img": 64,
        "latentmim": dict(patch=8, batch=16, visible=8, head_hidden=512, dec_width=128, dec_depth=2, dec_heads=4),
        "ijepa": dict(patch=8, batch=16, pred_width=128, pred_depth=4, pred_heads=4, min_keep=4),
    },
}
CPU_PAPER_BATCH = 2  # the paper's shapes on a CPU: a small batch
aten = torch.ops.aten
SYNC_OPS = {aten._local_scalar_dense, aten.nonzero, aten.masked_select, aten.equal, aten.unique_consecutive,
            aten._unique2, aten.unique_dim, aten.repeat_interleave, aten.argwhere}


class SyncCounter(TorchDispatchMode):
    """Counts the ops of a step that wait for a device value on the host, and where they come from."""

    def __init__(self) -> None:
        super().__init__()
        self.in_sampler = 0
        self.host_syncs, self.sampler_reads = 0, 0
        self.sites: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        tensors = [a for a in args if torch.is_tensor(a)]
        on_device = any(t.device.type != "cpu" for t in tensors)
        if func.overloadpacket in (aten._to_copy, aten.copy_):
            to_host = out.device.type == "cpu" if torch.is_tensor(out) else False
            sync = on_device and to_host
        else:
            sync = func.overloadpacket in SYNC_OPS
        if sync:
            site = _caller()
            if not on_device and (self.in_sampler or site.startswith("kit/samplers/")):
                self.sampler_reads += 1
            else:
                self.host_syncs += 1
                self.sites[site] += 1
        return out

    @contextlib.contextmanager
    def samplers(self, fw):
        """Mark the draws of every sampler of ``fw`` (the host's and the add-on's)."""
        owners = [m for m in (fw, getattr(fw, "host", None))
                  if m is not None and getattr(m, "sampler", None) is not None]
        originals = [(m.sampler, m.sampler.sample) for m in owners]

        def wrap(fn):
            def sample(*a, **k):
                self.in_sampler += 1
                try:
                    return fn(*a, **k)
                finally:
                    self.in_sampler -= 1
            return sample

        for s, fn in originals:
            s.sample = wrap(fn)
        try:
            yield self
        finally:
            for s, _ in originals:
                del s.sample


def _caller() -> str:
    """``path:line`` (repository-relative) of the innermost kit/ or kernels/ frame that issued an op."""
    import traceback

    root = Path(__file__).resolve().parents[1]
    for fr in reversed(traceback.extract_stack()):
        path = Path(fr.filename).resolve()
        if path.is_relative_to(root / "kit") or path.is_relative_to(root / "kernels"):
            return f"{path.relative_to(root)}:{fr.lineno}"
    return "other"


def build_host(name: str, cfg: dict):
    """A fresh host with the config's shapes (same seed every time, so all variants start equal)."""
    torch.manual_seed(0)
    c = cfg[name]
    enc = ViTEncoder(patch_size=c["patch"], img_size=cfg["img"], **cfg["encoder"])
    d = enc.embed_dim
    if name == "latentmim":
        return LatentMIM(
            encoder=enc,
            head=ProjectionHead(d, c["head_hidden"]),
            decoder=CrossAttentionDecoder(d, width=c["dec_width"], depth=c["dec_depth"], num_heads=c["dec_heads"]),
            sampler=RandomSplit(c["visible"]),
        )
    return IJEPA(
        encoder=enc,
        predictor=IJEPAPredictor(d, width=c["pred_width"], depth=c["pred_depth"], num_heads=c["pred_heads"]),
        sampler=MultiBlock(min_keep=c["min_keep"]),
    )


def make_step(fw, batch: dict, device: torch.device, bf16: bool):
    """One training step of ``fw`` on ``batch`` as the train loop runs it (a :class:`TrainStep`)."""
    fw = fw.to(device).train()
    train_step = TrainStep(fw, build_adamw(fw), autocast_dtype=torch.bfloat16 if bf16 else None)
    state = {"step": 0}

    def step():
        ctx = StepContext.single(batch["mr"].shape[0], step=state["step"], seed=state["step"])
        state["step"] += 1
        return train_step([(batch, ctx)], lr=1e-4, weight_decay=0.05, momentum=0.996)

    return step


def _stats(times: list[float]) -> dict:
    t = sorted(times)
    q = lambda p: t[min(len(t) - 1, int(p * (len(t) - 1) + 0.5))]  # noqa: E731
    return {"median_ms": statistics.median(t), "min_ms": t[0], "p20_ms": q(0.2), "p80_ms": q(0.8)}


def _count_syncs(fw, step) -> dict:
    counter = SyncCounter()
    try:
        with counter, counter.samplers(fw):
            step()
    except Exception as exc:  # e.g. a compiled graph that refuses to run under a dispatch mode
        return {"host_syncs": "", "sampler_reads": "", "sync_sites": f"not counted: {type(exc).__name__}"}
    return {"host_syncs": counter.host_syncs, "sampler_reads": counter.sampler_reads,
            "sync_sites": " ".join(f"{k}x{v}" for k, v in counter.sites.most_common())}


def _parse(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paper-shapes", action="store_true", help="the paper's ViT-S shapes (default: the tiny config)")
    ap.add_argument("--compile", action="store_true",
                    help="also time the torch.compile'd step (crossscale_kit.train.compile.compile_framework)")
    ap.add_argument("--compile-backend", default="inductor",
                    help="torch.compile backend of the compiled variants (aot_eager: capture without code generation)")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast, as the loop runs on CUDA (CUDA only)")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    ap.add_argument("--hosts", default="latentmim,ijepa", help="comma-separated: latentmim, ijepa")
    ap.add_argument("--batch", type=int, default=None,
                    help=f"batch of both hosts (default: the config's; {CPU_PAPER_BATCH} for the paper shapes on CPU)")
    ap.add_argument("--repeat", type=int, default=None, help="timed steps per variant (default 20 on CUDA, 10 on CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5 on CUDA, 3 on CPU)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads (default 1 on CPU: on a shared machine two OpenMP threads can stall for seconds)")
    ap.add_argument("--csv", default=str(RESULTS / "train_step.csv"), help="CSV to append to ('' for none)")
    args = ap.parse_args(argv)
    args.device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda asked for but CUDA is not available; use --device cpu.")
    if args.bf16 and args.device.type != "cuda":
        ap.error("--bf16 times the CUDA autocast path; drop it on the CPU (the loop runs fp32 there).")
    bad = [h for h in args.hosts.split(",") if h.strip() not in ("latentmim", "ijepa")]
    if bad:
        ap.error(f"unknown host(s) {bad}; choose latentmim and/or ijepa.")
    if args.batch is not None and args.batch < 1:
        ap.error("--batch must be >= 1.")
    return args


def _count_flops(step, steps: int) -> float:
    """Mean FLOPs of ``steps`` more steps (forward and backward matmuls, convolutions and attention, as
    ``torch.utils.flop_counter`` counts them). Variants are counted at the same step numbers, so with the
    same masks: ``sa_flop_ratio`` is the overhead the add-on's arithmetic sets, the floor of ``sa_ratio``."""
    total = 0
    for _ in range(steps):
        with FlopCounterMode(display=False) as counter:
            step()
        total += counter.get_total_flops()
    return total / steps


def _bench_host(name: str, args, cfg: dict, env: dict) -> list[dict]:
    device, cuda = args.device, args.device.type == "cuda"
    batch_size = args.batch or (CPU_PAPER_BATCH if args.paper_shapes and not cuda else cfg[name]["batch"])
    g = torch.Generator().manual_seed(0)
    img = cfg["img"]
    batch = {"mr": torch.randn(batch_size, 4, img, img, generator=g).to(device),
             "hr": torch.randn(batch_size, 4, 2 * img, 2 * img, generator=g).to(device)}
    repeat = args.repeat or (20 if cuda else 10)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 3)
    sync = torch.cuda.synchronize if cuda else None
    modes = ["eager", "compiled"] if args.compile else ["eager"]
    variants, compile_s, peak, syncs = {}, {}, {}, {}
    for mode in modes:
        for v in ("host", "host+SA"):
            fw = build_host(name, cfg)
            fw = SpatialAffinity(host=fw) if v == "host+SA" else fw
            if mode == "compiled":
                compile_framework(fw, backend=args.compile_backend)
            step = make_step(fw, batch, device, args.bf16)
            if cuda:
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            time_fn(step, warmup=warmup, repeat=1, sync=sync)  # warm-up (and compilation)
            compile_s[(v, mode)] = time.perf_counter() - t0
            peak[(v, mode)] = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else ""
            syncs[(v, mode)] = _count_syncs(fw, step)
            variants[(v, mode)] = (fw, step)
    times = {k: [] for k in variants}
    for _ in range(repeat):  # interleaved, one step at a time
        for k, (_, step) in variants.items():
            times[k].append(time_fn(step, warmup=0, repeat=1, sync=sync)["median_ms"])
    stats = {k: _stats(t) for k, t in times.items()}
    flops = {k: _count_flops(step, 3) for k, (_, step) in variants.items() if k[1] == "eager"}
    rows = []
    for (v, mode), (fw, _) in variants.items():
        t = stats[(v, mode)]
        host_t = stats[("host", mode)]["median_ms"]
        eager_t = stats[(v, "eager")]["median_ms"]
        rows.append({
            "host": name, "variant": v, "mode": mode if mode == "eager" else f"compiled:{args.compile_backend}",
            "config": "paper" if args.paper_shapes else "tiny",
            "batch": batch_size, "img_mr": img, "patch": cfg[name]["patch"],
            "precision": "bf16-autocast" if args.bf16 else ("tf32" if cuda else "fp32"),
            "trainable_M": round(sum(p.numel() for p in fw.parameters() if p.requires_grad) / 1e6, 2),
            "median_ms": round(t["median_ms"], 2), "min_ms": round(t["min_ms"], 2),
            "p20_ms": round(t["p20_ms"], 2), "p80_ms": round(t["p80_ms"], 2),
            "imgs_per_s": round(batch_size / t["median_ms"] * 1e3, 1),
            "sa_ratio": "" if v == "host" else round(t["median_ms"] / host_t, 3),
            "gflop_per_step": round(flops[(v, "eager")] / 1e9, 2),
            "sa_flop_ratio": "" if v == "host" else round(flops[(v, "eager")] / flops[("host", "eager")], 3),
            "eager_over_compiled": "" if mode == "eager" else round(eager_t / t["median_ms"], 3),
            "warmup_s": round(compile_s[(v, mode)], 1),
            **syncs[(v, mode)],
            "peak_mem_MB": round(peak[(v, mode)]) if cuda else "",
            "repeat": repeat, "threads": torch.get_num_threads(), **env,
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    cuda = args.device.type == "cuda"
    cfg = CONFIGS["paper" if args.paper_shapes else "tiny"]
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if args.threads or not cuda:
        torch.set_num_threads(args.threads or 1)
    env = env_info(str(args.device))
    rows = []
    for name in [h.strip() for h in args.hosts.split(",") if h.strip()]:
        rows += _bench_host(name, args, cfg, env)
        if cuda:
            torch.cuda.empty_cache()
    print_table(rows, ["host", "variant", "mode", "config", "batch", "precision", "median_ms", "p20_ms", "p80_ms",
                       "imgs_per_s", "sa_ratio", "sa_flop_ratio", "eager_over_compiled", "host_syncs", "sampler_reads",
                       "warmup_s", "peak_mem_MB", "device"])
    for r in rows:
        if r["sync_sites"]:
            print(f"host syncs of {r['host']} {r['variant']} {r['mode']}: {r['sync_sites']}")
    if args.csv:
        path = append_csv(args.csv, rows)
        print(f"appended {len(rows)} rows to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
