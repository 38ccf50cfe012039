"""Benchmark of the gram loss: fused Triton kernel against eager, torch.compile and the torch d x d form.

GPU (one command; full grid B {64, 256} x N {196, 576, 1024, 4096} x D {384, 768, 1024}, bf16 and
fp32, all providers, modes forward/backward/full)::

    python benchmarks/gram_kernel.py                 # on a CUDA machine
    python benchmarks/gram_kernel.py --crossover     # N x N vs d x d timings to re-measure NXN_MAX_RATIO
    python benchmarks/gram_kernel.py --shapes 256x1024x384,64x4096x384,64x196x384   # the issue's targets

CPU (no CUDA): ``--quick`` is switched on automatically -- the torch providers on a reduced shape set
(B = 2, D = 384, N up to 4096, plus one D = 768 case) in about a minute, one torch thread by default
(the shared 2-core machine throttles two). ``--compile`` adds ``torch.compile`` on CPU (slow to
compile: off by default there). ``--full`` forces the full grid on CPU (hours).

Providers:
    eager        ``crossscale_kernels.gram_loss_reference`` (N x N, autograd), TF32 off   ("eager_tf32" with it on; GPU)
    compile      ``torch.compile`` of the reference (TF32 off)
    torch_dxd    ``crossscale_kernels.gram_loss_dxd`` -- the textbook d x d identity through autograd
    ours         ``crossscale_kernels.gram_loss`` (backend auto: Triton on CUDA, the torch forms on CPU; form auto)
    ours_nxn / ours_dxd   the two forms forced (GPU; both Triton; on CPU with ``--interpret``)

Modes: ``forward`` (under ``torch.no_grad``; ours then skips the gradient), ``backward`` (the backward
call alone, graph retained; ours computed dL/dS in its forward, so its backward is one scale),
``full`` (forward + backward, what a training step pays).

Timing (``benchmarks._common.measure``): ``triton.testing.do_bench`` on CUDA (CUDA events, L2 flushed
before every call; ``--warmup-ms``, ``--rep-ms``), ``torch.utils.benchmark.Timer`` on CPU.

Columns: median ms (p20, p80) per call; effective TFLOP/s counting the minimal flop of the form the provider
runs (N x N: 2 N^2 D forward -- the grams are symmetric -- + 2 N^2 D backward per image; d x d:
6 N D^2 + 4 N D^2; what the provider actually executes may be more: eager builds whole grams, our
N x N gradient pass recomputes the lower triangle, 6 N^2 D in all); ``roofline`` =
max(flop / peak, minimal bytes / HBM bandwidth) / measured time on H100/H200 (bf16 peak 989 TFLOP/s,
fp32 against the TF32 peak 495, HBM 3.35 / 4.8 TB/s), ``n/a`` elsewhere; peak extra memory over the
inputs over one call, measured apart from the timing (``torch.cuda.max_memory_allocated``; ``n/a`` on CPU, where torch's allocator is not traced);
relative error of the loss and of the gradient against float64 on the same inputs; ``grad_mb``, the
gradient's own size, for the memory goal (peak extra <= 1.2x of it: the gradient plus <= 0.2x of
temporaries, :data:`crossscale_kernels.gram.plan.SCRATCH_FRACTION`).
Rows are printed and appended to ``benchmarks/results/gram_kernel.csv`` with device, versions and commit.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

if "--interpret" in sys.argv and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # before kernels is imported: the Triton kernels on the CPU

import crossscale_kernels  # noqa: E402
try:  # python -m benchmarks.x, or imported by the tests
    from ._common import RESULTS, append_csv, env_info, measure, print_table
except ImportError:  # python benchmarks/x.py: this folder is sys.path[0]
    from _common import RESULTS, append_csv, env_info, measure, print_table
from crossscale_kernels import gram_loss_dxd, gram_loss_reference  # noqa: E402

FULL_SHAPES = [(b, n, d) for b in (64, 256) for n in (196, 576, 1024, 4096) for d in (384, 768, 1024)]
QUICK_SHAPES = [(2, 196, 384), (2, 576, 384), (2, 1024, 384), (2, 4096, 384), (2, 576, 768)]
PEAKS = {  # name fragment -> (bf16 TFLOP/s, TF32 TFLOP/s, HBM TB/s), dense
    "H100": (989.0, 495.0, 3.35),
    "H200": (989.0, 495.0, 4.8),
}
MODES = ("forward", "backward", "full")


def _flops(b: int, n: int, d: int, form: str, mode: str) -> float:
    """Minimal flop of the form's algorithm: N x N forward = both grams' upper triangles (2 N^2 D),
    backward ``E Z`` (2 N^2 D); d x d forward ``A^T A, A^T B, B^T B`` (6 N D^2), backward 4 N D^2."""
    fwd, bwd = (2.0 * n * n * d, 2.0 * n * n * d) if form == "nxn" else (6.0 * n * d * d, 4.0 * n * d * d)
    return b * {"forward": fwd, "backward": bwd, "full": fwd + bwd}[mode]


def _peaks(device_name: str):
    for key, val in PEAKS.items():
        if key in device_name:
            return val
    return None


def _providers(device: str, with_compile: bool, interpret: bool = False):
    ref = gram_loss_reference
    provs = {"eager": (ref, False, "nxn")}
    if device == "cuda":
        provs["eager_tf32"] = (ref, True, "nxn")
    if with_compile:
        provs["compile"] = (torch.compile(ref, dynamic=False), False, "nxn")
    provs["torch_dxd"] = (gram_loss_dxd, False, "dxd")
    provs["ours"] = (crossscale_kernels.gram_loss, False, "auto")
    if device == "cuda" or interpret:
        provs["ours_nxn"] = (lambda s, t: crossscale_kernels.gram_loss(s, t, form="nxn", backend="triton"), False, "nxn")
        provs["ours_dxd"] = (lambda s, t: crossscale_kernels.gram_loss(s, t, form="dxd", backend="triton"), False, "dxd")
    return provs


def _set_tf32(on: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def _oracle(s: torch.Tensor, t: torch.Tensor):
    x = s.detach().double().requires_grad_()
    loss = gram_loss_reference(x, t.double())
    loss.backward()
    return loss.item(), x.grad


def _bench_case(fn, tf32: bool, s, t, mode: str, warmup_ms: float, rep_ms: float) -> dict:
    _set_tf32(tf32)
    x = s.detach().clone().requires_grad_()
    if mode == "forward":
        def run():
            with torch.no_grad():
                fn(x, t)
    elif mode == "full":
        def run():
            x.grad = None
            fn(x, t).backward()
    else:
        holder = {}

        def prep():
            holder["loss"] = fn(x, t)

        prep()

        def run():
            x.grad = None
            holder["loss"].backward(retain_graph=True)
    cuda = x.device.type == "cuda"
    try:
        peak = "n/a"
        if cuda:  # peak memory of one call over what the case holds anyway: inputs, student copy, retained graph
            run()  # (measured apart from the timing: do_bench's L2-flush buffer would count as ours)
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            run()
            torch.cuda.synchronize()
            peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        res = measure(run, device=x.device.type, warmup_ms=warmup_ms, rep_ms=rep_ms)
        res["peak_extra_mb"] = peak
        return res
    finally:
        _set_tf32(False)


def _errors(fn, tf32: bool, s, t, ref_loss: float, ref_grad: torch.Tensor) -> tuple[float, float]:
    _set_tf32(tf32)
    try:
        x = s.detach().clone().requires_grad_()
        loss = fn(x, t)
        loss.backward()
        el = abs(loss.item() - ref_loss) / max(abs(ref_loss), 1e-30)
        eg = ((x.grad.double() - ref_grad).norm() / ref_grad.norm().clamp_min(1e-30)).item()
        return el, eg
    finally:
        _set_tf32(False)


def _timed_row(row: dict, tm: dict, s, mode: str, fused: bool, peaks) -> dict:
    """``row`` with the timing, effective TFLOP/s and roofline columns of one measured mode."""
    b, n, d = s.shape
    ms = tm["median_ms"]
    fl = _flops(b, n, d, row["form"], mode)
    row.update(median_ms=ms, p20_ms=tm["p20_ms"], p80_ms=tm["p80_ms"], tflops=fl / ms / 1e9)
    if fused and mode == "backward":
        fl = 0.0  # dL/dS was computed in the forward pass; the backward only scales it
        row["tflops"] = "n/a"
    if peaks is not None:
        peak = (peaks[0] if s.dtype in (torch.bfloat16, torch.float16) else peaks[1]) * 1e12
        nbytes = s.element_size() * b * n * d * (3 if mode != "forward" else 2)
        roof_ms = max(fl / peak, nbytes / (peaks[2] * 1e12)) * 1e3  # fl = 0: bandwidth bound
        row["roofline"] = roof_ms / ms
    else:
        row["roofline"] = "n/a"
    row["peak_extra_mb"] = tm["peak_extra_mb"]
    row["grad_mb"] = s.element_size() * b * n * d / 2**20
    return row


def _run_case(args, env: dict, device: str, b: int, n: int, d: int, dtype) -> list[dict]:
    """Every provider and mode on one ``(B, N, D)`` case and dtype."""
    torch._dynamo.reset()  # a fresh compile per case: past its recompile limit dynamo would fall back to eager
    provs = _providers(device, args.compile, args.interpret)
    peaks = _peaks(env["device"])
    g = torch.Generator().manual_seed(0)
    s = torch.randn(b, n, d, generator=g)
    t = (s + args.rho * torch.randn(b, n, d, generator=g)).to(device, dtype)
    s = s.to(device, dtype)
    try:
        ref_loss, ref_grad = _oracle(s, t)
    except torch.OutOfMemoryError:
        ref_loss, ref_grad = None, None
    rows = []
    for name, (fn, tf32, form) in provs.items():
        algo = crossscale_kernels.choose_form(n, d, backend="triton" if device == "cuda" else "torch") if form == "auto" else form
        errs = ("n/a", "n/a")
        if ref_loss is not None:
            try:
                errs = _errors(fn, tf32, s, t, ref_loss, ref_grad)
            except torch.OutOfMemoryError:
                pass
            except Exception as exc:
                errs = (f"error: {type(exc).__name__}", "n/a")
        fused = name in ("ours_nxn", "ours_dxd") or (name == "ours" and (device == "cuda" or algo == "dxd"))
        for mode in args.modes.split(","):
            row = {**env, "provider": name, "dtype": str(dtype).replace("torch.", ""), "B": b, "N": n, "D": d,
                   "form": algo, "mode": mode}
            try:
                tm = _bench_case(fn, tf32, s, t, mode, args.warmup_ms, args.rep_ms)
            except torch.OutOfMemoryError:
                rows.append({**row, "median_ms": "oom"})
                torch.cuda.empty_cache()
                continue
            except Exception as exc:  # one broken case must not lose the rest of a GPU session
                msg = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
                rows.append({**row, "median_ms": "error", "error": msg})
                print(f"  {name:10s} B={b} N={n} D={d} {mode:8s} ERROR {msg}", flush=True)
                continue
            row = _timed_row(row, tm, s, mode, fused, peaks)
            row["err_loss"], row["err_grad"] = errs
            rows.append(row)
            print(f"  {name:10s} {row['dtype']:8s} B={b} N={n} D={d} {mode:8s} {row['median_ms']:9.2f} ms", flush=True)
    return rows


def run_grid(args) -> list[dict]:
    """Every case of the grid (or ``--shapes``); each case's rows are appended to the CSV as it finishes,
    so a run stopped by a time limit keeps what it measured."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    env = env_info(device)
    shapes = args.shapes or (QUICK_SHAPES if args.quick else FULL_SHAPES)
    rows = []
    for (b, n, d) in shapes:
        for dtype in [getattr(torch, name) for name in args.dtypes.split(",")]:
            if args.quick and dtype != torch.float32 and n > 1024:
                continue  # quick CPU: bf16 on the small shapes only (the references upcast anyway)
            case = _run_case(args, env, device, b, n, d, dtype)
            append_csv(args.out, case)
            rows += case
    return rows


def run_crossover(args) -> list[dict]:
    """Time the two forms over N/D to locate the switch point (``crossscale_kernels.NXN_MAX_RATIO``)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    env = env_info(device)
    backend = "triton" if device == "cuda" else "torch"
    dims = (384, 768) if device == "cuda" else (384,)
    b = 64 if device == "cuda" else 2
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    rows = []
    for d in dims:
        for ratio in (0.5, 1.0, 1.5, 2.0, 2.7, 3.5, 5.0):
            n = int(ratio * d)
            s = torch.randn(b, n, d, device=device, dtype=dtype)
            t = s + 0.1 * torch.randn_like(s)
            res = {}
            for form in ("nxn", "dxd"):
                fn = lambda x, y, f=form: crossscale_kernels.gram_loss(x, y, backend=backend, form=f)  # noqa: E731
                res[form] = _bench_case(fn, False, s, t, "full", args.warmup_ms, args.rep_ms)["median_ms"]
            rows.append({**env, "provider": f"crossover_{backend}", "dtype": str(dtype).replace("torch.", ""),
                         "B": b, "N": n, "D": d, "N_over_D": ratio, "nxn_ms": res["nxn"], "dxd_ms": res["dxd"],
                         "faster": "nxn" if res["nxn"] <= res["dxd"] else "dxd"})
            append_csv(args.out, rows[-1:])  # as it goes: a run stopped by a time limit keeps what it measured
    return rows


def _parse_shapes(text: str) -> list[tuple[int, int, int]]:
    try:
        shapes = [tuple(int(v) for v in part.lower().split("x")) for part in text.split(",") if part.strip()]
    except ValueError:
        shapes = []
    if not shapes or any(len(sh) != 3 or min(sh) < 1 for sh in shapes):
        raise argparse.ArgumentTypeError(f"--shapes {text!r}: expected positive BxNxD cases, e.g. 64x196x384,256x1024x384")
    return shapes


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="reduced CPU shape set (automatic without CUDA)")
    p.add_argument("--full", action="store_true", help="the full grid even on CPU")
    p.add_argument("--compile", action="store_true", help="include torch.compile on CPU (always on GPU)")
    p.add_argument("--crossover", action="store_true", help="time N x N vs d x d over N/D instead")
    p.add_argument("--shapes", type=_parse_shapes, default=None,
                   help="comma-separated BxNxD cases instead of the grid, e.g. 256x1024x384,64x4096x384,64x196x384")
    p.add_argument("--dtypes", default="bfloat16,float32")
    p.add_argument("--interpret", action="store_true",
                   help="CPU only: also run the Triton providers under TRITON_INTERPRET=1 (tiny --shapes; fp32/fp16: "
                        "the interpreter has no bf16 dots) -- a smoke test of the GPU benchmark's code path")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--rho", type=float, default=0.1, help="teacher = student + rho * noise")
    p.add_argument("--rep-ms", type=float, default=100.0,
                   help="timed budget per case, ms (do_bench's rep on CUDA, torch Timer's min_run_time on CPU)")
    p.add_argument("--warmup-ms", type=float, default=25.0, help="CUDA warm-up per case, ms (do_bench's warmup)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1 on CPU)")
    p.add_argument("--out", default=None,
                   help="CSV (default results/gram_kernel.csv; results/gram_kernel_crossover.csv with --crossover)")
    args = p.parse_args(argv)
    args.out = args.out or str(RESULTS / ("gram_kernel_crossover.csv" if args.crossover else "gram_kernel.csv"))
    cuda = torch.cuda.is_available()
    if not cuda:
        torch.set_num_threads(args.threads or 1)
        args.quick = not args.full
    else:
        args.compile = True
    if args.crossover:
        rows = run_crossover(args)
        print_table(rows, ["dtype", "B", "N", "D", "N_over_D", "nxn_ms", "dxd_ms", "faster"])
    else:
        rows = run_grid(args)
        print_table(rows, ["provider", "dtype", "B", "N", "D", "form", "mode", "median_ms", "p20_ms", "p80_ms",
                           "tflops", "roofline", "peak_extra_mb", "grad_mb", "err_loss", "err_grad"])
        _speedup_summary(rows)
    print(f"wrote {len(rows)} rows to {args.out}")


def _speedup_summary(rows: list[dict]) -> None:
    """The headline: speed of each provider against eager, mode full, per shape (fp32)."""
    full = [r for r in rows if r.get("mode") == "full" and isinstance(r.get("median_ms"), float)]
    for r in full:
        if r["provider"] == "eager":
            continue
        base = next((e for e in full if e["provider"] == "eager" and all(e[k] == r[k] for k in ("dtype", "B", "N", "D"))),
                    None)
        if base is not None:
            print(f"speedup vs eager (full) {r['provider']:10s} {r['dtype']:8s} B={r['B']} N={r['N']} D={r['D']}: "
                  f"{base['median_ms'] / r['median_ms']:.1f}x")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
