#!/usr/bin/env python
"""Training-step time of each host alone and with the spatial-affinity add-on, on the same batch.

    python benchmarks/train_step.py             # CUDA: the paper's shapes under bf16 autocast
    python benchmarks/train_step.py --quick     # reduced models and images (automatic on CPU)

One step = forward + backward + AdamW step + EMA update, exactly what ``kit.train.loop`` does. For
LatentMIM (ViT-S/16, batch 128, decoder 3 x 512) and I-JEPA (ViT-S/14, batch 64, predictor 12 x 384),
both at 224 px MR / 448 px HR, the table gives the median step time of the host and of
``SpatialAffinity(host)`` and the SA overhead in percent (of the medians; the two variants are timed
in alternation so that drifting machine load affects both alike). Rows are appended to
``benchmarks/results/train_step.csv`` with the environment columns of ``benchmarks/_common.env_info()``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks._common import RESULTS, append_csv, env_info, print_table, time_fn  # noqa: E402
from kit.encoders import ProjectionHead, ViTEncoder  # noqa: E402
from kit.frameworks import IJEPA, LatentMIM, SpatialAffinity  # noqa: E402
from kit.frameworks.context import StepContext  # noqa: E402
from kit.predictors import CrossAttentionDecoder, IJEPAPredictor  # noqa: E402
from kit.samplers import MultiBlock, RandomSplit  # noqa: E402
from kit.train.optim import apply_schedules, build_adamw  # noqa: E402

# name -> settings; "paper" are the paper's shapes, "quick" the reduced CPU ones
CONFIGS = {
    "paper": {
        "encoder": dict(arch="vit_small", embed_dim=384, depth=12, num_heads=6),
        "img": 224,
        "latentmim": dict(patch=16, batch=128, visible=20, head_hidden=4096, dec_width=512, dec_depth=3, dec_heads=16),
        "ijepa": dict(patch=14, batch=64, pred_width=384, pred_depth=12, pred_heads=6, min_keep=10),
    },
    "quick": {
        "encoder": dict(arch="vit_tiny", embed_dim=128, depth=4, num_heads=4),
        "img": 64,
        "latentmim": dict(patch=8, batch=16, visible=8, head_hidden=512, dec_width=128, dec_depth=2, dec_heads=4),
        "ijepa": dict(patch=8, batch=16, pred_width=128, pred_depth=4, pred_heads=4, min_keep=4),
    },
}


def build_host(name: str, cfg: dict):
    """A fresh host with the config's shapes (same seed every time, so host and host + SA start equal)."""
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
    """One training step of ``fw`` on ``batch`` as the train loop runs it."""
    fw = fw.to(device).train()
    opt = build_adamw(fw)
    apply_schedules(opt, 1e-4, 0.05)
    state = {"step": 0}

    def step() -> None:
        gen = torch.Generator().manual_seed(state["step"])
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            out = fw(batch, StepContext(generator=gen))
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        fw.ema_update(0.996)
        state["step"] += 1

    return step


def _stats(times: list[float]) -> dict:
    t = sorted(times)
    q = lambda p: t[min(len(t) - 1, int(p * (len(t) - 1) + 0.5))]  # noqa: E731
    return {"median_ms": statistics.median(t), "min_ms": t[0], "p20_ms": q(0.2), "p80_ms": q(0.8)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="reduced shapes (automatic without CUDA)")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    ap.add_argument("--hosts", default="latentmim,ijepa", help="comma-separated: latentmim, ijepa")
    ap.add_argument("--batch", type=int, default=None, help="override both hosts' batch size")
    ap.add_argument("--repeat", type=int, default=None, help="timed steps (default 20 on CUDA, 10 on CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5 on CUDA, 2 on CPU)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads (default 1 on CPU: on a shared machine two OpenMP threads can stall for seconds)")
    ap.add_argument("--csv", default=str(RESULTS / "train_step.csv"), help="CSV to append to ('' for none)")
    args = ap.parse_args(argv)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    quick = args.quick or not cuda
    cfg = CONFIGS["quick" if quick else "paper"]
    repeat = args.repeat or (20 if cuda else 10)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 2)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if args.threads or not cuda:
        torch.set_num_threads(args.threads or 1)
    sync = torch.cuda.synchronize if cuda else None
    env = env_info(str(device))
    rows = []
    for name in [h.strip() for h in args.hosts.split(",") if h.strip()]:
        if name not in ("latentmim", "ijepa"):
            raise ValueError(f"unknown host {name!r}; choose latentmim and/or ijepa.")
        batch_size = args.batch or cfg[name]["batch"]
        g = torch.Generator().manual_seed(0)
        img = cfg["img"]
        batch = {
            "mr": torch.randn(batch_size, 4, img, img, generator=g).to(device),
            "hr": torch.randn(batch_size, 4, 2 * img, 2 * img, generator=g).to(device),
        }

        def build(variant: str):
            fw = build_host(name, cfg)
            if variant == "host+SA":
                fw = SpatialAffinity(host=fw)
            return fw, make_step(fw, batch, device, bf16=cuda)

        peak = {}
        if cuda:  # peak memory of each variant alone on the device (model, optimizer state, activations)
            for v in ("host", "host+SA"):
                fw, step = build(v)
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
                time_fn(step, warmup=1, repeat=1, sync=sync)
                peak[v] = torch.cuda.max_memory_allocated(device) / 2**20
                del fw, step
                torch.cuda.empty_cache()
        steps = {v: build(v) for v in ("host", "host+SA")}
        # interleave the two variants step by step so that drifting machine load hits both alike
        times = {v: [] for v in steps}
        for v, (_, step) in steps.items():
            time_fn(step, warmup=warmup, repeat=1, sync=sync)
        for _ in range(repeat):
            for v, (_, step) in steps.items():
                times[v].append(time_fn(step, warmup=0, repeat=1, sync=sync)["median_ms"])
        stats = {v: _stats(t) for v, t in times.items()}
        for v, (fw, _) in steps.items():
            t = stats[v]
            rows.append({
                "host": name,
                "variant": v,
                "config": "quick" if quick else "paper",
                "batch": batch_size,
                "img_mr": img,
                "patch": cfg[name]["patch"],
                "precision": "bf16-autocast" if cuda else "fp32",
                "trainable_M": round(sum(p.numel() for p in fw.parameters() if p.requires_grad) / 1e6, 2),
                "median_ms": round(t["median_ms"], 2),
                "min_ms": round(t["min_ms"], 2),
                "p20_ms": round(t["p20_ms"], 2),
                "p80_ms": round(t["p80_ms"], 2),
                "imgs_per_s": round(batch_size / t["median_ms"] * 1e3, 1),
                "sa_overhead_pct": "" if v == "host" else round(100.0 * (t["median_ms"] / stats["host"]["median_ms"] - 1.0), 1),
                "peak_mem_MB": round(peak[v]) if cuda else "",
                "repeat": repeat,
                "threads": torch.get_num_threads(),
                **env,
            })
        del steps
        if cuda:
            torch.cuda.empty_cache()
    print_table(rows, ["host", "variant", "config", "batch", "img_mr", "patch", "precision", "median_ms", "min_ms",
                       "p20_ms", "p80_ms", "imgs_per_s", "sa_overhead_pct", "peak_mem_MB", "device"])
    if args.csv:
        path = append_csv(args.csv, rows)
        print(f"appended {len(rows)} rows to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
